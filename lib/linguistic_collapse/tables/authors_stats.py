"""The numbers ``linguistic_collapse.tables.authors_facts`` holds, computed from the authors' published files.

Everything here reads a table imported by ``linguistic_collapse.tables.authors.import_authors`` (their
``artifacts/lc-*.csv``) and applies this project's own statistics (``linguistic_collapse.tables.analysis``), so
that their values and ours come from one implementation: R² intervals that resample their
training runs, r and R² on their models of each training length, and Table 1 on their 21 seed
replicas. ``scripts/authors_facts.py`` prints the result as the module's dicts. No torch import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.tables import analysis
from linguistic_collapse.tables.authors import import_authors, imported_measures
from linguistic_collapse.tables.clusters import design_point_ids, kish_n_eff
from linguistic_collapse.tables.results import LOSS, replica_rows, run_ids

# their seed replicas: 02x0768_01dSS@0 (SS = 00-19, our seeds 1-20) and the grid's 02x0768_01d@0
AUTHORS_REPLICA_DESIGN = {"depth": 2, "width": 768, "epochs": 1, "weight_decay": 5e-4, "seeds": None}
EPOCHS = (1, 3, 10)  # their training lengths; ours are 1 and 3


def _measures(table: pd.DataFrame, measures: Sequence[str] | None) -> list[str]:
    """The measures with at least 3 finite values in ``table`` (all imported ones by default)."""
    names = imported_measures() if measures is None else list(measures)
    return [m for m in names if m in table.columns and np.isfinite(table[m].to_numpy(float)).sum() >= 3]


def r2_intervals(table: pd.DataFrame, measures: Sequence[str] | None = None, n_bootstrap: int = 2000,
                 seed: int = 0, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Per measure the percentile interval of R² of loss on it (analysis scale) over all rows,
    from a bootstrap that draws whole training runs (a run's checkpoints share its history)."""
    out = {}
    for m in _measures(table, measures):
        x, mask, _ = analysis.transformed(table, m)
        y = table.loc[mask, LOSS].to_numpy(dtype=float)
        boot = analysis.bootstrap_r(x, y, run_ids(table)[mask], n_bootstrap, seed)  # (B,)
        out[m] = analysis.percentile_ci(boot**2, level)
    return out


def _r(x: np.ndarray, y: np.ndarray) -> float:
    return float(analysis.pearson_rows(x, y[None])[0]) if len(x) >= 3 else float("nan")


def by_epochs(table: pd.DataFrame, measures: Sequence[str] | None = None,
              epochs: Sequence[int] = EPOCHS) -> dict[str, dict[int, tuple[float, float, int]]]:
    """Per measure and training length (the run's epochs, every checkpoint of those runs):
    (r, R², number of models), like for like with a grid that trains for those lengths."""
    out: dict[str, dict[int, tuple[float, float, int]]] = {}
    for m in _measures(table, measures):
        out[m] = {}
        for e in epochs:
            sub = table[table["epochs"] == e]
            x, mask, _ = analysis.transformed(sub, m)
            r = _r(x, sub.loc[mask, LOSS].to_numpy(dtype=float))
            out[m][int(e)] = (r, r * r, int(len(x)))
    return out


def design_n_eff(table: pd.DataFrame, epochs: Sequence[int] = EPOCHS) -> dict[int, float]:
    """Per training length, Kish's effective number of design points (depth x width x epochs;
    weight-decay twins, seed replicas and checkpoints share one) among their models of it."""
    return {int(e): kish_n_eff(design_point_ids(table[table["epochs"] == e])) for e in epochs}


QUANTILES = 101  # stored quantiles (0 %, 1 %, ..., 100 %) of a bootstrap distribution


def r2_design_quantiles(table: pd.DataFrame, measures: Sequence[str] | None = None,
                        epochs: Sequence[int] = (1, 3), n_bootstrap: int = 10_000, seed: int = 0
                        ) -> dict[str, dict[int, tuple[float, ...]]]:
    """Per measure and training length, ``QUANTILES`` evenly spaced quantiles of R² of loss on
    the measure over their models of that length, from a bootstrap of their design points
    (``clusters.design_point_ids``: weight-decay twins and seed replicas drawn together): their
    side of the like-for-like equivalence test (``verdicts.authors_epochs_draws`` samples it)."""
    out: dict[str, dict[int, tuple[float, ...]]] = {}
    for e in epochs:
        sub = table[table["epochs"] == e].reset_index(drop=True)
        for m in _measures(sub, measures):
            x, mask, _ = analysis.transformed(sub, m)
            y = sub.loc[mask, LOSS].to_numpy(dtype=float)
            boot = analysis.bootstrap_r(x, y, design_point_ids(sub)[mask], n_bootstrap, seed) ** 2
            boot = boot[np.isfinite(boot)]
            if len(boot):
                out.setdefault(m, {})[int(e)] = tuple(float(v) for v in np.quantile(boot, np.linspace(0, 1, QUANTILES)))
    return out


def replica_table1(table: pd.DataFrame, measures: Sequence[str] | None = None,
                   n_permutations: int = 10_000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Table 1 on their 21 seed replicas (``analysis.permutation_test``: same p and Holm;
    ``alpha`` sets only its ``significant`` column, which ``authors_facts`` does not keep)."""
    reps = replica_rows(table, AUTHORS_REPLICA_DESIGN)
    if len(reps) < 3:
        raise UserError(f"the authors' files hold {len(reps)} seed replicas of 02x0768_01d; "
                        "pass the lc-2024_10_24.csv file, which lists 21")
    return analysis.permutation_test(reps, _measures(reps, measures), n_permutations=n_permutations,
                                     seed=seed, alpha=alpha)


def authors_facts(files: Sequence[str | os.PathLike], n_bootstrap: int = 2000, n_permutations: int = 10_000,
                  seed: int = 0, design_bootstrap: int = 10_000) -> dict[str, Any]:
    """The dicts of ``linguistic_collapse.tables.authors_facts`` from the authors' CSV files
    (``design_bootstrap`` resamples of their design points for ``AUTHORS_R2_QUANTILES``)."""
    table = import_authors(files)
    perm = replica_table1(table, n_permutations=n_permutations, seed=seed)
    return {
        "AUTHORS_R2_CI": r2_intervals(table, n_bootstrap=n_bootstrap, seed=seed),
        "AUTHORS_BY_EPOCHS": by_epochs(table),
        "AUTHORS_DESIGN_N_EFF": design_n_eff(table),
        "AUTHORS_R2_QUANTILES": r2_design_quantiles(table, n_bootstrap=design_bootstrap, seed=seed),
        "AUTHORS_REPLICAS": {row.measure: (float(row.r), int(row.n)) for row in perm.itertuples()},
        "AUTHORS_REPLICA_P": {row.measure: (float(row.p), float(row.p_holm)) for row in perm.itertuples()},
        "n_models": len(table), "n_runs": len(set(run_ids(table))),
    }


def _fmt(v: Any) -> str:
    """A number as Python source: 3 decimals for floats (p to 2 significant figures), ints as is."""
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return "float('nan')" if not np.isfinite(v) else f"{v:.3f}"


def _p(p: float) -> str:
    """A p-value as Python source at 2 significant figures, always a float literal."""
    text = f"{p:.2g}"
    return text if any(c in text for c in ".en") else text + ".0"


def format_facts(facts: dict[str, Any]) -> str:
    """The dicts as Python assignments to paste into ``lib/linguistic_collapse/tables/authors_facts.py``."""
    lines = [f"# {facts['n_models']} models, {facts['n_runs']} training runs"]
    for name in ("AUTHORS_R2_CI", "AUTHORS_BY_EPOCHS", "AUTHORS_REPLICAS"):
        lines.append(f"{name} = {{")
        for m, v in facts[name].items():
            body = ("{" + ", ".join(f"{e}: {_fmt(t)}" for e, t in v.items()) + "}") if isinstance(v, dict) else _fmt(v)
            lines.append(f'    "{m}": {body},')
        lines.append("}")
    lines.append("AUTHORS_DESIGN_N_EFF = {" + ", ".join(
        f"{e}: {v:.3f}" for e, v in facts["AUTHORS_DESIGN_N_EFF"].items()) + "}")
    lines.append("AUTHORS_R2_QUANTILES = {")
    for m, by in facts["AUTHORS_R2_QUANTILES"].items():
        lines.append(f'    "{m}": {{' + ", ".join(
            f"{e}: (" + ", ".join(f"{v:.4f}" for v in q) + ")" for e, q in by.items()) + "},")
    lines.append("}")
    lines.append("AUTHORS_REPLICA_P = {")
    for m, (p, ph) in facts["AUTHORS_REPLICA_P"].items():
        lines.append(f'    "{m}": ({_p(p)}, {_p(ph)}),')
    lines.append("}")
    return "\n".join(lines)
