"""Files -> tables: the results table (one row per measured checkpoint), training curves,
the seed-replica rows, long formats for figures, and rounding for notebook display.

Reads ``models/<run>/results.json`` and ``metrics/<run>-ck<e>.json`` under a profile's
``out_dir`` (docs/architecture.md). No torch import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName, final_checkpoints, parse_checkpoints
from linguistic_collapse.core.paths import Layout, atomic_write, read_json, resolve
from linguistic_collapse.nc.registry import MEASURES

LOSS = "val_loss"
SPEC_COLUMNS = ["name", "run", "depth", "width", "epochs", "weight_decay", "seed", "checkpoint"]
RESULT_COLUMNS = ["n_params", "log_n_params", "val_loss", "val_acc", "num_classes"]
SORT_COLUMNS = ["depth", "width", "epochs", "weight_decay", "seed", "checkpoint"]
MIN_COUNT = "min_count"  # metrics section: the measures on classes with >= min_count samples
MIN_COUNT_SUFFIX = "@min_count"  # its columns: "<measure>@min_count", "num_classes@min_count"


def derive_measures(values: Mapping[str, Any]) -> dict[str, float]:
    """Measures that older files lack but that follow exactly from columns they have:
    ``nc2_interference_cv`` = interference std / |interference mean| (same pairs, ddof 0)."""
    out = {}
    if "nc2_interference_cv" not in values and {"nc2_interference_std",
                                                "nc2_interference_mean"} <= set(values):
        std, mean = values["nc2_interference_std"], values["nc2_interference_mean"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["nc2_interference_cv"] = np.asarray(std, dtype=float) / np.abs(np.asarray(mean, dtype=float))
    return out


# ---------------------------------------------------------------------------------------------
# Results table


def _checkpoint_names(out_dir: Path, checkpoints: Sequence[ModelName] | None) -> list[ModelName]:
    """The checkpoints to tabulate: given ones (a bare run means its last epoch) or all measured."""
    if checkpoints is not None:
        return final_checkpoints(checkpoints)
    metrics_dir = Layout(out_dir).metrics_dir
    if not metrics_dir.is_dir():
        raise FileNotFoundError(f"no metrics folder at {metrics_dir}; run the measure step first")
    names = parse_checkpoints(p.stem for p in sorted(metrics_dir.glob("*.json")))
    if not names:
        raise FileNotFoundError(f"no '<run>-ck<epoch>.json' metrics in {metrics_dir}; run the measure step first")
    return names


def _checkpoint_entry(results: Mapping[str, Any], ck: ModelName, path: Path) -> Mapping[str, Any]:
    for entry in results.get("checkpoints", []):
        if int(entry["epoch"]) == ck.checkpoint:
            return entry
    raise UserError(f"{path} has no checkpoint entry for epoch {ck.checkpoint}; retrain or evaluate {ck.run}")


def _table_row(out_dir: Path, ck: ModelName) -> dict[str, Any]:
    layout = Layout(out_dir)
    results_path, metrics_path = layout.results(ck), layout.metrics(ck)
    results, metrics = read_json(results_path), read_json(metrics_path)
    metrics = {**metrics, **{k: float(v) for k, v in derive_measures(metrics).items()}}
    missing = [m for m in MEASURES if m not in metrics]
    if missing:
        raise UserError(f"{metrics_path} lacks measures {missing}; re-run the measure step for {ck}")
    entry = _checkpoint_entry(results, ck, results_path)
    trained, measured = entry.get("weights_sha256"), metrics.get("weights_sha256")
    if trained and measured and trained != measured:  # the model was retrained after measuring
        raise UserError(f"{metrics_path} was measured from other weights than {ck} in "
                        f"{results_path}; recollect and re-measure: python -m linguistic_collapse grid --profile "
                        "<profile> (stale statistics are redone)")
    row = {"name": str(ck), "run": str(ck.run), **ck.as_dict()}
    n_params = int(results["n_params"])
    row.update(n_params=n_params, log_n_params=float(np.log10(n_params)),
               val_loss=float(entry["val_loss"]), val_acc=float(entry["val_acc"]),
               num_classes=metrics.get("num_classes"))
    row.update({m: np.nan if metrics[m] is None else float(metrics[m]) for m in MEASURES})  # null: undefined
    return {**row, **min_count_columns(metrics)}


def min_count_columns(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics' ``min_count`` section (absent in files measured before it existed: no
    columns) as ``min_count`` and ``<key>@min_count`` columns; null values become NaN."""
    section = metrics.get(MIN_COUNT)
    if not isinstance(section, Mapping):
        return {}
    out = {MIN_COUNT: float(section.get(MIN_COUNT, np.nan))}
    out.update({f"{k}{MIN_COUNT_SUFFIX}": np.nan if v is None else float(v)
                for k, v in section.items() if k != MIN_COUNT and isinstance(v, (int, float, type(None)))})
    return out


def build_results_table(out_dir: str | os.PathLike, checkpoints: Sequence[ModelName] | None = None) -> pd.DataFrame:
    """One row per measured checkpoint: run spec, size, validation loss/accuracy and every measure.

    ``checkpoints`` None tabulates every ``metrics/<run>-ck<e>.json`` under ``out_dir``.
    """
    out_dir = resolve(out_dir)
    names = _checkpoint_names(out_dir, checkpoints)
    layout = Layout(out_dir)
    missing = [str(p) for ck in names for p in (layout.results(ck), layout.metrics(ck)) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} result files missing under {out_dir}: {sorted(set(missing))}; "
            "train and measure those checkpoints first (or drop them from the list)"
        )
    table = pd.DataFrame([_table_row(out_dir, ck) for ck in names])
    extra = [c for c in table.columns if c == MIN_COUNT or c.endswith(MIN_COUNT_SUFFIX)]
    table = table[SPEC_COLUMNS + RESULT_COLUMNS + MEASURES + extra]  # extra: NaN where a file lacks them
    return table.sort_values(SORT_COLUMNS, ignore_index=True)


def save_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a DataFrame as CSV atomically (no index column)."""
    return atomic_write(resolve(path), lambda tmp: df.to_csv(tmp, index=False))


def load_run_results(out_dir: str | os.PathLike) -> dict[str, dict]:
    """Every ``models/<run>/results.json`` under ``out_dir``, keyed by run name (for curves)."""
    models = Layout(out_dir).models_dir
    found = {p.parent.name: read_json(p) for p in sorted(models.glob("*/results.json"))}
    if not found:
        raise FileNotFoundError(f"no models/<run>/results.json under {resolve(out_dir)}; train first")
    return found


def load_table(path: str | os.PathLike) -> pd.DataFrame:
    """A results table CSV (schema of ``build_results_table``). Measures that follow exactly
    from other columns (``derive_measures``) are added when a table predates them; a measure
    the file lacks entirely is an error naming it."""
    path = resolve(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results table at {path}; run 03_measure (or `make paper`) first")
    table = pd.read_csv(path)
    for name, values in derive_measures({c: table[c] for c in table.columns}).items():
        table[name] = values
    missing = [c for c in [*SORT_COLUMNS, "n_params", LOSS, *MEASURES] if c not in table.columns]
    if missing:
        raise UserError(f"{path} lacks columns {missing}; rebuild it with 03_measure "
                        "(or `python -m linguistic_collapse analyze`) so it has the results schema")
    refuse_duplicate_models(table, path)
    return table


def refuse_duplicate_models(table: pd.DataFrame, source: str | os.PathLike) -> None:
    """``UserError`` when a model appears twice (a twice-counted model fakes significance)."""
    keys = ["name"] if "name" in table.columns else SORT_COLUMNS
    twice = table[table.duplicated(keys, keep="first")]
    if len(twice):
        names = twice["name"].tolist() if "name" in twice else twice[keys].to_dict("records")
        raise UserError(f"{source} lists {len(twice)} model(s) more than once (e.g. {names[:3]}); "
                        "keep one row per model (was a table concatenated twice?)")


def training_table(out_dir: str | os.PathLike, runs: Sequence[ModelName]) -> pd.DataFrame:
    """One row per trained run and epoch: spec, n_params, val_loss, val_acc, tokens/s."""
    out_dir = resolve(out_dir)
    rows = []
    for run in runs:
        path = Layout(out_dir).results(run)
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing; train {run.run} first")
        results = read_json(path)
        for entry in results["checkpoints"]:
            rows.append({"run": str(run.run), **run.run.as_dict(), "checkpoint": int(entry["epoch"]),
                         "n_params": int(results["n_params"]), LOSS: float(entry["val_loss"]),
                         "val_acc": float(entry["val_acc"]),
                         "train_tokens_per_s": float(entry.get("train_tokens_per_s", np.nan))})
    return pd.DataFrame(rows).sort_values(SORT_COLUMNS, ignore_index=True)


def training_summary(train_table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Per variant (epochs, weight decay) at its final epoch: runs and the loss range, rounded."""
    final = train_table[train_table["checkpoint"] == train_table["epochs"]]
    grouped = final.groupby(["epochs", "weight_decay"])[LOSS]
    out = grouped.agg(runs="count", best="min", median="median", worst="max").reset_index()
    cols = ["best", "median", "worst"]
    out[cols] = out[cols].map(lambda x: round_sig_value(x, digits))
    return out


# ---------------------------------------------------------------------------------------------
# Row selections


def largest_model(table: pd.DataFrame) -> ModelName:
    """The checkpoint with the most parameters (latest checkpoint, then lowest loss, on ties)."""
    if table.empty:
        raise ValueError("the results table is empty; nothing to analyse")
    best = table.sort_values(["n_params", "checkpoint", LOSS], ascending=[False, False, True]).iloc[0]
    return ModelName(int(best["depth"]), int(best["width"]), int(best["epochs"]),
                     float(best["weight_decay"]), int(best["seed"]), int(best["checkpoint"]))


def final_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows at each run's final checkpoint (checkpoint == epochs)."""
    return table[table["checkpoint"] == table["epochs"]]


def run_ids(table: pd.DataFrame) -> np.ndarray:
    """One id per training run (all its checkpoints share it; seed replicas are separate runs):
    the ``run`` column, else the spec columns without the checkpoint, else one id per row."""
    if "run" in table.columns:
        return table["run"].astype(str).to_numpy()
    spec = ["depth", "width", "epochs", "weight_decay", "seed"]
    if set(spec) <= set(table.columns):
        return table[spec].astype(str).agg("-".join, axis=1).to_numpy()
    return np.arange(len(table)).astype(str)


def _spec_value(spec: Any, key: str, required: bool = True) -> Any:
    value = spec.get(key) if isinstance(spec, Mapping) else getattr(spec, key, None)
    if value is None and required:
        raise ValueError(f"replicas spec lacks {key!r}; give depth, width, epochs, weight_decay (and seeds)")
    return value


def replica_rows(table: pd.DataFrame, replicas: Any, main_seed: int | None = None) -> pd.DataFrame:
    """The seed-only replicas: rows at the final checkpoint of the architecture/variant given by
    ``replicas`` (mapping or object with depth, width, epochs, weight_decay, seeds; seeds None =
    every seed present). ``main_seed``: the grid's own seed, whose model of that architecture and
    variant is one more replica (the paper's 20 copies + the grid model = 21)."""
    depth, width, epochs, wd = (_spec_value(replicas, k) for k in ("depth", "width", "epochs", "weight_decay"))
    seeds = _spec_value(replicas, "seeds", required=False)
    keep = ((table["depth"] == depth) & (table["width"] == width) & (table["epochs"] == epochs)
            & np.isclose(table["weight_decay"].astype(float), float(wd), rtol=1e-9, atol=0)
            & (table["checkpoint"] == epochs))
    if seeds is not None:
        keep &= table["seed"].isin([*seeds, *([] if main_seed is None else [main_seed])])
    return table[keep].sort_values("seed", ignore_index=True)


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
# Display


def round_sig_value(x: float, digits: int) -> float:
    """``x`` to ``digits`` significant figures (non-finite values unchanged)."""
    return float(f"{x:.{digits}g}") if np.isfinite(x) else x


def round_sig(df: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """Every float column rounded to ``digits`` significant figures: what notebooks display, so
    that nbval compares text that last-bit differences between machines do not change."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda x: round_sig_value(x, digits))
    return out


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
        rows.append({"quantity": col, "n": len(v), **{k: round_sig_value(s, digits) for k, s in
                                                     zip(("min", "median", "max"), stats, strict=True)}})
    return pd.DataFrame(rows)
