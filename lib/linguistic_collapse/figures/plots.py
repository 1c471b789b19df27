"""Figures of the paper in one style: the scaling figures, Table 1 as a table and token
frequency plots (``plots_loss``: Figures 1-3, loss against the measures; ``plots_training``:
01_train's figures).

Every figure is written through ``save_figure`` (figures/<profile>/<name>.<fmt>, atomic,
byte-identical SVG on re-runs). Functions return a matplotlib Figure and never show it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from linguistic_collapse.core.paths import atomic_write, figures_dir_for, resolve
from linguistic_collapse.nc.registry import REGISTRY, axis_label, measure_transform
from linguistic_collapse.tables.analysis import COMPARED_COLUMNS, table1_display
from linguistic_collapse.tables.results import scaling_table
from linguistic_collapse.tables.tokens import load_first_names

PARAMS_CMAP = "viridis"
LOSS_LABEL = "validation loss (nats/token)"
SVG_SALT = "linguistic-collapse"
FORMATS = ("png", "svg", "pdf")


# A symbol with a subscript and an optional ⁺ in a registry label ("Σ_W", "Σ_B⁺", "μ_c"):
# drawn as mathtext, so matplotlib sets a subscript instead of printing the underscore.
_SUBSCRIPTED = re.compile(r"([A-Za-zΣΛμσ])_([A-Za-z0-9]+)(⁺?)")
_GREEK = {"Σ": r"\Sigma", "Λ": r"\Lambda", "μ": r"\mu", "σ": r"\sigma"}


GEOMETRIC_STEP = 1.5  # a factor grid drawn on a log axis: every step at least this ratio

def math_label(text: str) -> str:
    r"""``text`` for a matplotlib label: every ``X_y`` (and ``X_y⁺``) as mathtext
    (``Tr(Σ_W Σ_B⁺)/K`` -> ``Tr($\Sigma_{W}$ $\Sigma_{B}^{+}$)/K``); other text unchanged."""
    def tex(match: re.Match) -> str:
        base, sub, plus = match.groups()
        return f"${_GREEK.get(base, base)}_{{{sub}}}{'^{+}' if plus else ''}$"

    return _SUBSCRIPTED.sub(tex, text)


def measure_label(measure: str) -> str:
    """The registry's label of a measure (the column name otherwise), ready for matplotlib."""
    info = REGISTRY.get(measure)
    return math_label(info.label if info else measure)


def measure_axis_label(measure: str) -> str:
    """The registry's axis label of a measure (the column name otherwise), ready for matplotlib."""
    return math_label(axis_label(measure) if measure in REGISTRY else measure)


def apply_style() -> None:
    """One style for every figure: seaborn whitegrid, talk-sized fonts, constrained layout."""
    # heavy (matplotlib): loaded only when a figure is drawn
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="talk", font_scale=0.8)
    plt.rcParams.update({
        "figure.constrained_layout.use": True,
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "axes.titleweight": "bold",
        "svg.hashsalt": SVG_SALT,
    })


def param_norm(n_params: Sequence[float]) -> LogNorm:
    """Log-normalised colour scale over parameter counts (widened when all are equal)."""
    v = np.asarray(n_params, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) == 0:
        raise ValueError("no positive parameter counts to colour by")
    low, high = float(v.min()), float(v.max())
    if low == high:
        low, high = low / 1.5, high * 1.5
    return LogNorm(vmin=low, vmax=high)


def human_count(n: float) -> str:
    """12_300 -> '12.3k', 4.5e6 -> '4.5M' (parameter counts on colour bars)."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.3g}"


def _geometric_ticks(low: float, high: float, n: int = 4) -> list[float]:
    """About ``n`` readable log-spaced ticks in [low, high]: 1-2-5 multiples of powers of ten
    (denser 1-1.5-2-3-5-7 when the range is narrow), thinned to at most ``n + 1``."""
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 or high <= low:
        return [low] if np.isfinite(low) else []
    ticks: list[float] = []
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)):
        ticks = [m * 10.0**e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
                 for m in mantissas]
        ticks = sorted({float(f"{t:.3g}") for t in ticks if low * 0.999 <= t <= high * 1.001})
        if len(ticks) >= 3:
            break
    if len(ticks) < 3:  # under a factor of ~2: evenly spaced round numbers
        ticks = [float(f"{t:.3g}") for t in ticker.MaxNLocator(n).tick_values(low, high)
                 if low * 0.999 <= t <= high * 1.001]
    if len(ticks) > n + 1:
        idx = np.unique(np.round(np.linspace(0, len(ticks) - 1, n)).astype(int))
        ticks = [ticks[i] for i in idx]
    return ticks if ticks else [float(f"{math.sqrt(low * high):.2g}")]


def log_axis(ax: Any, axis: str = "x") -> None:
    """A log axis with one label per tick: default decades when the data spans two or more,
    otherwise a few 1-2-5 ticks in plain numbers; minor ticks never labelled."""
    getattr(ax, f"set_{axis}scale")("log")
    low, high = sorted(getattr(ax, f"get_{axis}lim")())
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_minor_formatter(ticker.NullFormatter())
    if high / low >= 100:
        return
    target.set_major_locator(ticker.FixedLocator(_geometric_ticks(low, high)))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))


def symlog_axis(ax: Any, linthresh: float, axis: str = "y") -> None:
    """A symmetric-log axis (linear within ±``linthresh``) with a few plain-number ticks: its
    default decade ticks leave a range inside one decade with only minor labels in scientific
    form; minor ticks are never labelled."""
    getattr(ax, f"set_{axis}scale")("symlog", linthresh=linthresh)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(ticker.MaxNLocator(5))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    target.set_minor_formatter(ticker.NullFormatter())


def end_labelled_ticks(low: float, high: float, n: int = 4) -> list[float]:
    """Ticks for a log colour bar: both ends exactly, plus readable inner values that keep at
    least 12 % of the log range away from the ends (so labels never collide)."""
    span = math.log10(high / low)
    inner = [t for t in _geometric_ticks(low, high, n)
             if min(math.log10(t / low), math.log10(high / t)) > 0.12 * span]
    return [low, *inner, high]


def add_param_colorbar(fig: Figure, axes: Any, norm: LogNorm) -> Any:
    """A colour bar for parameter count shared by ``axes``, labelled at both ends ('82k' ...
    '1.07M') and at a few round values in between."""
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=PARAMS_CMAP)
    bar = fig.colorbar(mappable, ax=axes, label="parameters", shrink=0.9)
    bar.set_ticks(end_labelled_ticks(norm.vmin, norm.vmax))
    bar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: human_count(v)))
    bar.ax.yaxis.set_minor_locator(ticker.NullLocator())
    bar.ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    return bar


def show_and_save(fig: Figure, name: str, where: Any, **kwargs: Any) -> None:
    """Display ``fig`` in the notebook (so executed notebooks carry it), then ``save_figure``.

    Returns nothing, so a cell ending in this call shows the figure only, not a list of this
    machine's paths (``save_figure`` returns them)."""
    # display libraries: loaded only when shown in a notebook
    from IPython.display import display

    display(fig)
    save_figure(fig, name, where, **kwargs)


def figure_folder(where: Any, figures_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a figure: ``where.figures_dir`` for a ``linguistic_collapse.series.paper.NotebookConfig``;
    for a profile name, ``<figures_dir>/<profile>/`` or else ``linguistic_collapse.core.paths.figures_dir_for``
    (``figures/<profile>/``, or under ``$LC_OUTPUT_ROOT`` when set)."""
    if hasattr(where, "figures_dir"):
        return Path(where.figures_dir)
    if not isinstance(where, str) or not where or "/" in where:
        raise ValueError(f"figures go to a profile's folder: pass a profile name or the notebook's "
                         f"cfg, not {where!r}")
    return resolve(figures_dir) / where if figures_dir is not None else figures_dir_for(where)


def save_figure(fig: Figure, name: str, where: Any, formats: Sequence[str] = ("png", "svg"),
                figures_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write ``fig`` to ``figure_folder(where, figures_dir)/<name>.<fmt>`` atomically; close it.

    Byte-stable: no software or date metadata, a fixed SVG id salt, so unchanged numbers give
    unchanged files.
    """
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"figure name {name!r} must be a plain file stem (no folders)")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unsupported figure formats {bad}; choose from {FORMATS}")
    folder = figure_folder(where, figures_dir)
    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}
    paths = []
    try:
        with plt.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "path"}):
            for fmt in formats:
                write = lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, metadata=metadata[fmt])  # noqa: E731
                paths.append(atomic_write(folder / f"{name}.{fmt}", write))
    finally:
        plt.close(fig)
    return paths


def _grid(n_panels: int, ncols: int, panel_size: tuple[float, float] = (4.6, 3.9)) -> tuple[Figure, list]:
    """A figure with ``n_panels`` axes in rows of ``ncols``; unused axes removed."""
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols + 1.2, panel_size[1] * nrows),
                             squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.remove()
    return fig, flat[:n_panels]


def _factor_ticks(ax: Any, values: pd.Series, log_x: bool) -> bool:
    """Ticks at the factor's grid values (e.g. widths 64, 128, ...); a log axis when asked and the
    grid is geometric (every step at least ``GEOMETRIC_STEP``x): an evenly spaced grid such as
    32, 48, ..., 128 on a log axis crowds its top labels together. Returns whether it is log."""
    levels = np.unique(values.to_numpy(dtype=float))
    log = bool(log_x and (levels > 0).all()
               and (len(levels) < 2 or (levels[1:] / levels[:-1]).min() >= GEOMETRIC_STEP))
    if log:
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.FixedLocator(levels))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    return log


def _measure_axis(ax: Any, measure: str, values: pd.Series) -> None:
    """y label of a measure; log scale (readable ticks) for the measures read in log10."""
    if measure_transform(measure) == "log" and len(values) and (values > 0).all():
        log_axis(ax, "y")
    ax.set_title(measure_label(measure), fontsize="medium")
    ax.set_ylabel(measure_axis_label(measure), fontsize="small")


def _line_panels(long: pd.DataFrame, measures: Sequence[str], x: str, xlabel: str, log_x: bool,
                 hue: str, hue_label: str, palette: str, style: str | None = None,
                 ncols: int = 4) -> Figure:
    """One panel per measure: ``value`` against ``x``, one line per ``hue`` level (mean of the
    rows sharing x and hue), markers at the grid values, one legend for the figure."""
    fig, axes = _grid(len(measures), ncols, panel_size=(4.0, 3.2))
    levels = sorted(long[hue].unique())
    colors = dict(zip(levels, plt.get_cmap(palette)(np.linspace(0.15, 0.85, len(levels))), strict=True))
    styles = sorted(long[style].unique()) if style else [None]
    dashes = dict(zip(styles, ["-", "--", ":", "-."] * 4, strict=False))
    handles: dict[str, Any] = {}
    for ax, measure in zip(axes, measures, strict=True):
        data = long[long["measure"] == measure]
        means = data.groupby([hue, *( [style] if style else []), x], dropna=False)["value"].mean()
        for key, series in means.groupby(level=list(range(means.index.nlevels - 1))):
            key = key if isinstance(key, tuple) else (key,)
            level, st = key[0], key[1] if style else None
            line, = ax.plot(series.index.get_level_values(x), series.to_numpy(), marker="o", ms=5,
                            color=colors[level], ls=dashes[st])
            label = f"{hue_label} {level:g}" + (f", {style.replace('_', ' ')} {st:g}" if style else "")
            handles.setdefault(label, line)
        log = _factor_ticks(ax, data[x], log_x)
        _measure_axis(ax, measure, data["value"])
        ax.set_xlabel(xlabel + (" (log scale)" if log else ""), fontsize="small")
    fig.legend(list(handles.values()), list(handles), loc="outside right center", fontsize="small",
               frameon=False)
    return fig


def scaling_figures(table: pd.DataFrame, measures: Sequence[str], ncols: int = 4) -> dict[str, Figure]:
    """The scaling picture in three figures, each saying what it shows and what it averages:

    ``scaling_size``: every model, measure against parameter count, coloured by epochs trained
    (no averaging); ``scaling_width``: the last checkpoint of the longest-trained models against
    width, one line per depth, mean over weight decay and seeds; ``scaling_training``: against
    epochs trained, one line per width and line style per weight decay, mean over depth and seeds.
    """
    measures = [m for m in measures if m in table and table[m].notna().any()]  # empty: no panel
    if len(table) == 0 or not measures:
        raise ValueError("scaling_figures needs a non-empty table and at least one measure")
    long = scaling_table(table, measures)
    figs: dict[str, Figure] = {}

    fig, axes = _grid(len(measures), ncols, panel_size=(4.0, 3.2))
    epochs = sorted(long["epochs_trained"].unique())
    cmap = plt.get_cmap("crest", max(len(epochs), 2))
    for ax, measure in zip(axes, measures, strict=True):
        data = long[long["measure"] == measure]
        for i, ep in enumerate(epochs):
            rows = data[data["epochs_trained"] == ep]
            ax.scatter(rows["n_params"], rows["value"], s=22, color=cmap(i), edgecolor="0.2",
                       linewidth=0.4, label=f"{ep:g} epoch{'s' if ep != 1 else ''} trained", zorder=3)
        log_axis(ax, "x")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: human_count(v)))
        _measure_axis(ax, measure, data["value"])
        ax.set_xlabel("parameters (log scale)", fontsize="small")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize="small", frameon=False)
    fig.suptitle(f"Every measure against model size: all {len(table)} models, no averaging")
    figs["scaling_size"] = fig

    last = long[long["epochs_trained"] == long["epochs_trained"].max()]
    n_last = last["name"].nunique() if "name" in last else len(last) // len(measures)
    fig = _line_panels(last, measures, "width", "width d", True, "depth", "depth",
                       "magma_r", ncols=ncols)
    fig.suptitle(f"Against width, one line per depth: the {n_last} models trained "
                 f"{last['epochs_trained'].max():g} epochs (last checkpoint); "
                 "mean over weight decay and seeds")
    figs["scaling_width"] = fig

    fig = _line_panels(long, measures, "epochs_trained", "epochs trained", False, "width", "width",
                       "viridis", style="weight_decay", ncols=ncols)
    fig.suptitle("Against training: one line per width and weight decay; mean over depth and seeds")
    figs["scaling_training"] = fig
    return figs


def table1_figure(perm_df: pd.DataFrame, alpha: float = 0.05) -> Figure:
    """Table 1 drawn as a table (the cells of ``linguistic_collapse.tables.analysis.table1_display``: signed r, R²,
    Spearman ρ, p and Holm p); in rows significant at ``alpha`` after Holm, our own cells in bold
    on a tint (the authors' columns and the comparison with them, ``COMPARED_COLUMNS``, stay
    plain). With too few replicas for a test, the figure says so instead."""
    height = 0.3 * (len(perm_df) + 1) + 0.9
    if perm_df["r"].isna().all():
        fig, ax = plt.subplots(figsize=(9.5, height))
        ax.set_axis_off()
        note = perm_df["note"].iloc[0] if "note" in perm_df else "no permutation results"
        ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True)
        return fig
    cells = table1_display(perm_df)
    ours = [c not in COMPARED_COLUMNS for c in cells.columns]
    chars = sum(max(len(str(c)), *(len(str(v)) for v in cells[c])) + 2 for c in cells.columns)
    cells["measure"] = cells["measure"].map(math_label)  # after the width: mathtext is shorter drawn
    fig, ax = plt.subplots(figsize=(max(9.5, 0.095 * chars), height))  # ~0.095 in per 10-pt character
    ax.set_axis_off()
    significant = (perm_df["p_holm"].astype(float) < alpha).to_numpy()
    table = ax.table(cellText=cells.to_numpy(), colLabels=list(cells.columns), loc="center",
                     cellLoc="right", colLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.auto_set_column_width(list(range(len(cells.columns))))
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor("0.85")
        cell.set_linewidth(0.5)
        if col == 0:
            cell.set_text_props(ha="left")
            cell._loc = "left"
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("0.93")
        elif significant[row - 1] and ours[col]:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#fde3d6")
    table.scale(1, 1.35)
    ax.set_title(f"Table 1 · permutation test over {int(perm_df['n'].iloc[0])} seed-only replicas, "
                 f"{int(perm_df['m'].iloc[0]):,} permutations\n"
                 f"bold: our Holm-adjusted p < {alpha:g}; r, R², ρ: with validation loss",
                 fontsize="medium")
    return fig


# ---------------------------------------------------------------------------------------------
# What 01_train and 02_collect show while stepping through


def token_frequency_figure(tokens_df: pd.DataFrame, names: Sequence[str] | None = None) -> Figure:
    """Per-token variability (log y) and interference against train count (log x), first names
    highlighted."""
    names = load_first_names() if names is None else frozenset(n.lower() for n in names)
    data = tokens_df[tokens_df["count"] > 0]
    is_name = data["token"].str.lower().isin(names).to_numpy()
    fig, axes = _grid(2, 2)
    for ax, col, label in zip(axes, ["variability", "interference"],
                              ["variability (CDNV, log scale)", "interference (cosine)"],
                              strict=True):
        ax.scatter(data["count"], data[col], s=6, color="0.65", alpha=0.5, label="all tokens", rasterized=True)
        ax.scatter(data["count"][is_name], data[col][is_name], s=30, color="tab:red", edgecolor="black",
                   linewidth=0.5, label="first names", zorder=3)
        ax.set_xscale("log")
        if col == "variability" and (data[col] > 0).all():
            log_axis(ax, "y")
        ax.set(xlabel="train count of token (log scale)", ylabel=label, title=f"Token {col} vs frequency")
    axes[0].legend(loc="best", fontsize="small")
    return fig
