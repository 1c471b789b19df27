"""Cross-model analysis: results table, correlations with validation loss, permutation test,
scaling tables and per-token analysis (paper sections 5-6).

Pure functions on pandas DataFrames. The results table has one row per measured checkpoint;
``correlate`` gives Figure 1-3 statistics, ``permutation_test`` Table 1, the token functions
the first-name analysis.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib.model import RunName
from lib.paths import atomic_write, read_json, resolve

FIRST_NAMES_FILE = Path(__file__).with_name("first_names.txt")
LOSS = "val_loss"
# |r_perm| >= |r_obs| up to float round-off (the identity permutation must count as extreme)
PERM_TOL = 1e-12


@dataclass(frozen=True)
class MeasureInfo:
    """How a measure is shown: display label, the NC property, x-axis transform, collapse sign."""

    label: str  # "<property tag>: <short name>", e.g. "NC1: CDNV"
    prop: str
    transform: str  # "log" (log10 axis, log10 for fits) or "linear"
    collapse: str  # "lower" or "higher" values mean more collapse
    unit: str = ""  # empty: dimensionless ratio

    @property
    def short(self) -> str:
        return self.label.split(": ", 1)[-1]


MEASURE_INFO: dict[str, MeasureInfo] = {
    "nc1_cdnv": MeasureInfo("NC1: CDNV", "within-class variability", "log", "lower"),
    "nc1_cdnv_galanti": MeasureInfo("NC1: CDNV (Galanti)", "within-class variability", "log", "lower"),
    "nc2_norm_cv": MeasureInfo("NC2: norm CV", "equinormness", "linear", "lower"),
    "nc2_lognorm_cv": MeasureInfo("NC2: log-norm CV", "equinormness", "linear", "lower"),
    "nc2_interference_mean": MeasureInfo("NC2: interference mean", "equiangularity", "linear", "lower", "cosine"),
    "nc2_interference_std": MeasureInfo("NC2: interference std", "equiangularity", "linear", "lower", "cosine"),
    "gnc2_logkernel_mean": MeasureInfo("GNC2: log-kernel mean", "hyperspherical uniformity", "linear", "lower"),
    "gnc2_logkernel_var": MeasureInfo("GNC2: log-kernel variance", "hyperspherical uniformity", "log", "lower"),
    "nc3_duality_mean": MeasureInfo("NC3: duality mean", "self-duality", "linear", "higher", "cosine"),
    "unc3_duality_cv": MeasureInfo("UNC3: duality CV", "uniform duality", "linear", "lower"),
    "nc4_agreement": MeasureInfo("NC4: classifier agreement", "classifier agreement", "linear", "higher",
                                 "fraction of tokens"),
}
MEASURES: list[str] = list(MEASURE_INFO)

SPEC_COLUMNS = ["name", "run", "depth", "width", "epochs", "weight_decay", "seed", "checkpoint"]
RESULT_COLUMNS = ["n_params", "log_n_params", "val_loss", "val_acc", "num_classes"]


def axis_label(measure: str) -> str:
    """x-axis label of a measure: short name, unit (if any) and 'log scale' where plotted so."""
    info = MEASURE_INFO.get(measure)
    if info is None:
        return measure
    notes = [n for n in (info.unit, "log scale" if info.transform == "log" else "") if n]
    return f"{info.short} ({', '.join(notes)})" if notes else info.short


# ---------------------------------------------------------------------------------------------
# Results table


def _checkpoint_names(out_dir: Path, checkpoints: Sequence[RunName] | None) -> list[RunName]:
    """The checkpoints to tabulate: given ones (a bare run means its last epoch) or all measured."""
    if checkpoints is not None:
        return [ck if ck.checkpoint is not None else ck.at(ck.epochs) for ck in checkpoints]
    metrics_dir = out_dir / "metrics"
    if not metrics_dir.is_dir():
        raise FileNotFoundError(f"no metrics folder at {metrics_dir}; run the measure stage first")
    names = []
    for path in sorted(metrics_dir.glob("*.json")):
        try:  # other measured models (e.g. hub checkpoints) may share the folder
            name = RunName.parse(path.stem)
        except ValueError:
            continue
        if name.checkpoint is not None:
            names.append(name)
    if not names:
        raise FileNotFoundError(f"no '<run>-ck<epoch>.json' metrics in {metrics_dir}; run the measure stage first")
    return names


def _checkpoint_entry(results: Mapping[str, Any], ck: RunName, path: Path) -> Mapping[str, Any]:
    for entry in results.get("checkpoints", []):
        if int(entry["epoch"]) == ck.checkpoint:
            return entry
    raise ValueError(f"{path} has no checkpoint entry for epoch {ck.checkpoint}; retrain or evaluate {ck.run}")


def _table_row(out_dir: Path, ck: RunName) -> dict[str, Any]:
    results_path = out_dir / "models" / str(ck.run) / "results.json"
    metrics_path = out_dir / "metrics" / f"{ck}.json"
    results, metrics = read_json(results_path), read_json(metrics_path)
    missing = [m for m in MEASURES if m not in metrics]
    if missing:
        raise ValueError(f"{metrics_path} lacks measures {missing}; re-run the measure stage for {ck}")
    entry = _checkpoint_entry(results, ck, results_path)
    row = {"name": str(ck), "run": str(ck.run), **ck.as_dict()}
    n_params = int(results["n_params"])
    row.update(n_params=n_params, log_n_params=float(np.log10(n_params)),
               val_loss=float(entry["val_loss"]), val_acc=float(entry["val_acc"]),
               num_classes=metrics.get("num_classes"))
    row.update({m: np.nan if metrics[m] is None else float(metrics[m]) for m in MEASURES})  # null: undefined
    return row


def build_results_table(out_dir: str | os.PathLike, checkpoints: Sequence[RunName] | None = None) -> pd.DataFrame:
    """One row per measured checkpoint: run spec, size, validation loss/accuracy and every measure.

    ``checkpoints`` None tabulates every ``metrics/<run>-ck<e>.json`` under ``out_dir``.
    """
    out_dir = resolve(out_dir)
    names = _checkpoint_names(out_dir, checkpoints)
    missing = [str(p) for ck in names for p in (out_dir / "models" / str(ck.run) / "results.json",
                                                out_dir / "metrics" / f"{ck}.json") if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} result files missing under {out_dir}: {sorted(set(missing))}; "
            "train and measure those checkpoints first (or drop them from the list)"
        )
    table = pd.DataFrame([_table_row(out_dir, ck) for ck in names])
    table = table[SPEC_COLUMNS + RESULT_COLUMNS + MEASURES]
    return table.sort_values(["depth", "width", "epochs", "weight_decay", "seed", "checkpoint"],
                             ignore_index=True)


def save_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame as CSV atomically (no index column)."""
    return atomic_write(resolve(path), lambda tmp: df.to_csv(tmp, index=False))


def load_run_results(out_dir: str | os.PathLike) -> dict[str, dict]:
    """Every ``models/<run>/results.json`` under ``out_dir``, keyed by run name (for curves)."""
    models = resolve(out_dir) / "models"
    found = {p.parent.name: read_json(p) for p in sorted(models.glob("*/results.json"))}
    if not found:
        raise FileNotFoundError(f"no models/<run>/results.json under {resolve(out_dir)}; train first")
    return found


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    """A results table CSV (schema of ``build_results_table``); names missing columns."""
    path = resolve(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results table at {path}; run 03_measure (or `make paper`) first")
    table = pd.read_csv(path)
    missing = [c for c in ["depth", "width", "epochs", "weight_decay", "seed", "checkpoint",
                           "n_params", LOSS, *MEASURES] if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; it must have the schema of 03_measure")
    return table


def training_table(out_dir: str | os.PathLike, runs: Sequence[RunName]) -> pd.DataFrame:
    """One row per trained run and epoch: spec, n_params, val_loss, val_acc, tokens/s."""
    out_dir = resolve(out_dir)
    rows = []
    for run in runs:
        path = out_dir / "models" / str(run.run) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing; train {run.run} first")
        results = read_json(path)
        for entry in results["checkpoints"]:
            rows.append({"run": str(run.run), **run.run.as_dict(), "checkpoint": int(entry["epoch"]),
                         "n_params": int(results["n_params"]), LOSS: float(entry["val_loss"]),
                         "val_acc": float(entry["val_acc"]),
                         "train_tokens_per_s": float(entry.get("train_tokens_per_s", np.nan))})
    return pd.DataFrame(rows).sort_values(["depth", "width", "epochs", "weight_decay", "seed",
                                           "checkpoint"], ignore_index=True)


def training_summary(train_table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Per variant (epochs, weight decay) at its final epoch: runs and the loss range, rounded."""
    final = train_table[train_table["checkpoint"] == train_table["epochs"]]
    grouped = final.groupby(["epochs", "weight_decay"])[LOSS]
    out = grouped.agg(runs="count", best="min", median="median", worst="max").reset_index()
    cols = ["best", "median", "worst"]
    out[cols] = out[cols].map(lambda x: _round_sig(x, digits))
    return out


def largest_model(table: pd.DataFrame) -> RunName:
    """The checkpoint with the most parameters (latest checkpoint, then lowest loss, on ties)."""
    if table.empty:
        raise ValueError("the results table is empty; nothing to analyse")
    best = table.sort_values(["n_params", "checkpoint", LOSS], ascending=[False, False, True]).iloc[0]
    return RunName(int(best["depth"]), int(best["width"]), int(best["epochs"]),
                   float(best["weight_decay"]), int(best["seed"]), int(best["checkpoint"]))


# The paper's Figures 1-3: how strongly each measure relates to validation loss (docs/paper.md §6),
# and the R^2 range that counts as that strength here.
PAPER_CLAIMS: dict[str, str] = {
    "nc1_cdnv": "strong", "gnc2_logkernel_var": "strong", "nc4_agreement": "strong",
    "unc3_duality_cv": "clear", "nc2_interference_std": "some",
    "nc2_norm_cv": "negligible", "nc3_duality_mean": "negligible",
}
CLAIM_R2 = {"strong": (0.5, 1.0), "clear": (0.2, 1.0), "some": (0.1, 1.0), "negligible": (0.0, 0.1)}


def paper_claims(corr: pd.DataFrame) -> pd.DataFrame:
    """Per measure of Figures 1-3: the paper's claimed relation to loss, R^2 here, and whether the
    claim holds (R^2 within ``CLAIM_R2`` of the claimed strength; ``undetermined`` without R^2)."""
    rows = []
    for measure, claim in PAPER_CLAIMS.items():
        r2 = corr.loc[corr["measure"] == measure, "r2"]
        r2 = float(r2.iloc[0]) if len(r2) else np.nan
        low, high = CLAIM_R2[claim]
        verdict = "undetermined" if not np.isfinite(r2) else (
            "holds" if low <= r2 <= high else "does not hold")
        rows.append({"measure": measure, "paper": claim, "r2": _round_sig(r2, 3), "here": verdict})
    return pd.DataFrame(rows)


def correlation_summary(corr: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The headline columns of ``correlate`` at fixed rounding (stable text for nbval)."""
    cols = ["measure", "transform", "n", "r2", "partial_r", "partial_p"]
    return round_sig(corr[[c for c in cols if c in corr.columns]], digits)


# ---------------------------------------------------------------------------------------------
# Correlations


def measure_transform(measure: str) -> str:
    """The analysis scale of a measure, 'log' or 'linear' (columns not in MEASURE_INFO: linear)."""
    info = MEASURE_INFO.get(measure)
    return info.transform if info is not None else "linear"


def transformed(table: pd.DataFrame, measure: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(x, mask, n_dropped): the measure on its analysis scale (log10 where MEASURE_INFO says),
    with ``mask`` selecting the table rows kept (finite loss and measure, positive for log)."""
    if measure not in table.columns:
        raise ValueError(f"table has no column {measure!r}; columns: {list(table.columns)}")
    x = table[measure].to_numpy(dtype=float)
    mask = np.isfinite(x) & np.isfinite(table[LOSS].to_numpy(dtype=float))
    n_dropped = 0
    if measure_transform(measure) == "log":
        n_dropped = int(np.sum(mask & (x <= 0)))
        mask &= x > 0
        x = np.log10(np.where(mask, x, 1.0))
    return x[mask], mask, n_dropped


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


def bootstrap_r2_ci(x: np.ndarray, y: np.ndarray, n_bootstrap: int, seed: int,
                    level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of R^2 (models resampled with replacement, seeded)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_bootstrap, len(x)))  # (B, n)
    r2 = pearson_pairs(x[idx], y[idx]) ** 2
    if np.all(np.isnan(r2)):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(r2, [tail, 100 - tail])
    return float(low), float(high)


def _with_log_params(table: pd.DataFrame) -> pd.DataFrame:
    if "log_n_params" not in table.columns and "n_params" in table.columns:
        table = table.assign(log_n_params=np.log10(table["n_params"].astype(float)))
    return table


def partial_correlation(y: np.ndarray, x: np.ndarray, Z: np.ndarray) -> tuple[float, float]:
    """(partial r, p): correlation of ``y`` and ``x`` after regressing both on ``Z`` (n, c) plus
    an intercept (OLS residuals), and the p-value of x's coefficient in OLS y ~ 1 + x + Z."""
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
    n, notes = len(x), []
    row = {"measure": measure, "transform": measure_transform(measure),
           "n": n, "r": np.nan, "r2": np.nan, "r2_ci_low": np.nan, "r2_ci_high": np.nan,
           "partial_r": np.nan, "partial_p": np.nan}
    if n_dropped:
        notes.append(f"dropped {n_dropped} non-positive values (log scale)")
    if n < 3:
        return {**row, "note": "; ".join([*notes, f"too few models (n={n})"])}
    r = float(pearson_rows(x, y[None])[0])
    row.update(r=r, r2=r * r)
    row["r2_ci_low"], row["r2_ci_high"] = bootstrap_r2_ci(x, y, n_bootstrap, seed)
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
              controls: Sequence[str] = ("log_n_params", "epochs"),
              n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per measure: Pearson r and R^2 of validation loss vs the (transformed) measure, a seeded
    percentile bootstrap CI of R^2, and the partial correlation controlling for ``controls``.

    Too few models give NaN with a ``note`` rather than an error, so a small grid still tabulates.
    """
    table = _with_log_params(table)
    if LOSS not in table.columns:
        raise ValueError(f"table has no {LOSS!r} column; build it with build_results_table")
    rows = [_correlate_one(table, m, controls, n_bootstrap, seed) for m in measures]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Permutation test (Table 1)


def permutation_matrix(n: int, n_permutations: int, seed: int) -> np.ndarray:
    """(n_permutations, n) independent random permutations of range(n), from a seeded Generator."""
    rng = np.random.default_rng(seed)
    return rng.permuted(np.tile(np.arange(n), (n_permutations, 1)), axis=1)


def permutation_null(x: np.ndarray, y: np.ndarray, n_permutations: int, seed: int) -> np.ndarray:
    """Null distribution (n_permutations,) of Pearson r between ``x`` and permuted ``y``: one
    matrix product of the permuted standardised losses with the standardised measure."""
    perms = permutation_matrix(len(y), n_permutations, seed)  # (P, n)
    return pearson_rows(x, y[perms])


def _permutation_one(table: pd.DataFrame, measure: str, n_permutations: int, seed: int) -> dict[str, Any]:
    x, mask, _ = transformed(table, measure)
    y = table.loc[mask, LOSS].to_numpy(dtype=float)
    row = {"measure": measure, "n": len(x), "r": np.nan, "r2": np.nan, "p": np.nan, "significant": False}
    if len(x) < 3:
        return {**row, "note": f"too few models (n={len(x)})"}
    r = float(pearson_rows(x, y[None])[0])
    if not np.isfinite(r):
        return {**row, "note": "constant measure or loss"}
    null = permutation_null(x, y, n_permutations, seed)
    p = float(np.mean(np.abs(null) >= abs(r) - PERM_TOL))
    return {**row, "r": r, "r2": r * r, "p": p, "significant": p < 0.05, "note": ""}


def permutation_test(table: pd.DataFrame, measures: Sequence[str] = MEASURES,
                     n_permutations: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Table 1: per measure r, R^2 and the permutation p-value, the fraction of ``n_permutations``
    random permutations of the losses whose |r| is at least the observed |r|; p < 0.05 significant.

    Meant for seed-only replicas (``replica_rows``); the same seeded permutations for every measure.
    """
    if len(table) < 3:
        raise ValueError(
            f"permutation test needs at least 3 seed-only replicas, got {len(table)}; "
            "add seeds to grid.replicas in the profile"
        )
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be positive, got {n_permutations}")
    return pd.DataFrame([_permutation_one(table, m, n_permutations, seed) for m in measures])


def table1(replicas: pd.DataFrame, n_permutations: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """``permutation_test`` for a notebook: with fewer than 3 replicas every row is NaN with a
    note saying so, instead of stopping the series or printing a meaningless p-value."""
    if len(replicas) >= 3:
        return permutation_test(replicas, n_permutations=n_permutations, seed=seed)
    note = (f"too few seed-only replicas (n={len(replicas)}); the test needs at least 3: "
            "add seeds to grid.replicas in the profile")
    return pd.DataFrame({"measure": MEASURES, "n": len(replicas), "r": np.nan, "r2": np.nan,
                         "p": np.nan, "significant": False, "note": note})


_REQUIRED = object()


def _spec_value(spec: Any, key: str, default: Any = _REQUIRED) -> Any:
    value = spec.get(key, default) if isinstance(spec, Mapping) else getattr(spec, key, default)
    if value is _REQUIRED:
        raise ValueError(f"replicas spec lacks {key!r}; give depth, width, epochs, weight_decay (and seeds)")
    return value


def replica_rows(table: pd.DataFrame, replicas: Any, main_seed: int | None = None) -> pd.DataFrame:
    """The seed-only replicas: rows at the final checkpoint of the architecture/variant given by
    ``replicas`` (mapping or object with depth, width, epochs, weight_decay, seeds; seeds None =
    every seed present). ``main_seed``: the grid's own seed, whose model of that architecture and
    variant is one more replica (the paper's 20 copies + the grid model = 21)."""
    depth, width, epochs, wd = (_spec_value(replicas, k) for k in ("depth", "width", "epochs", "weight_decay"))
    seeds = _spec_value(replicas, "seeds", None)
    keep = ((table["depth"] == depth) & (table["width"] == width) & (table["epochs"] == epochs)
            & np.isclose(table["weight_decay"].astype(float), float(wd), rtol=1e-9, atol=0)
            & (table["checkpoint"] == epochs))
    if seeds is not None:
        keep &= table["seed"].isin([*seeds, *([] if main_seed is None else [main_seed])])
    return table[keep].sort_values("seed", ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Scaling


def scaling_table(table: pd.DataFrame, measures: Sequence[str] = MEASURES) -> pd.DataFrame:
    """Long format for scaling figures: one row per (checkpoint, measure) with the factors
    width, depth, epochs trained (``checkpoint``), weight decay, n_params, val_loss and ``value``."""
    missing = [m for m in measures if m not in table.columns]
    if missing:
        raise ValueError(f"table lacks measures {missing}")
    ids = [c for c in ["name", *SPEC_COLUMNS[2:], "n_params", LOSS] if c in table.columns]
    long = table.melt(id_vars=ids, value_vars=list(measures), var_name="measure", value_name="value")
    return long.rename(columns={"checkpoint": "epochs_trained"})


# ---------------------------------------------------------------------------------------------
# Token analysis


def load_first_names(path: str | os.PathLike = FIRST_NAMES_FILE) -> frozenset[str]:
    """Common English first names, lowercase (lib/first_names.txt)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return frozenset(s.strip().lower() for s in lines if s.strip() and not s.startswith("#"))


def decode_token(tokenizer: Any, token_id: int) -> str:
    """A token's text without the byte-level BPE space marker ('Ġ') or surrounding whitespace."""
    return tokenizer.decode([int(token_id)]).replace("\u0120", " ").strip()


def token_table(per_class: pd.DataFrame, tokenizer: Any) -> pd.DataFrame:
    """Per-class measures plus the decoded ``token`` string and relative ``frequency``."""
    need = {"token_id", "count", "variability", "interference"}
    if not need <= set(per_class.columns):
        raise ValueError(f"per-class frame lacks columns {sorted(need - set(per_class.columns))}; "
                         "use lib.measure.per_class_measures")
    out = per_class.copy()
    out["token"] = [decode_token(tokenizer, t) for t in out["token_id"]]
    out["frequency"] = out["count"] / out["count"].sum()
    return out


def first_name_table(tokens_df: pd.DataFrame, names: Iterable[str] | None = None) -> pd.DataFrame:
    """Tokens that are a first name (case-insensitive, whole token), most frequent first, then an
    "average token" row (mean over all tokens) and a count-weighted average row."""
    names = load_first_names() if names is None else frozenset(n.lower() for n in names)
    cols = ["token", "token_id", "count", "frequency", "variability", "interference"]
    cols = [c for c in cols if c in tokens_df.columns]
    is_name = tokens_df["token"].str.lower().isin(names)
    found = tokens_df.loc[is_name, cols].sort_values("count", ascending=False).assign(kind="first name")
    w = tokens_df["count"].to_numpy(dtype=float)
    mean = {c: tokens_df[c].mean() for c in ("count", "frequency", "variability", "interference")
            if c in tokens_df.columns}
    weighted = {c: float(np.average(tokens_df[c], weights=w)) for c in ("variability", "interference")}
    averages = pd.DataFrame([
        {"token": "average token", "kind": "average", **mean},
        {"token": "average token (count-weighted)", "kind": "average", **weighted},
    ])
    return pd.concat([found, averages], ignore_index=True)


def most_and_least_collapsed(tokens_df: pd.DataFrame, k: int = 10, by: str = "variability",
                             min_count: int = 1) -> pd.DataFrame:
    """The ``k`` tokens with the lowest and the ``k`` with the highest ``by`` (among tokens seen at
    least ``min_count`` times), labelled by ``group``."""
    if by not in tokens_df.columns:
        raise ValueError(f"no column {by!r} in the token frame")
    pool = tokens_df[tokens_df["count"] >= min_count].sort_values(by)
    low = pool.head(k).assign(group="most collapsed")
    high = pool.tail(k).iloc[::-1].assign(group="least collapsed")
    return pd.concat([low, high], ignore_index=True)


def _class_means(stats_or_means: Any) -> tuple[np.ndarray, np.ndarray]:
    """(token_ids (K,), means (K, D)) of the classes present: from a stats mapping (counts, sums)
    or a (V, D) array of means (rows with non-finite entries are absent classes)."""
    if isinstance(stats_or_means, Mapping):
        counts = np.asarray(stats_or_means["counts"], dtype=float)  # (V,)
        sums = np.asarray(stats_or_means["sums"], dtype=float)  # (V, D)
        ids = np.flatnonzero(counts >= 1)
        return ids, sums[ids] / counts[ids, None]
    M = np.asarray(stats_or_means, dtype=float)
    if M.ndim != 2:
        raise ValueError(f"class means must be a (V, D) array, got shape {M.shape}")
    ids = np.flatnonzero(np.isfinite(M).all(axis=1))
    return ids, M[ids]


def nearest_classes(stats_or_means: Any, token_id: int, k: int = 5) -> pd.DataFrame:
    """The ``k`` classes whose centred means m_c = mu_c - mu_G have the highest cosine with the
    centred mean of ``token_id`` (mu_G: unweighted mean of the present class means)."""
    ids, means = _class_means(stats_or_means)
    pos = np.flatnonzero(ids == token_id)
    if len(pos) == 0:
        raise ValueError(f"token {token_id} is not a class (never a train target)")
    m = means - means.mean(axis=0)  # (K, D)
    norms = np.linalg.norm(m, axis=1)
    cos = m @ m[pos[0]] / np.maximum(norms * norms[pos[0]], 1e-300)  # (K,)
    cos[pos[0]] = -np.inf
    order = np.argsort(-cos, kind="stable")[: min(k, len(ids) - 1)]
    return pd.DataFrame({"token_id": ids[order], "cosine": cos[order]})


# ---------------------------------------------------------------------------------------------
# Summary for notebooks


def round_sig(df: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Every float column rounded to ``digits`` significant figures: what notebooks display, so
    that nbval compares text that last-bit differences between machines do not change."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda x: _round_sig(x, digits))
    return out


def _round_sig(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}") if np.isfinite(x) else x


def summary_numbers(table: pd.DataFrame, measures: Sequence[str] = MEASURES, digits: int = 4) -> pd.DataFrame:
    """Per quantity (validation loss, accuracy, each measure): n, min, median, max rounded to
    ``digits`` significant figures, so nbval compares stable text."""
    rows = []
    for col in [LOSS, "val_acc", *measures]:
        if col not in table.columns:
            continue
        v = table[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        stats = (np.min(v), np.median(v), np.max(v)) if len(v) else (np.nan,) * 3
        rows.append({"quantity": col, "n": len(v), **{k: _round_sig(s, digits) for k, s in
                                                     zip(("min", "median", "max"), stats, strict=True)}})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Shell interface


def _cli_analyze(args: argparse.Namespace) -> int:
    dest = resolve(args.dest)
    table = build_results_table(args.out_dir)
    outputs = {"results.csv": table,
               "correlations.csv": correlate(table, n_bootstrap=args.n_bootstrap, seed=args.seed)}
    if args.replicas:  # computed before anything is written, so a failure leaves no partial set
        spec = RunName.parse(args.replicas)
        reps = replica_rows(table, {"depth": spec.depth, "width": spec.width, "epochs": spec.epochs,
                                    "weight_decay": spec.weight_decay})
        outputs["permutation.csv"] = permutation_test(reps, n_permutations=args.n_permutations, seed=args.seed)
    for filename, df in outputs.items():
        save_table(df, dest / filename)
    print(f"{len(table)} checkpoints; wrote {', '.join(outputs)} to {dest}")
    return 0


def register_cli(subparsers: Any) -> None:
    """``analyze``: results table, correlations and (optionally) the permutation test as CSVs."""
    p = subparsers.add_parser("analyze", help="tabulate measured checkpoints and correlate with loss")
    p.add_argument("--out-dir", required=True, help="a profile's out_dir (holds models/ and metrics/)")
    p.add_argument("--dest", required=True, help="folder for results.csv, correlations.csv, permutation.csv")
    p.add_argument("--replicas", default=None,
                   help="a run name, e.g. L2-d64-e1-wd0.0005-s0: permutation test over its seed replicas")
    p.add_argument("--n-bootstrap", type=int, default=1000)
    p.add_argument("--n-permutations", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli_analyze)
