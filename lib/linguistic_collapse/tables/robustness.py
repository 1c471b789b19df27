"""Robustness of the correlations to rare classes: each measure's R² with validation loss on all
classes beside the same on classes with at least ``analysis.min_count`` samples (the results
table's ``<measure>@min_count`` columns). No torch import.

Rare classes have few samples, so their means and variances are noisy; if a relation to loss
came from them, it would change when they are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from linguistic_collapse.nc.registry import MEASURES, label
from linguistic_collapse.tables.analysis import (
    bootstrap_r,
    pearson_rows,
    percentile_ci,
    transformed,
)
from linguistic_collapse.tables.clusters import design_point_ids
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.results import LOSS, MIN_COUNT, MIN_COUNT_SUFFIX

# why a measure has no value on the classes with >= min_count samples (empty: it has)
UNDEFINED_AT_MIN_COUNT = {
    "nc1_pinv": ("undefined at min_count: Σ_W is the within-class scatter pooled over every class "
                 "during collection and cannot be restricted to some classes afterwards "
                 "(linguistic_collapse.nc.subset); it needs a second pooled scatter of the kept "
                 "classes collected in the statistics pass"),
}
NO_MIN_COUNT = ("the metrics have no min_count section (measured before it existed): re-run the "
                "measure step to add the rare-class robustness row")


def _r2_ci(table: pd.DataFrame, column: str, measure: str, n_bootstrap: int, seed: int
           ) -> tuple[float, float, float, int]:
    """(R², low, high, n) of loss on ``column`` read on ``measure``'s analysis scale (NaNs and
    n = 0 where the column is missing)."""
    if column not in table.columns:
        return np.nan, np.nan, np.nan, 0
    x, mask, _ = transformed(table.assign(**{measure: table[column]}), measure)
    y = table.loc[mask, LOSS].to_numpy(dtype=float)
    if len(x) < 3:
        return np.nan, np.nan, np.nan, len(x)
    r = float(pearson_rows(x, y[None])[0])
    boot = bootstrap_r(x, y, design_point_ids(table)[mask], n_bootstrap, seed)
    low, high = percentile_ci(boot**2)
    return r * r, low, high, len(x)


def _base(column: str) -> str:
    """The registered measure whose scale and reason a column shares (nc1_pinv's cut-off
    variants ``nc1_pinv_rtol...`` are read as nc1_pinv)."""
    return "nc1_pinv" if column.startswith("nc1_pinv_rtol") else column


def min_count_table(table: pd.DataFrame, measures: Sequence[str] = MEASURES, *,
                    n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Per measure of ``measures`` and per nc1_pinv cut-off variant (``nc1_pinv_rtol*``
    columns) the table has, when the table has any ``<measure>@min_count`` column: R² with
    loss on all classes and on classes with >= min_count samples, each with its 95 %
    design-point bootstrap interval, n on each, the min_count, the range of classes kept, and
    a ``note`` where the second is not defined (``UNDEFINED_AT_MIN_COUNT``). Without such
    columns: an empty table whose ``attrs["note"]`` says why (``NO_MIN_COUNT``)."""
    cols = ["measure", "label", "R² all classes", "low", "high", "n all classes", "R² ≥ min_count",
            "low@min_count", "high@min_count", "n", "min_count", "classes kept (min-max)", "note"]
    variants = sorted(c for c in table.columns if c.startswith("nc1_pinv_rtol") and MIN_COUNT_SUFFIX not in c)
    wanted = [*measures, *(v for v in variants if v not in measures)]
    if not any(f"{m}{MIN_COUNT_SUFFIX}" in table.columns for m in wanted):
        wanted = []
    present = [m for m in wanted if m in table.columns]
    out = pd.DataFrame(columns=cols)
    if not present:
        out.attrs["note"] = NO_MIN_COUNT
        return out
    kept = table.get(f"num_classes{MIN_COUNT_SUFFIX}", pd.Series(dtype=float)).dropna()
    rows = []
    for m in present:
        a, a_lo, a_hi, n_all = _r2_ci(table, m, _base(m), n_bootstrap, seed)
        b, b_lo, b_hi, n = _r2_ci(table, f"{m}{MIN_COUNT_SUFFIX}", _base(m), n_bootstrap, seed)
        note = UNDEFINED_AT_MIN_COUNT.get(_base(m), "no value on the classes with >= min_count samples") if n == 0 else ""
        name = label(_base(m)) + (f" ({m})" if m != _base(m) else "")
        rows.append(dict(zip(cols, [m, name, a, a_lo, a_hi, n_all, b, b_lo, b_hi, n,
                                    table[MIN_COUNT].dropna().max() if MIN_COUNT in table else np.nan,
                                    f"{kept.min():.0f}–{kept.max():.0f}" if len(kept) else "", note], strict=True)))
    out = pd.DataFrame(rows, columns=cols)
    defined = int((out["n"] > 0).sum())
    out.attrs["note"] = (f"{defined} of {len(present)} measures recomputed on classes with at least "
                         "min_count samples (the note column says why the others are not); 95 % "
                         "intervals resample design points")
    return out


def record_findings(findings: Findings, robust: pd.DataFrame) -> None:
    """Record each measure's R² on all classes and on classes with >= min_count samples (with
    intervals), or the note saying the metrics lack the section."""
    if robust.empty:
        findings.add("min-count robustness", "not available", f"min_count.csv: {robust.attrs.get('note', '')}")
        return
    findings.add("min_count", robust["min_count"].iloc[0], "min_count.csv: min_count", fmt="{:.0f}")
    findings.add("classes kept at min_count", robust["classes kept (min-max)"].iloc[0],
                 "min_count.csv: classes kept (min-max)")
    for _, row in robust.iterrows():
        for key, lo, hi in (("R² all classes", "low", "high"), ("R² ≥ min_count", "low@min_count", "high@min_count")):
            text = f"{row[key]:.2f} [{row[lo]:.2f}, {row[hi]:.2f}]" if np.isfinite(row[key]) else (row["note"] or "n/a")
            findings.add(f"{row['label']}: {key}", text, f"min_count.csv: {row['measure']}, {key}")
