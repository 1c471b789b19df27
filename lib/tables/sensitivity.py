"""How the measures depend on the statistics sample: for the profile's
``sensitivity.runs``, every measure when the class statistics come from the first 1/8, 1/4,
1/2 or all of the training blocks (``lib.stages.pipeline.sensitivity_all`` collects them; fraction 1
is the main statistics). A class seen once has zero within-class variance by construction, so
the table also says how many classes are seen and how often. No torch import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from safetensors import safe_open

from lib.core.errors import UserError
from lib.core.paths import Layout, read_json
from lib.nc.registry import MEASURES, label, measure_transform

STABLE_WITHIN = 0.10  # a measure is "stable" when halving the sample moves it by < 10 %


def _class_counts(stats_path: Any) -> tuple[np.ndarray, int]:
    """(train samples per class seen (counts >= 1), train tokens), read without torch."""
    with safe_open(str(stats_path), framework="numpy") as f:
        counts = f.get_tensor("counts")
        tokens = int(f.metadata()["pass1_tokens"])
    return counts[counts > 0], tokens


def sensitivity_table(profile: Any) -> pd.DataFrame:
    """One row per (checkpoint, fraction): ``checkpoint, fraction, train_tokens, num_classes,
    median_class_count, frac_singletons`` and every measure; needs ``sensitivity_all`` done."""
    layout, rows = Layout(profile.out_path), []
    for ck in profile.sensitivity.checkpoints():
        for fraction in profile.sensitivity.fractions:
            metrics, stats = layout.metrics(ck, fraction), layout.stats(ck, fraction)
            if not (metrics.is_file() and stats.is_file()):
                raise UserError(f"no sensitivity statistics at {stats.parent}; run "
                                f"lib.stages.pipeline.sensitivity_all (notebook 03_measure) first")
            counts, tokens = _class_counts(stats)
            values = read_json(metrics)
            rows.append({"checkpoint": str(ck), "width": ck.width, "fraction": float(fraction),
                         "train_tokens": tokens, "num_classes": int(len(counts)),
                         "median_class_count": float(np.median(counts)),
                         "frac_singletons": float(np.mean(counts == 1)),
                         **{m: values.get(m, np.nan) for m in MEASURES}})
    return pd.DataFrame(rows)


def stability(table: pd.DataFrame, measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Per measure: its relative change from the smallest and from the half sample to the whole
    split (worst model), and whether halving the sample moves it by less than 10 %."""
    rows = []
    for m in measures:
        small, half = [], []
        for _, g in table.groupby("checkpoint"):
            g = g.set_index("fraction")[m].astype(float)
            full = g.loc[g.index.max()]
            if not np.isfinite(full) or full == 0:  # e.g. NC4 = 0: no relative change defined
                continue
            small.append(abs(g.loc[g.index.min()] / full - 1))
            if 0.5 in g.index:
                half.append(abs(g.loc[0.5] / full - 1))
        worst_half = max(half) if half else np.nan
        rows.append({"measure": m, "label": label(m), "scale": measure_transform(m),
                     "models": len(small), "max_change_smallest": max(small, default=np.nan),
                     "max_change_half": worst_half, "stable": bool(worst_half < STABLE_WITHIN)})
    return pd.DataFrame(rows)


def sensitivity_figure(table: pd.DataFrame, measures: Sequence[str] = MEASURES, ncols: int = 4):
    """Each measure relative to its whole-split value against the fraction of training tokens,
    one line per model (log2 x axis)."""
    import matplotlib.pyplot as plt

    nrows = -(-len(measures) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False,
                             sharex=True, constrained_layout=True)
    for ax, m in zip(axes.flat, measures, strict=False):
        for ck, g in table.groupby("checkpoint", sort=False):
            g = g.sort_values("fraction")
            ax.plot(g["fraction"], g[m] / g[m].iloc[-1], marker="o", ms=3, label=ck)
        ax.axhline(1, color="0.6", lw=0.8)
        ax.axhspan(1 - STABLE_WITHIN, 1 + STABLE_WITHIN, color="0.9", zorder=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(table["fraction"].unique()),
                      [f"1/{round(1 / f)}" if f < 1 else "all" for f in sorted(table["fraction"].unique())])
        ax.set_title(label(m), fontsize=9)
    for ax in axes.flat[len(measures):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("fraction of training tokens")
    for ax in axes[:, 0]:
        ax.set_ylabel("value / value on all")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle("Sensitivity of each measure to the statistics sample (grey band: ±10 %)")
    return fig
