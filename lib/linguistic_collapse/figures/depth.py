"""Collapse through depth as a figure: each measure against relative depth (``07_layers``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from linguistic_collapse.figures.style import log_axis, measure_label, symlog_axis
from linguistic_collapse.nc.registry import GEOMETRY, measure_transform
from linguistic_collapse.tables.depth import headline_first, monotone_falls

HEAD_X = 1.25  # where the figure draws the head input, right of relative depth 1
# CVs whose mean can be near 0 (mean log-norm, mean interference) reach hundreds in a few layers
# of a few models; a symmetric-log axis (linear within +-SYMLOG_LINTHRESH, logarithmic beyond)
# keeps those spikes and the bulk of the models readable in one panel.
SYMLOG = ("nc2_lognorm_cv", "nc2_interference_cv")
SYMLOG_LINTHRESH = 1.0


def depth_figure(table: pd.DataFrame, measures: Sequence[str] = GEOMETRY, ncols: int = 3,
                 symlog: Sequence[str] = SYMLOG) -> Any:
    """Each measure against relative depth (layer / n_layer), one colour per depth L: the median
    over that depth's models at each residual-stream index (line) and their range (band); a star
    beyond 1 marks the head input's median (after the final norm). Each title says in how many
    models of each depth (of at least two blocks) the measure falls monotonically. Log scale for
    the log-read measures; for the ``symlog`` ones a log scale when all values are positive, else
    a symmetric-log one (linear within +-``SYMLOG_LINTHRESH``; a linear one when every value lies
    within), the title saying which."""
    measures = headline_first(measures)
    n = len(measures)
    cols = max(1, min(ncols, n))
    rows_ = -(-n // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.4 * cols + 1.5, 3.6 * rows_), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    if table.empty:
        fig.text(0.5, 0.5, "no per-layer statistics (collect.layers not set)", ha="center")
        return fig
    depths = sorted(table["n_layer"].unique())
    colors = dict(zip(depths, plt.get_cmap("plasma")(np.linspace(0.1, 0.8, len(depths))), strict=True))
    res, top = table[table["site"] == "residual"], table[table["site"] == "head_input"]
    for ax, measure in zip(flat, measures, strict=False):
        counts = []
        for L in depths:
            g = res[res["n_layer"] == L].groupby("layer")[measure]
            x = np.array(sorted(res.loc[res["n_layer"] == L, "layer"].unique())) / L
            ax.fill_between(x, g.min().to_numpy(), g.max().to_numpy(), color=colors[L], alpha=0.18, lw=0)
            ax.plot(x, g.median().to_numpy(), color=colors[L], lw=2, marker="o", ms=4)
            ax.plot([HEAD_X], [top.loc[top["n_layer"] == L, measure].median()], color=colors[L],
                    marker="*", ms=11, ls="")
            if L >= 2:
                falling, models = monotone_falls(res[res["n_layer"] == L], measure)
                counts.append(f"L{L} {falling}/{models}")
        title = measure_label(measure)
        if measure_transform(measure) == "log" and (table[measure] > 0).all():
            log_axis(ax, "y")
        elif measure in symlog and (table[measure] > 0).all():  # positive: a log axis says it
            log_axis(ax, "y")
            title += " (log scale)"
        elif measure in symlog and (table[measure].abs() >= SYMLOG_LINTHRESH).any():
            symlog_axis(ax, SYMLOG_LINTHRESH)
            title += f"\n(symlog, linear within ±{SYMLOG_LINTHRESH:g})"
        if counts:
            title += "\nfalls all the way: " + ", ".join(counts)
        ax.set_xticks([0, 0.5, 1, HEAD_X], ["0", "0.5", "1", "head"])
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("relative depth (layer / n_layer)", fontsize="small")
    for L in depths:
        models = res.loc[res["n_layer"] == L, "name"].nunique()
        flat[0].plot([], [], color=colors[L], lw=2, label=f"depth L = {L} ({models} models)")
    fig.legend(loc="outside right center", fontsize="small", frameon=False)
    fig.suptitle(f"Collapse through depth: {table['name'].nunique()} models\nper depth, the median over "
                 "models (line), their range (band) and the head input's median (star)")
    return fig
