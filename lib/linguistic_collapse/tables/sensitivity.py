"""How the measures depend on the statistics sample: for the profile's ``sensitivity.runs``,
every measure when the class statistics come from ``sensitivity.draws`` random subsamples
(without replacement) of 1/8, 1/4 or 1/2 of the training blocks, against the full pass
(``linguistic_collapse.pipeline.jobs.sensitivity_all`` collects them; fraction 1 is the main statistics).

A change is read on each measure's analysis scale (``linguistic_collapse.nc.registry.analysis_scale``: dex for
the log measures, the value's own units otherwise), never as a ratio to a value that may be
near 0, with its mean and sd over draws; a model's shift is that mean. A shift shared by every
model leaves a cross-model R² unchanged, so ``stability`` judges the spread of the shifts
between models (its upper confidence limit) against the spread between the primary
population's models (``linguistic_collapse.tables.claims.grid_final_rows``) on the same
scale, and reports the shared shift
without judging it (figure: ``linguistic_collapse.figures.sensitivity``). A class seen once has zero within-class variance by construction, so the
table also says how many classes are seen and how often. A smaller sample also sees fewer
classes, so a fixed-K variant (``fixed_k_table``) has every sample of a run measured on only the
classes present in all of them (``linguistic_collapse.pipeline.fixed_k``, by ``sensitivity_all``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import chi2

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import Layout, read_json
from linguistic_collapse.nc.measure import MEASURE_VERSION
from linguistic_collapse.nc.registry import MEASURES, analysis_scale, label, measure_transform
from linguistic_collapse.nc.stats_file import load_stats_metadata, read_counts
from linguistic_collapse.pipeline.fixed_k import sample_key
from linguistic_collapse.tables.findings import Findings

# Stability is judged by what can change a cross-model R²: a shift shared by every model (the
# mean shift) leaves it unchanged; only the spread of the shifts between models moves the models
# relative to one another. A measure is "stable" at a fraction when the 95 % upper confidence
# limit of the sd of the models' shifts (chi-square, n - 1 df) is at most STABLE_SHARE of the sd
# between the primary population's models on the same scale: spread of that size adds at most
# 0.1^2 = 1 % to the between-model variance, whether or not it correlates with loss.
STABLE_SHARE = 0.10
UCL_LEVEL = 0.95  # one-sided confidence of the sd's upper limit
MAX_MODELS = 10_000  # search bound of min_models
HALF = 0.5  # the fraction the findings record


def _class_counts(stats_path: Any) -> tuple[np.ndarray, int]:
    """(train samples per class seen (counts >= 1), train tokens), from the verified counts."""
    counts = read_counts(stats_path).numpy()
    return counts[counts > 0], int(load_stats_metadata(stats_path)["pass1_tokens"])


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
                    raise UserError(f"no sensitivity statistics at {stats.parent}; run linguistic_collapse.pipeline."
                                    "jobs.sensitivity_all (notebook 03_measure) first")
                counts, tokens = _class_counts(stats)
                values = read_json(metrics)
                rows.append({"checkpoint": str(ck), "width": ck.width, "fraction": float(fraction),
                             "draw": int(draw), "train_tokens": tokens,
                             "num_classes": int(len(counts)),
                             "median_class_count": float(np.median(counts)),
                             "frac_singletons": float(np.mean(counts == 1)),
                             **{m: values.get(m, np.nan) for m in MEASURES}})
    return pd.DataFrame(rows)


def fixed_k_table(profile: Any) -> pd.DataFrame:
    """As ``sensitivity_table`` (``checkpoint, fraction, draw, num_classes`` and every measure),
    each sample measured on only the classes present in every sample of its checkpoint, so the
    class set (K, ``num_classes``) is the same at every fraction and draw: the rows that
    ``sensitivity_all`` stored in ``Layout.fixed_k_metrics(ck)`` (``pipeline.fixed_k``), read."""
    layout, rows = Layout(profile.out_path), []
    for ck in profile.sensitivity.checkpoints():
        store = layout.fixed_k_metrics(ck)
        done = read_json(store) if store.is_file() else {}
        want = {sample_key(f, d) for f in profile.sensitivity.fractions
                for d in profile.sensitivity.draws_of(f)}
        if set(done.get("stats_sha256", {})) != want or done.get("measure_version") != MEASURE_VERSION:
            raise UserError(f"no fixed-K measures of this study's samples at {store}; run "
                            "linguistic_collapse.pipeline.jobs.sensitivity_all (notebook 03_measure) first")
        rows += done["rows"]
    columns = ["checkpoint", "width", "fraction", "draw", "num_classes", *MEASURES]
    return pd.DataFrame(rows, columns=columns).astype({m: float for m in MEASURES})


def between_model_sd(grid: pd.DataFrame, measure: str) -> float:
    """sd (ddof 1) over the grid's models of ``measure`` on its analysis scale (NaN: < 2 values)."""
    if measure not in grid:
        return np.nan
    v = analysis_scale(grid[measure].astype(float), measure)
    v = v[np.isfinite(v)]
    return float(np.std(v, ddof=1)) if len(v) > 1 else np.nan


def sd_factor(n: int, level: float = UCL_LEVEL) -> float:
    """sqrt((n-1) / chi²_{1-level, n-1}): the upper ``level`` confidence limit of a normal sd is
    the sample sd (ddof 1, n values) times this (NaN for n < 2)."""
    return float(np.sqrt((n - 1) / chi2.ppf(1 - level, n - 1))) if n >= 2 else np.nan


def limits_table(ns: Sequence[int] = (2, 3, 4, 5, 6, 7, 8, 10)) -> pd.DataFrame:
    """Per number of models n: the upper-limit factor ``sd_factor(n)`` and the largest observed
    spread of shifts that can still be shown stable, as a share of the between-model sd
    (STABLE_SHARE / factor); the pre-registration's table (docs/preregistration.md)."""
    return pd.DataFrame({"models": list(ns), "factor": [sd_factor(n) for n in ns],
                         "largest_stable_share": [STABLE_SHARE / sd_factor(n) for n in ns]})


def stability_rule(n_models: int, n_population: int) -> str:
    """The stability rule in one line, with the observed spread it needs at ``n_models`` models
    (printed above ``limits_table`` in 03_measure)."""
    return (f"stable: 95 % upper limit of the sd of the {n_models} models' shifts <= "
            f"{STABLE_SHARE:g} x between-model sd of the {n_population} primary models (analysis "
            f"scale); with {n_models} models that needs an observed sd <= "
            f"{STABLE_SHARE / sd_factor(n_models):.3f} x between-model sd; per number of models:")


def min_models(sd: float, limit: float, level: float = UCL_LEVEL) -> float:
    """The fewest models whose shifts, spread with sample sd ``sd``, would have an upper limit
    ``sd * sd_factor(n)`` at most ``limit``: the minimum n at which stability can be shown at
    all for that spread (NaN when not even MAX_MODELS models suffice, e.g. sd >= limit)."""
    if not (np.isfinite(sd) and np.isfinite(limit)) or sd >= limit:
        return np.nan
    if sd == 0:
        return 2.0
    ns = np.arange(2, MAX_MODELS + 1)  # the factor falls with n towards 1
    ok = np.sqrt((ns - 1) / chi2.ppf(1 - level, ns - 1)) * sd <= limit
    return float(ns[np.argmax(ok)]) if ok.any() else np.nan


def changes(table: pd.DataFrame, grid: pd.DataFrame,
            measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Per (checkpoint, fraction < 1, measure): the change from the full pass on the analysis
    scale, ``change_mean`` and ``change_sd`` (ddof 1) over draws, ``draws``, the classes seen
    (``num_classes`` min and max over draws), ``between_sd`` (over ``grid``'s models) and
    ``ratio`` = |mean| / between_sd."""
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


def stability(table: pd.DataFrame, population: pd.DataFrame,
              measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Per (measure, fraction < 1), over the sensitivity models: each model's shift is its mean
    change over draws (``changes``). ``models`` (n), ``shift_mean`` (the shared shift: reported,
    not judged), ``shift_sd`` (ddof 1) and its upper ``UCL_LEVEL`` limit ``shift_sd_ucl``
    (``sd_factor``), ``between_sd`` over ``population`` (the primary population,
    ``claims.grid_final_rows``), ``limit`` = STABLE_SHARE x between_sd, ``ratio`` = shift_sd_ucl /
    between_sd, ``stable`` (shift_sd_ucl <= limit) and ``min_models`` (``min_models`` of the
    observed shift_sd)."""
    ch = changes(table, population, measures)
    rows = []
    for m in measures:
        spread = between_model_sd(population, m)
        limit = STABLE_SHARE * spread
        for fraction, g in ch[ch["measure"] == m].groupby("fraction"):
            shifts = g["change_mean"].to_numpy(dtype=float)
            shifts = shifts[np.isfinite(shifts)]  # (models,)
            n = len(shifts)
            sd = float(np.std(shifts, ddof=1)) if n > 1 else np.nan
            ucl = sd * sd_factor(n)
            rows.append({"measure": m, "label": label(m), "fraction": float(fraction),
                         "scale": "dex" if measure_transform(m) == "log" else "value",
                         "models": n, "shift_mean": float(shifts.mean()) if n else np.nan,
                         "shift_sd": sd, "shift_sd_ucl": ucl, "between_sd": spread, "limit": limit,
                         "ratio": ucl / spread if spread else np.nan,
                         "stable": bool(ucl <= limit), "min_models": min_models(sd, limit)})
    return pd.DataFrame(rows)


def record_findings(findings: Findings, summary: pd.DataFrame, table: pd.DataFrame, source: str,
                    table_source: str, prefix: str = "sensitivity", fraction: float = HALF) -> None:
    """Record per measure, at ``fraction`` of the sample, from ``summary`` (``stability``, saved
    as ``source``): the shared shift, the sd of the models' shifts and its upper limit, the
    between-model sd, the verdict and the minimum number of models; and the range of classes
    (K) over ``table``'s samples (saved as ``table_source``); ``findings``: a
    linguistic_collapse.tables.findings.Findings."""
    for row in summary[summary["fraction"] == fraction].to_dict("records"):
        m, where = row["measure"], f"{source}: row {row['measure']} at fraction {fraction:g}"
        findings.add(f"{prefix} {m} shared shift", row["shift_mean"], f"{where}, shift_mean", "{:+.3f}")
        findings.add(f"{prefix} {m} shift sd", row["shift_sd"], f"{where}, shift_sd", "{:.3f}")
        findings.add(f"{prefix} {m} shift sd upper limit", row["shift_sd_ucl"], f"{where}, shift_sd_ucl", "{:.3f}")
        findings.add(f"{prefix} {m} between-model sd", row["between_sd"], f"{where}, between_sd", "{:.3f}")
        findings.add(f"{prefix} {m} stable", "yes" if row["stable"] else "no", f"{where}, stable", "{}")
        findings.add(f"{prefix} {m} minimum models", row["min_models"], f"{where}, min_models", "{:.0f}")
    findings.add(f"{prefix} K min", int(table["num_classes"].min()), f"{table_source}: num_classes, min", "{:,}")
    findings.add(f"{prefix} K max", int(table["num_classes"].max()), f"{table_source}: num_classes, max", "{:,}")
