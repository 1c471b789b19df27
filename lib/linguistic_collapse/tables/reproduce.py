"""Agreement of a fresh run's tables with the committed ones, to a stated tolerance.

Another CPU (or another torch thread count) rounds float sums differently, and training
amplifies the last bits: a fresh ``make paper`` (cpu profile) on another x86-64 machine matched
the committed tables with measures within 1.4 % and R² within 0.0006. Numbers therefore agree to
``RTOL`` relative (plus ``SCALE_ATOL`` of the column's largest magnitude, for entries near zero);
everything else (rows, columns, names, counts, labels) must match exactly, except content
hashes of weights (``*sha256``, ``*_hash`` columns), which change with any last bit.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
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


def largest_relative_change(reference: pd.DataFrame, fresh: pd.DataFrame
                            ) -> tuple[float, str] | None:
    """The largest relative change |a - b| / (max(|a|, |b|) + SCALE_ATOL / RTOL * scale) over
    the numeric entries of two tables of the same columns and rows (hash columns left out),
    scale the column's largest |value|: entries near zero are measured against the column's
    size, so that a change is within ``table_differences``' tolerance exactly when it is at
    most RTOL. Returns it with its column; (0.0, "") when no number changed; None when the
    tables' shapes or columns differ."""
    if list(reference.columns) != list(fresh.columns) or len(reference) != len(fresh):
        return None
    worst, where = 0.0, ""
    for col in reference.columns:
        ref, new = reference[col], fresh[col]
        if col.endswith(HASH_SUFFIXES) or pd.api.types.is_bool_dtype(ref) or not (
                pd.api.types.is_numeric_dtype(ref) and pd.api.types.is_numeric_dtype(new)):
            continue
        a, b = ref.to_numpy(dtype=float), new.to_numpy(dtype=float)
        both = np.concatenate([a, b])
        scale = np.nanmax(np.abs(both)) if np.isfinite(both).any() else 0.0
        size = np.maximum(np.abs(a), np.abs(b)) + SCALE_ATOL / RTOL * scale
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(a == b, 0.0, np.abs(a - b) / size)  # nan where only one is nan
        rel = np.where(np.isnan(a) & np.isnan(b), 0.0, np.nan_to_num(rel, nan=np.inf))
        if len(rel) and rel.max() > worst:
            worst, where = float(rel.max()), col
    return worst, where


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          timeout=60).stdout


def _blob_sha(data: bytes) -> str:
    """git's object id of a file's bytes (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def rerun_summary(repo: Path, out_root: Path, name: str) -> str:
    """One line on what a run of profile ``name`` changed against the committed outputs: how
    many of the files git tracks under ``runs/<name>`` and ``figures/<name>`` (read at
    ``out_root``) differ from HEAD, and the largest relative change of any number in the
    changed tables, judged by ``RTOL``."""
    folders = [f"runs/{name}", f"figures/{name}"]
    try:
        listing = _git(repo, "ls-tree", "-r", "HEAD", "--", *folders).decode()
    except (OSError, subprocess.SubprocessError):
        return "no git history here: nothing to compare this run with"
    tracked = {}
    for row in listing.splitlines():
        meta, path = row.split("\t", 1)
        tracked[path] = meta.split()[2]
    if not tracked:
        return f"no committed outputs of {name} to compare this run with"
    changed = [p for p, sha in tracked.items()
               if not (out_root / p).is_file() or _blob_sha((out_root / p).read_bytes()) != sha]
    tables = [p for p in changed if p.endswith(".csv") and (out_root / p).is_file()]
    worst, where, reshaped = 0.0, "", []
    for p in tables:
        committed = pd.read_csv(io.BytesIO(_git(repo, "show", f"HEAD:{p}")))
        change = largest_relative_change(committed, pd.read_csv(out_root / p))
        if change is None:
            reshaped.append(Path(p).name)
        elif change[0] > worst:
            worst, where = change[0], f"{Path(p).name}, column {change[1]}"
    line = (f"{len(changed)} of {len(tracked)} committed files under {' and '.join(folders)} "
            f"changed ({len(tables)} tables)")
    if not tables:
        return line
    verdict = "within" if worst <= RTOL else "BEYOND"
    line += (f"; largest relative change of a number in the tables {worst:.1e}"
             + (f" ({where})" if where else "")
             + f", {verdict} the tolerance RTOL = {RTOL:g} (linguistic_collapse.tables.reproduce)")
    if reshaped:
        line += f"; rows or columns changed in {', '.join(reshaped)}"
    return line
