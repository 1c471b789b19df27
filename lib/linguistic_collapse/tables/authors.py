"""The authors' published measurements (``artifacts/lc-*.csv`` in Wu & Papyan's repository),
read into this project's results schema so that ``04_correlate`` and ``05_permutation``
(profile ``paper``) redraw Figures 1-3 and Table 1 from their own numbers.

Their files are not in this repository (their code states no licence): download them from
the authors' repository and run ``python -m linguistic_collapse import-authors FILE [FILE ...] --out PATH.csv``.

Format. Columns ``model, n_params, val_acc, val_loss, perplex, cdnv, norms_mean, norms_var,
etf_error, interfere_mean, interfere_var, log_kern_mean, log_kern_var, dual_error, simdot_mean,
simdot_var, simcos_mean, simcos_var, dists_mean, dists_var, hits, misses, norms_log_mean,
norms_log_var``. ``etf_error`` (simplex-ETF error of the centred class means) becomes
``nc2_etf_error`` and ``dual_error`` (self-duality error between classifier and centred means)
``nc3_duality_error``, both as logged (their library's ``simplex_etf_error`` and
``self_duality_error``). The May-2024 file has ``interfere_mean, interfere_std`` as cosines instead,
the later one ``interfere_mean, interfere_var`` as raw dot products (not our cosine measures,
so not mapped). Model names ``LLxDDDD_EEW[SS]@k``: depth LL, width DDDD, epochs EE, weight
decay W (``d`` = 5e-4, ``L`` = 0.1), optional seed-replica index SS (00-19, our seeds 1-20;
absent = the grid's seed 0), and the 0-based epoch index k (our checkpoint k + 1).
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import check_out, cli_path, is_csv_with, resolve
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.tables.results import (
    RESULT_COLUMNS,
    SORT_COLUMNS,
    SPEC_COLUMNS,
    save_table,
)

NAME_RE = re.compile(r"^(?P<depth>\d{1,4})x(?P<width>\d{1,6})_(?P<epochs>\d{1,4})(?P<wd>[dL])"
                     r"(?P<rep>\d{2})?@(?P<k>\d{1,4})$")
WEIGHT_DECAY = {"d": 5e-4, "L": 0.1}
REQUIRED = ("model", "n_params", "val_loss")

Column = Callable[[pd.DataFrame], pd.Series]


def _cv(var: str, mean: str) -> Column:
    return lambda df: np.sqrt(df[var]) / df[mean]


# our measure: (their columns it needs, how it is computed, what it holds)
MAPPING: dict[str, tuple[tuple[str, ...], Column, str]] = {
    "nc1_cdnv": (("cdnv",), lambda df: df["cdnv"], "cdnv"),
    "nc2_norm_cv": (("norms_var", "norms_mean"), _cv("norms_var", "norms_mean"),
                    "sqrt(norms_var) / norms_mean"),
    "nc2_lognorm_cv": (("norms_log_var", "norms_log_mean"), _cv("norms_log_var", "norms_log_mean"),
                       "sqrt(norms_log_var) / norms_log_mean"),
    "nc2_interference_mean": (("interfere_mean", "interfere_std"), lambda df: df["interfere_mean"],
                              "interfere_mean (May-2024 file, cosines)"),
    "nc2_interference_std": (("interfere_std",), lambda df: df["interfere_std"],
                             "interfere_std (May-2024 file, cosines)"),
    "nc2_interference_cv": (("interfere_mean", "interfere_std"),
                            lambda df: df["interfere_std"] / df["interfere_mean"].abs(),
                            "interfere_std / |interfere_mean| (May-2024 file, cosines)"),
    "gnc2_logkernel_mean": (("log_kern_mean",), lambda df: df["log_kern_mean"], "log_kern_mean"),
    "gnc2_logkernel_var": (("log_kern_var",), lambda df: df["log_kern_var"], "log_kern_var"),
    "nc3_duality_mean": (("simcos_mean",), lambda df: df["simcos_mean"], "simcos_mean"),
    "unc3_duality_cv": (("simcos_var", "simcos_mean"), _cv("simcos_var", "simcos_mean"),
                        "sqrt(simcos_var) / simcos_mean"),
    "nc4_agreement": (("hits", "misses"), lambda df: df["hits"] / (df["hits"] + df["misses"]),
                      "hits / (hits + misses)"),
    "nc2_etf_error": (("etf_error",), lambda df: df["etf_error"], "etf_error"),
    "nc3_duality_error": (("dual_error",), lambda df: df["dual_error"], "dual_error"),
}


def imported_measures() -> list[str]:
    """The measure columns of an imported table: the registry's, then any mapped measure the
    registry does not list (so a measure the authors logged is kept before ours computes it)."""
    return MEASURES + [m for m in MAPPING if m not in MEASURES]


def parse_model_name(name: str) -> ModelName:
    """Their model name as our checkpoint name: ``02x0768_01d07@0`` -> L2-d768-e1-wd0.0005-s8-ck1."""
    m = NAME_RE.match(str(name).strip())
    if not m:
        raise ValueError(f"{name!r} is not an authors' model name (LLxDDDD_EEW[SS]@k, e.g. 02x0768_01d@0)")
    if min(int(m["depth"]), int(m["width"]), int(m["epochs"])) < 1:
        raise ValueError(f"{name!r} has depth, width or epochs 0; each must be at least 1")
    seed = 0 if m["rep"] is None else int(m["rep"]) + 1
    run = ModelName(int(m["depth"]), int(m["width"]), int(m["epochs"]), WEIGHT_DECAY[m["wd"]], seed)
    return run.at(int(m["k"]) + 1)


def _check_values(raw: pd.DataFrame, path: os.PathLike) -> None:
    """``UserError`` naming the first row (file line) with an impossible value: a parameter
    count that is not a positive integer, a loss that is negative or not finite."""
    def numbers(column: str) -> np.ndarray:
        values = pd.to_numeric(raw[column], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(np.isnan(values) & raw[column].notna().to_numpy())
        if len(bad):
            raise UserError(f"{path} line {bad[0] + 2}: {column} {raw[column].iloc[bad[0]]!r} is "
                            "not a number; fix or drop that row")
        return values

    checks = {
        "n_params": (lambda v: np.isfinite(v) & (v >= 1) & (v == np.floor(v)) & (v < 2**62),
                     "must be a positive whole number of parameters"),
        "val_loss": (lambda v: np.isfinite(v) & (v >= 0), "must be a finite loss >= 0"),
    }
    for column, (ok, what) in checks.items():
        if column not in raw.columns:
            continue
        values = numbers(column)
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero(~ok(values))
        if len(bad):
            raise UserError(f"{path} line {bad[0] + 2} ({raw['model'].iloc[bad[0]]}): {column} "
                            f"{raw[column].iloc[bad[0]]} {what}; fix or drop that row")


def _read_one(path: os.PathLike) -> pd.DataFrame:
    """One authors' CSV as our columns (NaN for measures it cannot give), indexed by name."""
    path = resolve(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; download artifacts/lc-*.csv from the authors' repository")
    try:
        raw = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a readable CSV ({' '.join(str(err).split())}); expected "
                        "the authors' lc-*.csv format") from None
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise UserError(f"{path} lacks columns {missing}; expected the authors' lc-*.csv format")
    if raw.empty:
        raise UserError(f"{path} has a header but no rows; pass a file with the authors' models")
    rows = []
    for line, model in enumerate(raw["model"], start=2):
        try:
            ck = parse_model_name(model)
        except ValueError as err:
            raise UserError(f"{path} line {line}: {err}; fix or drop that row") from None
        rows.append({"name": str(ck), "run": str(ck.run), **ck.as_dict()})
    _check_values(raw, path)
    out = pd.DataFrame(rows)
    out["n_params"] = pd.to_numeric(raw["n_params"]).astype("int64").to_numpy()
    out["log_n_params"] = np.log10(out["n_params"].astype(float))
    out["val_loss"] = raw["val_loss"].astype(float).to_numpy()
    out["val_acc"] = raw["val_acc"].astype(float).to_numpy() if "val_acc" in raw else np.nan
    out["num_classes"] = np.nan
    for measure in imported_measures():
        need, compute, _ = MAPPING.get(measure, ((), None, ""))
        ok = compute is not None and all(c in raw.columns for c in need)
        out[measure] = compute(raw.astype({c: float for c in need})).to_numpy() if ok else np.nan
    if out["name"].duplicated().any():
        raise UserError(f"{path} lists models {out.loc[out['name'].duplicated(), 'name'].tolist()} twice; "
                        "keep one row per model")
    return out.set_index("name", drop=False)


def column_sources(files: Sequence[os.PathLike]) -> dict[str, str]:
    """Per measure of ours, the authors' columns it comes from, or why it stays empty."""
    columns = set().union(*(pd.read_csv(resolve(f), nrows=0).columns for f in files))
    out = {}
    for measure in imported_measures():
        need, _, text = MAPPING.get(measure, ((), None, ""))
        out[measure] = text if need and set(need) <= columns else "empty: not in the authors' files"
    return out


def import_authors(files: Sequence[str | os.PathLike], out: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read the authors' measurement CSVs, merge them by model name (where two files give the
    same quantity, the first file listed wins; a measure no file gives stays empty) and return
    (and write to ``out``, if given) a table in the schema of ``runs/<profile>/results.csv``.
    ``attrs["sources"]`` names the authors' columns behind each measure."""
    if not files:
        raise UserError("import-authors: no input files; pass one or more of the authors' lc-*.csv")
    if out is not None:
        check_out(resolve(out), suffix=".csv", inputs=[resolve(f) for f in files],
                  ours=lambda p: is_csv_with(p, SPEC_COLUMNS))
    merged = None
    for f in files:
        one = _read_one(f)
        merged = one if merged is None else merged.combine_first(one)
    table = merged[SPEC_COLUMNS + RESULT_COLUMNS + imported_measures()].astype(
        {"depth": int, "width": int, "epochs": int, "seed": int, "checkpoint": int, "n_params": "int64"})
    table = table.sort_values(SORT_COLUMNS, ignore_index=True)
    table.attrs["sources"] = column_sources(files)
    if out is not None:
        save_table(table, out)
    return table


def _cli(args: argparse.Namespace) -> int:
    table = import_authors(args.files, args.out)
    print(f"{len(table)} models from {len(args.files)} file(s) -> {resolve(args.out)}")
    for measure, source in table.attrs["sources"].items():
        print(f"  {measure:24s} {source}")
    return 0


def register_cli(subparsers: Any) -> None:
    """``import-authors FILE [FILE ...] --out PATH.csv``: the authors' CSVs in our schema."""
    p = subparsers.add_parser("import-authors", help="the authors' lc-*.csv as a results table")
    p.add_argument("files", nargs="+", type=cli_path, help="the authors' measurement CSVs (artifacts/lc-*.csv)")
    p.add_argument("--out", required=True, type=cli_path, help="results table CSV to write")
    p.set_defaults(func=_cli)


def import_authors_cli(argv: Sequence[str]) -> int:
    """``import-authors`` as a function of its argument list (for scripts and tests)."""
    parser = argparse.ArgumentParser(prog="import-authors")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["import-authors", *argv])
    return args.func(args)
