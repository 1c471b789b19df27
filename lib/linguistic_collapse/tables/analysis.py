"""Statistics across models (paper section 6): correlations of validation loss with each
measure, cluster bootstraps, partial correlations, the permutation test of Table 1 with Holm
adjustment. Pure functions on pandas DataFrames; no torch import.

Models are not independent: the checkpoints of one training run share their weights' history,
and seed replicas and weight-decay twins of one design are near-copies, so every bootstrap here
resamples whole design points (``clusters.design_point_ids``), and the "epochs" control is the
number of epochs *trained* (the ``checkpoint`` column).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import cli_path, positive_int, resolve
from linguistic_collapse.nc.registry import MEASURES, analysis_scale, label, measure_transform
from linguistic_collapse.tables.clusters import cluster_counts, design_point_ids
from linguistic_collapse.tables.results import (
    LOSS,
    build_results_table,
    replica_rows,
    round_sig,
    run_ids,
    save_table,
)

# |r_perm| >= |r_obs| up to float round-off (the identity permutation must count as extreme)
PERM_TOL = 1e-12
CONTROLS = ("log_n_params", "checkpoint")  # log parameters and epochs trained
MULTIPLICITY_NOTE = ("Holm-adjusted p: {k} correlated measures are tested on the same models at "
                     "once, so an unadjusted p < 0.05 somewhere is likely by chance; Holm keeps "
                     "the chance of any false positive below 0.05 without assuming independence.")


def transformed(table: pd.DataFrame, measure: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(x, mask, n_dropped): the measure on its analysis scale (log10 where the registry says),
    with ``mask`` selecting the table rows kept (finite loss and measure, positive for log)."""
    if measure not in table.columns:
        raise ValueError(f"table has no column {measure!r}; columns: {list(table.columns)}")
    raw = table[measure].to_numpy(dtype=float)
    x = analysis_scale(raw, measure)
    finite_loss = np.isfinite(table[LOSS].to_numpy(dtype=float))
    mask = np.isfinite(x) & finite_loss
    n_dropped = int(np.sum(np.isfinite(raw) & finite_loss & ~mask))  # not positive, for log
    return x[mask], mask, n_dropped


# ---------------------------------------------------------------------------------------------
# Correlation coefficients


def pearson_rows(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Pearson r of ``x`` (n,) with every row of ``Y`` (B, n); NaN where a row is constant."""
    xc = x - x.mean()
    Yc = Y - Y.mean(axis=-1, keepdims=True)  # (B, n)
    den = np.sqrt((xc**2).sum()) * np.sqrt((Yc**2).sum(axis=-1))  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, Yc @ xc / np.where(den > 0, den, 1.0), np.nan)


def pearson_pairs(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Row-wise Pearson r of paired rows of ``X`` and ``Y`` (B, n); NaN for constant rows."""
    Xc = X - X.mean(axis=-1, keepdims=True)
    Yc = Y - Y.mean(axis=-1, keepdims=True)
    den = np.sqrt((Xc**2).sum(axis=-1) * (Yc**2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (Xc * Yc).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)


def weighted_pearson(x: np.ndarray, y: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Pearson r of (x, y) (n,) under each row of non-negative weights ``W`` (B, n): with
    integer weights, r of the data with row i repeated W[b, i] times. NaN where degenerate."""
    x, y = x - x.mean(), y - y.mean()  # shift first: the moments below then keep their digits
    sw = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = W @ x / sw, W @ y / sw
        sxy = W @ (x * y) / sw - mx * my
        sxx = W @ (x * x) / sw - mx * mx
        syy = W @ (y * y) / sw - my * my
        den = np.sqrt(sxx * syy)
        return np.where(den > 1e-300, sxy / np.where(den > 1e-300, den, 1.0), np.nan)


def spearman(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(rho, p): Spearman rank correlation and its two-sided asymptotic p (scipy)."""
    # heavy (scipy): loaded only when this statistic is computed
    from scipy.stats import spearmanr

    res = spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


# ---------------------------------------------------------------------------------------------
# Cluster bootstrap


def cluster_bootstrap_weights(clusters: Sequence[Any], n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n) row weights of a cluster bootstrap: each resample draws as many clusters
    as there are, with replacement, and a row's weight is how often its cluster was drawn. All
    rows of one cluster (e.g. one design point) always share a weight: it is never split."""
    _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    n_clusters = int(inverse.max()) + 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(n_bootstrap, n_clusters))
    flat = (np.arange(n_bootstrap)[:, None] * n_clusters + draws).ravel()  # one bincount for all rows
    counts = np.bincount(flat, minlength=n_bootstrap * n_clusters).reshape(n_bootstrap, n_clusters)
    return counts[:, inverse].astype(float)  # (B, n)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite ``samples``; NaNs when there are none."""
    samples = samples[np.isfinite(samples)]
    if len(samples) == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def quantile_mc_se(samples: np.ndarray, q: float) -> float:
    """Monte-Carlo standard error of the ``q`` quantile (0-1) of the finite ``samples``, by the
    binomial formula for a quantile: the number of draws below the true quantile is
    Binomial(B, q), so the order statistics at ranks B q ± sqrt(B q (1 - q)) bracket it with
    about one standard error either side; SE = half their distance. NaN with under 2 samples."""
    s = np.sort(samples[np.isfinite(samples)])
    B = len(s)
    if B < 2:
        return float("nan")
    half = np.sqrt(B * q * (1 - q))
    lo = int(np.clip(np.floor(B * q - half), 0, B - 1))
    hi = int(np.clip(np.ceil(B * q + half), 0, B - 1))
    return float((s[hi] - s[lo]) / 2)


def percentile_ci_se(samples: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """(low, high, se_low, se_high): ``percentile_ci`` and the Monte-Carlo standard error of each
    limit (``quantile_mc_se``): how far another bootstrap seed would typically move it."""
    low, high = percentile_ci(samples, level)
    tail = (1 - level) / 2
    return low, high, quantile_mc_se(samples, tail), quantile_mc_se(samples, 1 - tail)


def bootstrap_r(x: np.ndarray, y: np.ndarray, clusters: Sequence[Any], n_bootstrap: int,
                seed: int) -> np.ndarray:
    """Cluster-bootstrap replicates (n_bootstrap,) of Pearson r(x, y), clusters resampled whole."""
    return weighted_pearson(x, y, cluster_bootstrap_weights(clusters, n_bootstrap, seed))


# ---------------------------------------------------------------------------------------------
# Correlations with validation loss (Figures 1-3)


def _with_log_params(table: pd.DataFrame) -> pd.DataFrame:
    if "log_n_params" not in table.columns and "n_params" in table.columns:
        table = table.assign(log_n_params=np.log10(table["n_params"].astype(float)))
    return table


def partial_correlation(y: np.ndarray, x: np.ndarray, Z: np.ndarray) -> tuple[float, float]:
    """(partial r, p): correlation of ``y`` and ``x`` after regressing both on ``Z`` (n, c) plus
    an intercept (OLS residuals), and the p-value of x's coefficient in OLS y ~ 1 + x + Z
    (that p assumes independent models; read it with the cluster bootstrap beside it)."""
    # heavy (statsmodels): loaded only when this statistic is computed
    import statsmodels.api as sm

    Zc = sm.add_constant(Z, has_constant="add")  # (n, c+1)
    ry = sm.OLS(y, Zc).fit().resid
    rx = sm.OLS(x, Zc).fit().resid
    r = float(pearson_pairs(rx[None], ry[None])[0])
    full = sm.OLS(y, np.column_stack([Zc, x])).fit()
    return r, float(full.pvalues[-1])


def _varying_controls(table: pd.DataFrame, mask: np.ndarray, controls: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split controls into (varying, constant) over the kept rows; a constant one is collinear
    with the intercept and is dropped from the partial correlation."""
    missing = [c for c in controls if c not in table.columns]
    if missing:
        raise ValueError(f"control columns {missing} not in the table; columns: {list(table.columns)}")
    varying = [c for c in controls if np.ptp(table.loc[mask, c].to_numpy(dtype=float)) > 0]
    return varying, [c for c in controls if c not in varying]


def _correlate_one(table: pd.DataFrame, measure: str, controls: Sequence[str],
                   n_bootstrap: int, seed: int) -> dict[str, Any]:
    x, mask, n_dropped = transformed(table, measure)
    y = table.loc[mask, LOSS].to_numpy(dtype=float)
    runs, clusters = run_ids(table)[mask], design_point_ids(table)[mask]
    n, notes = len(x), []
    row = {"measure": measure, "transform": measure_transform(measure), "n": n,
           "n_runs": len(set(runs)), "n_clusters": len(set(clusters)),
           "n_eff": cluster_counts(clusters)["n_eff"], "r": np.nan, "r2": np.nan, "r_ci_low": np.nan,
           "r_ci_high": np.nan, "r2_ci_low": np.nan, "r2_ci_high": np.nan,
           "spearman": np.nan, "spearman_p": np.nan, "partial_r": np.nan, "partial_p": np.nan}
    if n_dropped:
        notes.append(f"dropped {n_dropped} non-positive values (log scale)")
    if n < 3:
        return {**row, "note": "; ".join([*notes, f"too few models (n={n})"])}
    r = float(pearson_rows(x, y[None])[0])
    row.update(r=r, r2=r * r)
    boot = bootstrap_r(x, y, clusters, n_bootstrap, seed)
    row["r_ci_low"], row["r_ci_high"] = percentile_ci(boot)
    row["r2_ci_low"], row["r2_ci_high"] = percentile_ci(boot**2)
    if np.isfinite(r):
        row["spearman"], row["spearman_p"] = spearman(x, y)
    varying, constant = _varying_controls(table, mask, controls)
    if constant:
        notes.append(f"constant controls dropped: {', '.join(constant)}")
    if n < len(varying) + 3:
        notes.append(f"too few models for partial correlation (n={n}, {len(varying)} controls)")
    elif np.isfinite(r):
        Z = table.loc[mask, varying].to_numpy(dtype=float)  # (n, c)
        row["partial_r"], row["partial_p"] = partial_correlation(y, x, Z)
    else:
        notes.append("constant measure")
    return {**row, "note": "; ".join(notes)}


def correlate(table: pd.DataFrame, measures: Sequence[str] = MEASURES,
              controls: Sequence[str] = CONTROLS, *, n_bootstrap: int,
              seed: int) -> pd.DataFrame:
    """Per measure: Pearson r and R^2 of validation loss vs the (transformed) measure, Spearman
    rho, 95% cluster-bootstrap intervals of r and R^2 (whole design points resampled; n,
    n_runs, n_clusters and Kish's n_eff beside them), and the partial correlation controlling
    for ``controls`` (log parameters and epochs trained by default).

    Too few models give NaN with a ``note`` rather than an error, so a small grid still tabulates.
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    table = _with_log_params(table)
    if LOSS not in table.columns:
        raise ValueError(f"table has no {LOSS!r} column; build it with build_results_table")
    return pd.DataFrame([_correlate_one(table, m, controls, n_bootstrap, seed) for m in measures])


def correlation_summary(corr: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The headline columns of ``correlate`` at fixed rounding (stable text for nbval)."""
    cols = ["measure", "transform", "n", "n_clusters", "n_eff", "r", "r2", "r2_ci_low", "r2_ci_high", "spearman",
            "partial_r", "partial_p"]
    return round_sig(corr[[c for c in cols if c in corr.columns]], digits)


# ---------------------------------------------------------------------------------------------
# Permutation test (Table 1)


def permutation_matrix(n: int, n_permutations: int, seed: int) -> np.ndarray:
    """(n_permutations, n) independent random permutations of range(n), from a seeded Generator."""
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1)


def permutation_null(x: np.ndarray, y: np.ndarray, n_permutations: int, seed: int) -> np.ndarray:
    """Null distribution (n_permutations,) of Pearson r between ``x`` and permuted ``y``."""
    perms = permutation_matrix(len(y), n_permutations, seed)  # (P, n)
    return pearson_rows(x, y[perms])


def permutation_p(r: float, null: np.ndarray) -> float:
    """(b + 1) / (m + 1) with b the permuted |r| at least |r| among m: the observed labelling
    counts as one permutation, so p is never 0 and its smallest value is 1 / (m + 1)."""
    b = int(np.sum(np.abs(null) >= abs(r) - PERM_TOL))
    return (b + 1) / (len(null) + 1)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels); NaN entries stay NaN and do not count."""
    # heavy (statsmodels): loaded only when this statistic is computed
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def _permutation_one(table: pd.DataFrame, measure: str, n_permutations: int, seed: int) -> dict[str, Any]:
    x, mask, _ = transformed(table, measure)
    y = table.loc[mask, LOSS].to_numpy(dtype=float)
    row = {"measure": measure, "n": len(x), "r": np.nan, "r2": np.nan, "spearman": np.nan,
           "p": np.nan, "m": n_permutations}
    if len(x) < 3:
        return {**row, "note": f"too few models (n={len(x)})"}
    r = float(pearson_rows(x, y[None])[0])
    if not np.isfinite(r):
        return {**row, "note": "constant measure or loss"}
    p = permutation_p(r, permutation_null(x, y, n_permutations, seed))
    return {**row, "r": r, "r2": r * r, "spearman": spearman(x, y)[0], "p": p, "note": ""}


def permutation_test(table: pd.DataFrame, measures: Sequence[str] = MEASURES, *,
                     n_permutations: int, seed: int, alpha: float) -> pd.DataFrame:
    """Table 1: per measure n, r, R^2, Spearman rho, the permutation p = (b + 1)/(m + 1) over
    ``n_permutations`` random permutations of the losses, and the Holm-adjusted p over all
    measures; ``significant`` means Holm p < ``alpha``. The same permutations for every measure.

    Meant for seed-only replicas (``results.replica_rows``).
    """
    if len(table) < 3:
        raise ValueError(
            f"permutation test needs at least 3 seed-only replicas, got {len(table)}; "
            "add seeds to grid.replicas in the profile"
        )
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive, got {n_permutations}")
    out = pd.DataFrame([_permutation_one(table, m, n_permutations, seed) for m in measures])
    out.insert(out.columns.get_loc("p") + 1, "p_holm", holm(out["p"]))
    out.insert(out.columns.get_loc("p_holm") + 1, "significant", out["p_holm"] < alpha)
    return out


def table1(replicas: pd.DataFrame, *, n_permutations: int, seed: int, alpha: float) -> pd.DataFrame:
    """``permutation_test`` for a notebook: with fewer than 3 replicas every row is NaN with a
    note saying so, instead of stopping the series or printing a meaningless p-value."""
    if len(replicas) >= 3:
        return permutation_test(replicas, n_permutations=n_permutations, seed=seed, alpha=alpha)
    note = (f"too few seed-only replicas (n={len(replicas)}); the test needs at least 3: "
            "add seeds to grid.replicas in the profile")
    return pd.DataFrame({"measure": MEASURES, "n": len(replicas), "r": np.nan, "r2": np.nan,
                         "spearman": np.nan, "p": np.nan, "m": n_permutations, "p_holm": np.nan,
                         "significant": False, "note": note})


def format_p(p: float, m: int) -> str:
    """A permutation p for display: at its floor 1/(m + 1) (no permuted |r| reached the observed
    one; Holm can only raise p, so a Holm p at the floor is one too) it is written
    "≤ 1.0e-4" for m = 10⁴ (the floor, rounded up to 2 significant figures: the test cannot say
    more); else 2 significant figures."""
    if not np.isfinite(p):
        return ""
    floor = 1.0 / (m + 1)
    if p <= floor * (1 + 1e-9):
        return f"≤ {_round_up(floor):.1e}".replace("e-0", "e-")
    return f"{p:.2g}"


def _round_up(v: float) -> float:
    """``v`` > 0 rounded up to 2 significant figures (so "≤" stays true of the printed value)."""
    e = np.floor(np.log10(v)) - 1
    return float(np.ceil(v / 10**e - 1e-9) * 10**e)


def _num(v: float, fmt: str) -> str:
    return fmt.format(v) if np.isfinite(v) else ""


# Columns of table1_display that are not our own test's: the authors' numbers and the comparison
COMPARED_COLUMNS = ("authors r", "difference p", "authors Holm p")


def table1_display(perm: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as the paper prints it: measure label, n, r, R^2, Spearman, p and Holm p as text
    (3 significant figures; p as "≤ 1.0e-4" at its floor, ``format_p``); where ``perm`` has them
    (``replicas.reviewed_table1``), also the Fisher interval on r, the authors' replica r, the
    p of the difference, and the authors' Holm p."""
    out = pd.DataFrame({
        "measure": [label(m) for m in perm["measure"]],
        "n": perm["n"].astype(int),
        "r": perm["r"].map(lambda v: f"{v:+.3f}" if np.isfinite(v) else ""),
        "R²": perm["r2"].map(lambda v: f"{v:.3f}" if np.isfinite(v) else ""),
        "Spearman ρ": perm["spearman"].map(lambda v: f"{v:+.3f}" if np.isfinite(v) else ""),
        "p": [format_p(p, m) for p, m in zip(perm["p"], perm["m"], strict=True)],
        "Holm p": [format_p(p, m) for p, m in zip(perm["p_holm"], perm["m"], strict=True)],
    })
    if {"r_ci_low", "r_ci_high", "authors_r", "diff_p", "authors_p_holm"} <= set(perm.columns):
        out["r 95% CI"] = [f"[{lo:+.2f}, {hi:+.2f}]" if np.isfinite(lo) else ""
                           for lo, hi in zip(perm["r_ci_low"], perm["r_ci_high"], strict=True)]
        theirs = (perm["authors_r"].map(lambda v: _num(v, "{:+.3f}")),
                  perm["diff_p"].map(lambda v: _num(v, "{:.2g}")),
                  perm["authors_p_holm"].map(lambda v: _num(v, "{:.2g}")))
        for name, column in zip(COMPARED_COLUMNS, theirs, strict=True):
            out[name] = column
    return out


# ---------------------------------------------------------------------------------------------
# Shell interface


def _cli_analyze(args: argparse.Namespace) -> int:
    dest = resolve(args.dest)
    table = build_results_table(args.out_dir)
    outputs = {"results.csv": table,
               "correlations.csv": correlate(table, n_bootstrap=args.n_bootstrap, seed=args.seed)}
    if args.replicas:  # computed before anything is written, so a failure leaves no partial set
        spec = ModelName.parse(args.replicas)
        reps = replica_rows(table, {"depth": spec.depth, "width": spec.width, "epochs": spec.epochs,
                                    "weight_decay": spec.weight_decay})
        outputs["permutation.csv"] = permutation_test(reps, n_permutations=args.n_permutations, seed=args.seed,
                                                      alpha=args.alpha)
    for filename, df in outputs.items():
        save_table(df, dest / filename)
    print(f"{len(table)} checkpoints; wrote {', '.join(outputs)} to {dest}")
    return 0


def _alpha(text: str) -> float:
    """argparse ``type`` of ``--alpha``: a level in (0, 1] (one line from argparse otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {value}")
    return value


def register_cli(subparsers: Any) -> None:
    """``analyze``: results table, correlations and (optionally) the permutation test as CSVs."""
    p = subparsers.add_parser("analyze", help="tabulate measured checkpoints and correlate with loss")
    p.add_argument("--out-dir", required=True, type=cli_path, help="a profile's out_dir (holds models/ and metrics/)")
    p.add_argument("--dest", required=True, type=cli_path, help="folder for results.csv, correlations.csv, permutation.csv")
    p.add_argument("--replicas", default=None,
                   help="a run name, e.g. L2-d64-e1-wd0.0005-s0: permutation test over its seed replicas")
    p.add_argument("--n-bootstrap", type=positive_int, default=1000)
    p.add_argument("--n-permutations", type=positive_int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=_alpha, default=0.05,
                   help="permutation.csv's significant column: Holm p below this (default 0.05)")
    p.set_defaults(func=_cli_analyze)
