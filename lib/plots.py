"""Figures of the paper in one style: loss against NC measures (Figures 1-3), scaling grids,
training curves, loss heatmaps, permutation nulls and token frequency plots.

Every figure is written through ``save_figure`` (figures/<profile>/<name>.<fmt>, atomic,
byte-identical SVG on re-runs). Functions return a matplotlib Figure and never show it.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from lib.analysis import (
    LOSS,
    MEASURE_INFO,
    axis_label,
    load_first_names,
    measure_transform,
    scaling_table,
)
from lib.paths import FIGURES_DIR, atomic_write, resolve

PARAMS_CMAP = "viridis"
LOSS_LABEL = "validation loss (nats/token)"
SVG_SALT = "linguistic-collapse"
FORMATS = ("png", "svg", "pdf")
FACTORS = {  # scaling-grid column: (x column, x label, hue column, log x)
    "width": ("width", "width d (hidden size)", "depth", True),
    "depth": ("depth", "depth L (layers)", "width", False),
    "epochs": ("epochs_trained", "epochs trained", "width", False),
    "weight_decay": ("weight_decay", "weight decay", "width", True),
}


def apply_style() -> None:
    """One style for every figure: seaborn whitegrid, talk-sized fonts, constrained layout."""
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
    """About ``n`` distinct log-spaced tick values in [low, high], rounded to 2 significant digits."""
    ticks = [float(f"{v:.2g}") for v in np.geomspace(low, high, n)]
    return sorted({t for t in ticks if low * 0.98 <= t <= high * 1.02})


def log_axis(ax: Any, axis: str = "x") -> None:
    """A log axis whose labels never crowd: default decades when the data spans two or more,
    otherwise a few plain-number ticks (matplotlib labels every minor tick in a narrow range)."""
    getattr(ax, f"set_{axis}scale")("log")
    low, high = sorted(getattr(ax, f"get_{axis}lim")())
    if high / low >= 100:
        return
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(ticker.FixedLocator(_geometric_ticks(low, high)))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    target.set_minor_formatter(ticker.NullFormatter())


def add_param_colorbar(fig: Figure, axes: Any, norm: LogNorm) -> None:
    """A colour bar for parameter count shared by ``axes``, ticks as '51k', '1.2M'."""
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=PARAMS_CMAP)
    bar = fig.colorbar(mappable, ax=axes, label="parameters", shrink=0.9)
    if norm.vmax / norm.vmin < 100:
        bar.set_ticks(_geometric_ticks(norm.vmin, norm.vmax))
    bar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: human_count(v)))
    bar.ax.yaxis.set_minor_locator(ticker.NullLocator())


def show_and_save(fig: Figure, name: str, profile: str, **kwargs: Any) -> None:
    """Display ``fig`` in the notebook (so executed notebooks carry it), then ``save_figure``."""
    from IPython.display import display

    display(fig)
    save_figure(fig, name, profile, **kwargs)


def save_figure(fig: Figure, name: str, profile: str, formats: Sequence[str] = ("png", "svg"),
                figures_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write ``fig`` to <figures_dir or FIGURES_DIR>/<profile>/<name>.<fmt> atomically and close it.

    Metadata dates are dropped and the SVG id salt fixed, so re-runs give identical files.
    """
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"figure name {name!r} must be a plain file stem (no folders)")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unsupported figure formats {bad}; choose from {FORMATS}")
    folder = resolve(figures_dir if figures_dir is not None else FIGURES_DIR) / profile
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    paths = []
    try:
        with plt.rc_context({"svg.hashsalt": SVG_SALT}):
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


def _fit_line(ax: Any, x: np.ndarray, y: np.ndarray, log_x: bool) -> tuple[float, float]:
    """Least-squares line of y on x in the plotted coordinates; returns (R^2, slope)."""
    u = np.log10(x) if log_x else x
    if len(u) < 2 or np.ptp(u) == 0:
        return float("nan"), 0.0
    slope, intercept = np.polyfit(u, y, 1)
    grid = np.linspace(u.min(), u.max(), 50)
    ax.plot(10**grid if log_x else grid, slope * grid + intercept, color="black", lw=1.5, ls="--")
    r2 = float(np.corrcoef(u, y)[0, 1] ** 2) if np.ptp(y) > 0 else float("nan")
    return r2, float(slope)


def _r2_text(ax: Any, r2: float, n: int, slope: float) -> None:
    """R^2 and n in the upper corner the fitted line leaves free (left for a rising line)."""
    text = f"$R^2$ = {r2:.2f}" if np.isfinite(r2) else "$R^2$ = n/a"
    x, ha = (0.03, "left") if slope > 0 else (0.97, "right")
    ax.text(x, 0.95, f"{text}\nn = {n}", transform=ax.transAxes, ha=ha, va="top", fontsize="small",
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})


def _loss_panel(ax: Any, table: pd.DataFrame, measure: str, norm: LogNorm, r2: float | None) -> None:
    """One Figure-1 panel: loss against ``measure``, coloured by size, fit line and R^2."""
    x, y = table[measure].to_numpy(dtype=float), table[LOSS].to_numpy(dtype=float)
    log_x = measure_transform(measure) == "log"
    keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log_x else True)
    x, y, params = x[keep], y[keep], table["n_params"].to_numpy(dtype=float)[keep]
    ax.scatter(x, y, c=params, cmap=PARAMS_CMAP, norm=norm, s=40, edgecolor="0.2", linewidth=0.5, zorder=3)
    if log_x:
        ax.set_xscale("log")
    fit_r2, slope = _fit_line(ax, x, y, log_x)
    if log_x and len(x):
        log_axis(ax, "x")
    _r2_text(ax, fit_r2 if r2 is None else r2, len(x), slope)
    info = MEASURE_INFO.get(measure)
    ax.set_title(info.label if info else measure)
    ax.set_xlabel(axis_label(measure))
    ax.set_ylabel(LOSS_LABEL)


def loss_vs_measures(table: pd.DataFrame, measures: Sequence[str],
                     correlations: pd.DataFrame | None = None, ncols: int = 4) -> Figure:
    """Figures 1-3: validation loss (y) against each measure (x), one point per model coloured by
    parameter count, least-squares line and R^2 (from ``correlations`` when given) per panel."""
    if len(table) == 0 or not measures:
        raise ValueError("loss_vs_measures needs a non-empty table and at least one measure")
    r2_of = {} if correlations is None else dict(zip(correlations["measure"], correlations["r2"], strict=True))
    fig, axes = _grid(len(measures), ncols)
    norm = param_norm(table["n_params"])
    for ax, measure in zip(axes, measures, strict=True):
        _loss_panel(ax, table, measure, norm, r2_of.get(measure))
    add_param_colorbar(fig, axes, norm)
    return fig


def _factor_ticks(ax: Any, values: pd.Series, log_x: bool) -> None:
    """Ticks at the factor's grid values (e.g. widths 64, 128, ...), on a log axis when asked."""
    levels = np.unique(values.to_numpy(dtype=float))
    if log_x and (levels > 0).all():
        ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.FixedLocator(levels))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_locator(ticker.NullLocator())


def scaling_grid(table: pd.DataFrame, measures: Sequence[str],
                 factors: Sequence[str] = ("width", "depth", "epochs", "weight_decay")) -> Figure:
    """Each measure (rows) against width, depth, epochs trained and weight decay (columns), mean
    over the other factors, one line per value of a second factor (hue)."""
    import seaborn as sns

    long = scaling_table(table, measures)
    fig, axes = _grid(len(measures) * len(factors), len(factors), panel_size=(4.2, 3.3))
    for i, measure in enumerate(measures):
        data = long[long["measure"] == measure]
        for j, factor in enumerate(factors):
            x, xlabel, hue, log_x = FACTORS[factor]
            ax = axes[i * len(factors) + j]
            sns.lineplot(data=data, x=x, y="value", hue=hue, marker="o", errorbar=None, palette="flare",
                         legend=(i == 0), ax=ax)
            _factor_ticks(ax, data[x], log_x)
            if measure_transform(measure) == "log" and (data["value"] > 0).all():
                log_axis(ax, "y")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(MEASURE_INFO[measure].label if measure in MEASURE_INFO else measure)
            if i == 0 and ax.get_legend() is not None:
                ax.get_legend().set_title(hue)
    return fig


def training_curves(results_by_run: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Validation loss and accuracy per epoch for every run (``models/<run>/results.json``),
    coloured by parameter count."""
    if not results_by_run:
        raise ValueError("no runs to plot; pass analysis.load_run_results(out_dir)")
    norm = param_norm([r["n_params"] for r in results_by_run.values()])
    fig, axes = _grid(2, 2)
    for results in results_by_run.values():
        cks = sorted(results["checkpoints"], key=lambda c: c["epoch"])
        epochs = [c["epoch"] for c in cks]
        color = plt.get_cmap(PARAMS_CMAP)(norm(results["n_params"]))
        axes[0].plot(epochs, [c["val_loss"] for c in cks], marker="o", color=color, alpha=0.8)
        axes[1].plot(epochs, [100 * c["val_acc"] for c in cks], marker="o", color=color, alpha=0.8)
    for ax, ylabel, title in zip(axes, [LOSS_LABEL, "validation top-1 accuracy (%)"],
                                 ["Validation loss", "Validation accuracy"], strict=True):
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.xaxis.get_major_locator().set_params(integer=True)
    add_param_colorbar(fig, axes, norm)
    return fig


def loss_grid_heatmap(table: pd.DataFrame, epochs: int | None = None,
                      weight_decay: float | None = None) -> Figure:
    """Validation loss over depth x width for one variant (final checkpoint, mean over seeds)."""
    import seaborn as sns

    rows = table[table["checkpoint"] == table["epochs"]]
    if epochs is not None:
        rows = rows[rows["epochs"] == epochs]
    if weight_decay is not None:
        rows = rows[np.isclose(rows["weight_decay"].astype(float), weight_decay, rtol=1e-9, atol=0)]
    variants = sorted(set(zip(rows["epochs"], rows["weight_decay"], strict=True)))
    if len(variants) != 1:
        raise ValueError(f"loss_grid_heatmap needs exactly one variant, found (epochs, weight_decay) "
                         f"{variants}; pass epochs= and weight_decay=")
    grid = rows.pivot_table(index="depth", columns="width", values=LOSS, aggfunc="mean")  # (L, d)
    fig, ax = plt.subplots(figsize=(1.3 * grid.shape[1] + 3, 0.9 * grid.shape[0] + 2))
    sns.heatmap(grid, annot=True, fmt=".2f", cmap="rocket_r", ax=ax, cbar_kws={"label": LOSS_LABEL})
    ep, wd = variants[0]
    ax.set(xlabel="width d", ylabel="depth L", title=f"Validation loss, {ep} epochs, weight decay {wd:g}")
    return fig


def permutation_figure(perm_df: pd.DataFrame, null_samples: Mapping[str, np.ndarray] | None = None,
                       ncols: int = 4) -> Figure:
    """Table 1 as a figure: per measure the null distribution of r (histogram, when given) with
    the observed ±r marked, or else a bar chart of |r| coloured by significance, p annotated."""
    if perm_df["r"].isna().all():  # too few replicas: say so on the figure itself
        fig, ax = plt.subplots(figsize=(9, 2))
        note = perm_df["note"].iloc[0] if "note" in perm_df else "no permutation results"
        ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True)
        ax.set_axis_off()
        return fig
    if null_samples is None:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(perm_df) + 1.5))
        colors = ["tab:red" if s else "0.6" for s in perm_df["significant"]]
        labels = [MEASURE_INFO[m].label if m in MEASURE_INFO else m for m in perm_df["measure"]]
        ax.barh(labels, perm_df["r"].abs(), color=colors)
        for yi, (r, p) in enumerate(zip(perm_df["r"].abs(), perm_df["p"], strict=True)):
            ax.text(r, yi, f"  p = {p:.3f}", va="center", fontsize="x-small")
        ax.set(xlabel="|Pearson r| with validation loss", xlim=(0, 1.3),
               title="Permutation test (red: p < 0.05)")
        ax.invert_yaxis()
        return fig
    rows = perm_df[perm_df["measure"].isin(list(null_samples))]
    fig, axes = _grid(len(rows), ncols, panel_size=(4.2, 3.2))
    for ax, (_, row) in zip(axes, rows.iterrows(), strict=True):
        ax.hist(null_samples[row["measure"]], bins=40, color="0.7")
        for sign in (-1, 1):
            ax.axvline(sign * abs(row["r"]), color="tab:red", lw=1.5)
        ax.set(xlabel="Pearson r under permutation", ylabel="permutations",
               title=MEASURE_INFO[row["measure"]].label if row["measure"] in MEASURE_INFO else row["measure"])
        ax.text(0.03, 0.95, f"p = {row['p']:.3f}", transform=ax.transAxes, va="top", fontsize="small")
    return fig


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


# ---------------------------------------------------------------------------------------------
# Shell interface

PAPER_FIGURES = {
    "fig1_loss_vs_nc": ["nc1_cdnv", "gnc2_logkernel_var", "unc3_duality_cv", "nc4_agreement"],
    "fig2_loss_vs_nc2": ["nc2_norm_cv", "nc2_interference_std", "gnc2_logkernel_var"],
    "fig3_loss_vs_nc3": ["nc3_duality_mean", "unc3_duality_cv"],
}


def _cli_figures(args: argparse.Namespace) -> int:
    from lib.analysis import correlate

    apply_style()
    table = pd.read_csv(resolve(args.table))
    correlations = correlate(table, n_bootstrap=100)
    for name, measures in PAPER_FIGURES.items():
        paths = save_figure(loss_vs_measures(table, measures, correlations), name, args.profile,
                            figures_dir=args.figures_dir)
        print("wrote", ", ".join(str(p) for p in paths))
    return 0


def register_cli(subparsers: Any) -> None:
    """``figures``: Figures 1-3 from a results table CSV into figures/<profile>/."""
    p = subparsers.add_parser("figures", help="draw Figures 1-3 from a results.csv")
    p.add_argument("--table", required=True, help="results.csv written by `analyze`")
    p.add_argument("--profile", required=True, help="figures go to figures/<profile>/")
    p.add_argument("--figures-dir", default=None, help="override the figures root (default figures/)")
    p.set_defaults(func=_cli_figures)
