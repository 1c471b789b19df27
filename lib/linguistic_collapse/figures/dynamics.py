"""Collapse through training as ``08_dynamics`` shows it: the validation loss and every measure
against tokens seen, one line per dynamics run (``dynamics_figure``), and which measures settle
before, with and after the loss (``summary_markdown``, the text of
``linguistic_collapse.tables.lead_lag.summary_text``).

A dotted vertical line in each run's colour marks where the quantity has covered 90 % of its
total change for good (``linguistic_collapse.tables.lead_lag.level_crossing``, on the measure's analysis scale), so
lead and lag against the loss panel can be read off directly. A value at initialisation far outside
the later snapshots' range is drawn as a triangle at the panel's edge, so it does not squash the
curve. Saved with ``linguistic_collapse.figures.save``
(``show_and_save(fig, "dynamics", cfg)``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from linguistic_collapse.figures.style import (
    LOSS_LABEL,
    human_count,
    log_axis,
    measure_axis_label,
    measure_label,
)
from linguistic_collapse.nc.registry import (
    MEASURES,
    analysis_scale,
    measure_transform,
)
from linguistic_collapse.tables.lead_lag import LEVEL, level_crossing, summary_text
from linguistic_collapse.tables.results import LOSS

OFF_SCALE = 1.0  # an initial value further than this many later ranges away is drawn at the edge


def _clip_initialisation(ax, table: pd.DataFrame, col: str, colors: dict[str, str],
                         log: bool) -> bool:
    """Fit the y axis to the snapshots after the initialisation when an initial value lies more
    than ``OFF_SCALE`` times their range outside it (a measure degenerate at random weights,
    e.g. a CV of a mean near 0, would squash the curve), and draw such values as a triangle at
    the panel's edge labelled with the value. True when it clipped."""
    first = table.groupby("run")["step"].transform("min")
    init, rest = table[table["step"] == first], table[table["step"] > first]
    scale = (lambda v: np.log10(v)) if log else (lambda v: np.asarray(v, dtype=float))
    later = scale(rest[col][np.isfinite(rest[col]) & ((rest[col] > 0) | (not log))])
    if len(later) < 2:
        return False
    lo, hi = float(np.min(later)), float(np.max(later))
    span = max(hi - lo, 1e-12 * max(abs(hi), 1.0))
    off = [(r.run, float(v)) for r, v in zip(init.itertuples(), init[col], strict=True)
           if np.isfinite(v) and (not log or v > 0)
           and not lo - OFF_SCALE * span <= float(scale(v)) <= hi + OFF_SCALE * span]
    if not off:
        return False
    bottom, top = lo - 0.08 * span, hi + 0.08 * span
    ax.set_ylim(*((10 ** bottom, 10 ** top) if log else (bottom, top)))
    for k, (run, v) in enumerate(off):  # labels stacked, one line per run
        above = float(scale(v)) > hi
        y = ax.get_ylim()[1 if above else 0]
        ax.plot([0], [y], marker="^" if above else "v", color=colors[run], ms=8, clip_on=False,
                zorder=5)
        ax.annotate(f"init {v:.3g}", (0, y), xytext=(8, -10 - 9 * k if above else 4 + 9 * k),
                    textcoords="offset points", fontsize="x-small", color=colors[run])
    return True


def dynamics_figure(table: pd.DataFrame, measures: Sequence[str] | None = None,
                    ncols: int = 4, level: float = LEVEL) -> Figure:
    """Loss and ``measures`` (default: every registry measure in the table) against tokens seen.

    One panel per quantity, the loss first; log y axes for the registry's log measures. A table
    without rows gives a one-panel figure that says so, so a profile without dynamics runs still
    executes the notebook.
    """
    if table.empty:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no dynamics runs in this profile", ha="center", va="center")
        return fig
    panels = [LOSS, *(measures or [m for m in MEASURES if m in table.columns])]
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), sharex=True,
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    runs = list(dict.fromkeys(table["run"]))
    epoch_ends = sorted(set(table.loc[(table["step"] > 0) & (table["epoch"] % 1 == 0),
                                      "tokens_seen"]))
    run_colors = {run: colors[i % len(colors)] for i, run in enumerate(runs)}
    clipped = False
    for ax, col in zip(axes.flat, panels, strict=False):
        for x in epoch_ends:  # faint guides: where epochs end
            ax.axvline(x, color="0.45", ls="--", lw=0.9, zorder=1)
        for run in runs:
            g = table[table["run"] == run].sort_values("step")
            color = run_colors[run]
            ax.plot(g["tokens_seen"], g[col], marker="o", ms=3, lw=1.5, color=color, label=run)
            y = g[col] if col == LOSS else analysis_scale(g[col], col)
            x90 = level_crossing(g["tokens_seen"], y, level)
            if math.isfinite(x90):
                ax.axvline(x90, color=color, ls=":", lw=1.2)
        if measure_transform(col) == "log":
            log_axis(ax, "y")
        if col != LOSS:
            clipped |= _clip_initialisation(ax, table, col, run_colors,
                                            measure_transform(col) == "log")
        ax.set_title(measure_label(col) if col != LOSS else "validation loss", fontsize="medium")
        ax.set_ylabel(LOSS_LABEL if col == LOSS else measure_axis_label(col), fontsize="x-small")
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: human_count(v)))
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for j in range(ncols):  # the lowest panel of each column carries the x axis
        column = [axes[i, j] for i in range(nrows) if i * ncols + j < len(panels)]
        if column:
            column[-1].set_xlabel("tokens seen")
            column[-1].xaxis.set_tick_params(labelbottom=True)
    axes.flat[0].legend(fontsize="x-small", loc="upper right")
    note = ("\n▲/▼: a value at initialisation off the later range, drawn at the panel's edge "
            "with its value" if clipped else "")
    fig.suptitle(f"Collapse through training (dotted: {level:.0%} of the total change reached "
                 f"for good; grey dashed: epoch ends){note}", fontsize="medium")
    return fig


def summary_markdown(lags: pd.DataFrame) -> Any:
    """``linguistic_collapse.tables.lead_lag.summary_text`` of ``lags`` as Markdown, for a notebook."""
    # display libraries: loaded only when shown in a notebook
    from IPython.display import Markdown

    return Markdown(summary_text(lags))
