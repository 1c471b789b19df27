"""Sensitivity to the statistics sample as a figure (``03_measure``): each measure's shift
from the full pass against the fraction of training blocks, one line per model, with the band
within which the models' shifts must stay around their shared shift for a cross-model R² to
stay put (``linguistic_collapse.tables.sensitivity.stability``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from linguistic_collapse.figures.style import measure_label, panel_grid
from linguistic_collapse.nc.registry import MEASURES, measure_transform
from linguistic_collapse.tables.sensitivity import (
    STABLE_SHARE,
    between_model_sd,
    changes,
    stability,
)


def _fraction_text(f: float) -> str:
    return f"1/{round(1 / f)}" if f < 1 else "all"


def sensitivity_figure(table: pd.DataFrame, population: pd.DataFrame,
                       measures: Sequence[str] = MEASURES, ncols: int = 4) -> Any:
    """Per measure: each model's change from the full pass on the analysis scale against the
    fraction of training blocks (mean ± sd over draws; log2 x axis), the shared shift (mean over
    models, dashed) and around it the band ± STABLE_SHARE x the between-model sd of
    ``population`` (grey). A title ends in "stable" at the fractions where ``stability`` finds
    the spread of the shifts small enough."""
    ch = changes(table, population, measures)
    verdicts = stability(table, population, measures)
    fractions = sorted(table["fraction"].unique())
    fig, axes = panel_grid(len(measures), ncols, panel_size=(4.0, 3.2))
    colors = plt.get_cmap("tab10").colors
    handles: dict[str, Any] = {}
    for ax, m in zip(axes, measures, strict=True):
        data = ch[ch["measure"] == m]
        for i, (ck, g) in enumerate(data.groupby("checkpoint", sort=False)):
            g = g.sort_values("fraction")
            line = ax.errorbar([*g["fraction"], 1.0], [*g["change_mean"], 0.0],
                               yerr=[*g["change_sd"].fillna(0), 0.0], marker="o", ms=4, capsize=2,
                               color=colors[i % len(colors)], lw=1.3)
            handles.setdefault(ck, line)
        shared = data.groupby("fraction")["change_mean"].mean()
        xs, ys = np.array([*shared.index, 1.0]), np.array([*shared.to_numpy(), 0.0])
        handles.setdefault("shared shift (mean over models)",
                           ax.plot(xs, ys, color="black", ls="--", lw=1.2, zorder=4)[0])
        limit = STABLE_SHARE * between_model_sd(population, m)
        if np.isfinite(limit):
            band = ax.fill_between(xs, ys - limit, ys + limit, color="0.85", zorder=0)
            handles.setdefault(f"shared shift ± {STABLE_SHARE:g} × between-model sd", band)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(ticker.FixedLocator(fractions))
        ax.xaxis.set_major_formatter(ticker.FixedFormatter([_fraction_text(f) for f in fractions]))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ok = verdicts[(verdicts["measure"] == m) & verdicts["stable"]]["fraction"]
        title = measure_label(m) + (f"\nstable at {', '.join(_fraction_text(f) for f in sorted(ok))}"
                                    if len(ok) else "\nnot shown stable")
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel("change (dex)" if measure_transform(m) == "log" else "change", fontsize="small")
        ax.set_xlabel("fraction of training blocks", fontsize="small")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncols=min(3, len(handles)), fontsize="medium", frameon=False)
    fig.suptitle("Change from the full pass, mean ± sd over random subsamples\nstable: the 95 % upper "
                 f"limit of the sd of the models' shifts ≤ {STABLE_SHARE:g} × the between-model sd")
    return fig
