"""Collapse through depth as a figure: each measure against relative depth (``07_layers``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from linguistic_collapse.figures.plots import log_axis
from linguistic_collapse.nc.registry import GEOMETRY, label, measure_transform
from linguistic_collapse.tables.depth import headline_first

HEAD_X = 1.25  # where the figure draws the head input, right of relative depth 1
# CVs whose mean can be near 0 (mean log-norm, mean interference) reach hundreds in a few layers
# of a few models; a symmetric-log axis (linear within +-SYMLOG_LINTHRESH, logarithmic beyond)
# keeps those spikes and the bulk of the models readable in one panel.
SYMLOG = ("nc2_lognorm_cv", "nc2_interference_cv")
SYMLOG_LINTHRESH = 1.0


def depth_figure(table: pd.DataFrame, measures: Sequence[str] = GEOMETRY, ncols: int = 3,
                 symlog: Sequence[str] = SYMLOG) -> Any:
    """Each measure against relative depth (layer / n_layer): one line per model through its
    residual stream, coloured by width; a star beyond 1 marks the head input (after the final
    norm). Log scale for the log-read measures; for the ``symlog`` ones a log scale when all
    values are positive, else a symmetric-log one (linear within +-``SYMLOG_LINTHRESH``), the
    panel's title saying which."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    measures = headline_first(measures)
    n = len(measures)
    cols = max(1, min(ncols, n))
    rows_ = -(-n // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.2 * cols + 1.5, 3.4 * rows_), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    if table.empty:
        fig.text(0.5, 0.5, "no per-layer statistics (collect.layers not set)", ha="center")
        return fig
    widths = sorted(table["width"].unique())
    norm = LogNorm(min(widths), max(widths) * (1.0001 if len(widths) == 1 else 1))
    cmap = plt.get_cmap("viridis")
    for ax, measure in zip(flat, measures, strict=False):
        for _, g in table.groupby("name"):
            res, top = g[g["site"] == "residual"], g[g["site"] == "head_input"]
            color = cmap(norm(g["width"].iloc[0]) * 0.85)
            ax.plot(res["relative_depth"], res[measure], color=color, lw=1, alpha=0.6, marker=".")
            ax.plot([HEAD_X] * len(top), top[measure], color=color, marker="*", ls="", alpha=0.8)
        title = label(measure)
        if measure_transform(measure) == "log" and (table[measure] > 0).all():
            log_axis(ax, "y")
        elif measure in symlog and (table[measure] > 0).all():  # positive: a log axis says it
            log_axis(ax, "y")
            title += " (log scale)"
        elif measure in symlog:
            ax.set_yscale("symlog", linthresh=SYMLOG_LINTHRESH)
            title += f"\n(symlog, linear within ±{SYMLOG_LINTHRESH:g})"
        ax.set_xticks([0, 0.5, 1, HEAD_X], ["0", "0.5", "1", "head"])
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("relative depth (layer / n_layer)", fontsize="small")
    for w in widths:
        flat[0].plot([], [], color=cmap(norm(w) * 0.85), label=f"width {w}")
    fig.legend(loc="outside right center", fontsize="small", frameon=False)
    fig.suptitle(f"Collapse through depth: {table['name'].nunique()} models, residual stream "
                 "(lines) and head input (stars)")
    return fig
