"""Agreement of a fresh run's tables with the committed ones, to a stated tolerance.

Another CPU (or another torch thread count) rounds float sums differently, and training
amplifies the last bits: a fresh ``make paper`` (cpu profile) on another x86-64 machine matched
the committed tables with measures within 1.4 % and R² within 0.0006. Numbers therefore agree to
``RTOL`` relative (plus ``SCALE_ATOL`` of the column's largest magnitude, for entries near zero);
everything else (rows, columns, names, counts, labels) must match exactly, except content
hashes of weights (``*sha256``, ``*_hash`` columns), which change with any last bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

RTOL = 0.02  # relative: covers the 1.4 % cross-CPU drift of the measures, with margin
SCALE_ATOL = 1e-3  # absolute, as a fraction of the column's largest |value| (R² drift: 0.0006)
HASH_SUFFIXES = ("sha256", "_hash")  # columns that identify bytes, not values: not compared


def _close(ref: pd.Series, new: pd.Series, rtol: float, scale_atol: float) -> np.ndarray:
    a, b = ref.to_numpy(dtype=float), new.to_numpy(dtype=float)
    scale = np.nanmax(np.abs(np.concatenate([a, b]))) if np.isfinite(a).any() else 0.0
    tol = rtol * np.maximum(np.abs(a), np.abs(b)) + scale_atol * scale
    both_nan = np.isnan(a) & np.isnan(b)
    return both_nan | (np.abs(a - b) <= tol)


def table_differences(reference: pd.DataFrame, fresh: pd.DataFrame, rtol: float = RTOL,
                      scale_atol: float = SCALE_ATOL) -> list[str]:
    """Where ``fresh`` departs from ``reference`` beyond the tolerance, one line per column."""
    if list(reference.columns) != list(fresh.columns):
        return [f"columns differ: {list(reference.columns)} vs {list(fresh.columns)}"]
    if len(reference) != len(fresh):
        return [f"{len(reference)} rows vs {len(fresh)}"]
    problems = []
    for col in reference.columns:
        if col.endswith(HASH_SUFFIXES):
            continue
        ref, new = reference[col], fresh[col]
        numeric = pd.api.types.is_numeric_dtype(ref) and pd.api.types.is_numeric_dtype(new)
        if numeric and not (pd.api.types.is_bool_dtype(ref) or pd.api.types.is_integer_dtype(ref)
                            and pd.api.types.is_integer_dtype(new)):
            bad = ~_close(ref, new, rtol, scale_atol)
        else:
            bad = (ref.astype(str) != new.astype(str)).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            problems.append(f"{col}: {int(bad.sum())} of {len(ref)} rows differ, first row {i}: "
                            f"{ref.iloc[i]!r} vs {new.iloc[i]!r}")
    return problems


def csv_differences(reference: Path, fresh: Path, rtol: float = RTOL,
                    scale_atol: float = SCALE_ATOL) -> list[str]:
    """``table_differences`` of two CSV files."""
    return table_differences(pd.read_csv(reference), pd.read_csv(fresh), rtol, scale_atol)
