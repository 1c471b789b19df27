"""The scaling picture (``04_correlate``): every measure against model size, against width and
against training, in three figures (``scaling_figures``), from the long table of
``linguistic_collapse.tables.results.scaling_table``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from linguistic_collapse.figures.style import (
    human_count,
    log_axis,
    measure_axis_label,
    measure_label,
    panel_grid,
)
from linguistic_collapse.nc.registry import measure_transform
from linguistic_collapse.tables.results import scaling_table

GEOMETRIC_STEP = 1.5  # a factor grid drawn on a log axis: every step at least this ratio


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
    fig, axes = panel_grid(len(measures), ncols, panel_size=(4.0, 3.2))
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

    fig, axes = panel_grid(len(measures), ncols, panel_size=(4.0, 3.2))
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
