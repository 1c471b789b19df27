"""How the measures depend on the statistics sample: for the profile's ``sensitivity.runs``,
every measure when the class statistics come from ``sensitivity.draws`` random subsamples
(without replacement) of 1/8, 1/4 or 1/2 of the training blocks, against the full pass
(``linguistic_collapse.stages.pipeline.sensitivity_all`` collects them; fraction 1 is the main statistics).

A change is read on each measure's analysis scale (``linguistic_collapse.nc.registry.analysis_scale``: dex for
the log measures, the value's own units otherwise), never as a ratio to a value that may be
near 0, with its mean and sd over draws, and set against the spread between the grid's models
on the same scale. A class seen once has zero within-class variance by construction, so the
table also says how many classes are seen and how often. A smaller sample also sees fewer
classes, so a fixed-K variant (``fixed_k_table``) measures every sample of a run on only the
classes present in all of them (``linguistic_collapse.nc.subset.restrict_classes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import Layout, read_json
from linguistic_collapse.nc.measure import measure_stats
from linguistic_collapse.nc.registry import MEASURES, analysis_scale, label, measure_transform
from linguistic_collapse.nc.stats_file import read_stats
from linguistic_collapse.nc.subset import restrict_classes

# A measure is "stable" when halving the sample moves it (mean over draws, worst model) by less
# than this share of the sd between the grid's models, on its analysis scale: such a shift adds
# at most 0.1^2 = 1 % to the between-model variance, too little to move a cross-model R².
STABLE_SHARE = 0.10
HALF = 0.5  # the fraction the stability rule reads


def _class_counts(stats_path: Any) -> tuple[np.ndarray, int]:
    """(train samples per class seen (counts >= 1), train tokens), from the verified read."""
    tensors, meta = read_stats(stats_path)
    counts = tensors["counts"].numpy()
    return counts[counts > 0], int(meta["pass1_tokens"])


def sensitivity_table(profile: Any) -> pd.DataFrame:
    """One row per (checkpoint, fraction, draw): ``checkpoint, fraction, draw, train_tokens,
    num_classes, median_class_count, frac_singletons`` and every measure; needs
    ``sensitivity_all`` done (fraction 1: the one full pass, draw 0)."""
    layout, rows = Layout(profile.out_path), []
    for ck in profile.sensitivity.checkpoints():
        for fraction in profile.sensitivity.fractions:
            for draw in profile.sensitivity.draws_of(fraction):
                metrics, stats = layout.metrics(ck, fraction, draw), layout.stats(ck, fraction, draw)
                if not (metrics.is_file() and stats.is_file()):
                    raise UserError(f"no sensitivity statistics at {stats.parent}; run linguistic_collapse.stages."
                                    "pipeline.sensitivity_all (notebook 03_measure) first")
                counts, tokens = _class_counts(stats)
                values = read_json(metrics)
                rows.append({"checkpoint": str(ck), "width": ck.width, "fraction": float(fraction),
                             "draw": int(draw), "train_tokens": tokens,
                             "num_classes": int(len(counts)),
                             "median_class_count": float(np.median(counts)),
                             "frac_singletons": float(np.mean(counts == 1)),
                             **{m: values.get(m, np.nan) for m in MEASURES}})
    return pd.DataFrame(rows)


def _samples(profile: Any, ck: Any) -> list[tuple[float, int, Any]]:
    """(fraction, draw, stats path) of every sample of ``ck``, the full pass included."""
    layout = Layout(profile.out_path)
    out = [(float(f), d, layout.stats(ck, f, d)) for f in profile.sensitivity.fractions
           for d in profile.sensitivity.draws_of(f)]
    for _, _, path in out:
        if not path.is_file():
            raise UserError(f"no sensitivity statistics at {path.parent}; run linguistic_collapse.stages."
                            "pipeline.sensitivity_all (notebook 03_measure) first")
    return out


def fixed_k_table(profile: Any, device: str | torch.device = "cpu", tile: int = 2048) -> pd.DataFrame:
    """As ``sensitivity_table`` (``checkpoint, fraction, draw, num_classes`` and every measure),
    each sample measured on only the classes present in every sample of its checkpoint, so the
    class set (K, ``num_classes``) is the same at every fraction and draw."""
    rows = []
    for ck in profile.sensitivity.checkpoints():
        samples = _samples(profile, ck)
        keep = None
        for _, _, path in samples:  # the classes seen in every sample: (V,) bool
            seen = read_stats(path)[0]["counts"] > 0
            keep = seen if keep is None else keep & seen
        for fraction, draw, path in samples:
            stats = restrict_classes(read_stats(path)[0], keep)
            values = measure_stats(stats, device=device, tile=tile)[0]
            rows.append({"checkpoint": str(ck), "width": ck.width, "fraction": fraction,
                         "draw": int(draw), "num_classes": int(keep.sum()),
                         **{m: values.get(m, np.nan) for m in MEASURES}})
    return pd.DataFrame(rows)


def between_model_sd(grid: pd.DataFrame, measure: str) -> float:
    """sd (ddof 1) over the grid's models of ``measure`` on its analysis scale (NaN: < 2 values)."""
    if measure not in grid:
        return np.nan
    v = analysis_scale(grid[measure].astype(float), measure)
    v = v[np.isfinite(v)]
    return float(np.std(v, ddof=1)) if len(v) > 1 else np.nan


def changes(table: pd.DataFrame, grid: pd.DataFrame,
            measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Per (checkpoint, fraction < 1, measure): the change from the full pass on the analysis
    scale, ``change_mean`` and ``change_sd`` (ddof 1) over draws, ``draws``, the classes seen
    (``num_classes`` min and max over draws), ``between_sd`` and ``ratio`` = |mean| / between_sd."""
    rows = []
    for ck, g in table.groupby("checkpoint", sort=False):
        full = g[g["fraction"] >= 1]
        if full.empty:
            raise UserError(f"{ck}: no full-pass row (fraction 1) to measure the change from")
        for m in measures:
            ref = analysis_scale(full[m].astype(float), m)[0]
            spread = between_model_sd(grid, m)
            for fraction, s in g[g["fraction"] < 1].groupby("fraction"):
                d = analysis_scale(s[m].astype(float), m) - ref  # (draws,)
                d = d[np.isfinite(d)]
                mean = float(d.mean()) if len(d) else np.nan
                rows.append({"checkpoint": ck, "fraction": float(fraction), "measure": m,
                             "scale": "dex" if measure_transform(m) == "log" else "value",
                             "draws": len(d), "change_mean": mean,
                             "change_sd": float(np.std(d, ddof=1)) if len(d) > 1 else np.nan,
                             "k_min": int(s["num_classes"].min()), "k_max": int(s["num_classes"].max()),
                             "between_sd": spread, "ratio": abs(mean) / spread if spread else np.nan})
    return pd.DataFrame(rows)


def stability(table: pd.DataFrame, grid: pd.DataFrame,
              measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Per measure at the half sample: the worst model's change (mean and sd over draws) on the
    analysis scale, the between-model sd, their ratio, and ``stable`` (ratio < STABLE_SHARE)."""
    ch = changes(table, grid, measures)
    rows = []
    for m in measures:
        half = ch[(ch["measure"] == m) & (ch["fraction"] == HALF)].dropna(subset=["change_mean"])
        worst = half.loc[half["change_mean"].abs().idxmax()] if len(half) else None
        spread = between_model_sd(grid, m)
        ratio = abs(worst["change_mean"]) / spread if worst is not None and spread else np.nan
        rows.append({"measure": m, "label": label(m),
                     "scale": "dex" if measure_transform(m) == "log" else "value",
                     "models": len(half),
                     "half_change_mean": worst["change_mean"] if worst is not None else np.nan,
                     "half_change_sd": worst["change_sd"] if worst is not None else np.nan,
                     "worst_model": worst["checkpoint"] if worst is not None else "",
                     "between_sd": spread, "ratio": ratio, "stable": bool(ratio < STABLE_SHARE)})
    return pd.DataFrame(rows)


def sensitivity_figure(table: pd.DataFrame, grid: pd.DataFrame,
                       measures: Sequence[str] = MEASURES, ncols: int = 4):
    """Each measure's change from the full pass on its analysis scale against the fraction of
    training blocks (mean over draws, error bars: sd over draws), one line per model; grey band:
    ± the between-model sd, dark band: ± STABLE_SHARE of it (log2 x axis)."""
    import matplotlib.pyplot as plt

    ch = changes(table, grid, measures)
    fractions = sorted(table["fraction"].unique())
    nrows = -(-len(measures) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False,
                             sharex=True, constrained_layout=True)
    for ax, m in zip(axes.flat, measures, strict=False):
        spread = between_model_sd(grid, m)
        for ck, g in ch[ch["measure"] == m].groupby("checkpoint", sort=False):
            g = g.sort_values("fraction")
            ax.errorbar([*g["fraction"], 1.0], [*g["change_mean"], 0.0],
                        yerr=[*g["change_sd"].fillna(0), 0.0], marker="o", ms=3, capsize=2,
                        label=ck)
        ax.axhline(0, color="0.6", lw=0.8)
        if np.isfinite(spread):
            ax.axhspan(-spread, spread, color="0.93", zorder=0)
            ax.axhspan(-STABLE_SHARE * spread, STABLE_SHARE * spread, color="0.8", zorder=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(fractions, [f"1/{round(1 / f)}" if f < 1 else "all" for f in fractions])
        ax.set_title(label(m), fontsize=9)
        ax.set_ylabel("change (dex)" if measure_transform(m) == "log" else "change")
    for ax in axes.flat[len(measures):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("fraction of training blocks")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle("Change from the full pass (mean ± sd over random subsamples); light band: "
                 f"± between-model sd, dark: ± {STABLE_SHARE:g} of it")
    return fig


def add_findings(findings: Any, summary: pd.DataFrame, table: pd.DataFrame, source: str,
                 table_source: str, prefix: str = "sensitivity") -> None:
    """Record per measure the half-sample change (mean, sd over draws, worst model), the
    between-model sd and the verdict from ``summary`` (``stability``, saved as ``source``), and
    the range of classes (K) over ``table``'s samples (saved as ``table_source``);
    ``findings``: a linguistic_collapse.tables.findings.Findings."""
    for row in summary.to_dict("records"):
        m, where = row["measure"], f"{source}: row {row['measure']}"
        findings.add(f"{prefix} {m} half change mean", row["half_change_mean"], f"{where}, half_change_mean", "{:+.3f}")
        findings.add(f"{prefix} {m} half change sd", row["half_change_sd"], f"{where}, half_change_sd", "{:.3f}")
        findings.add(f"{prefix} {m} between-model sd", row["between_sd"], f"{where}, between_sd", "{:.3f}")
        findings.add(f"{prefix} {m} stable", "yes" if row["stable"] else "no", f"{where}, stable", "{}")
    findings.add(f"{prefix} K min", int(table["num_classes"].min()), f"{table_source}: num_classes, min", "{:,}")
    findings.add(f"{prefix} K max", int(table["num_classes"].max()), f"{table_source}: num_classes, max", "{:,}")
