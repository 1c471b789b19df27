"""The statistics files of a profile at a glance (``02_collect``): one row per stats file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc.accumulate import class_means, means_hash
from linguistic_collapse.nc.stats_file import PASSES, load_stats, load_stats_metadata


def stats_overview(stats_dir: str | Path) -> pd.DataFrame:
    """One row per ``<name>/stats.safetensors`` under ``stats_dir``: classes seen (count >= 1),
    tokens per pass, and whether the file verifies (``passes_tied``: its ``means_hash`` is the
    hash of its own means, so pass 2 used the finished train means)."""
    rows = []
    for path in sorted(Path(stats_dir).glob("*/stats.safetensors")):
        meta, tensors = load_stats_metadata(path), load_stats(path)
        counts, sums = tensors["counts"], tensors["sums"]
        rows.append({"model": path.parent.name, "classes": int((counts > 0).sum()),
                     **{f"pass{i}_tokens": int(meta.get(f"pass{i}_tokens", 0)) for i in PASSES},
                     "passes_tied": meta.get("means_hash") == means_hash(class_means(counts, sums))})
    if not rows:
        raise UserError(f"no <model>/stats.safetensors under {stats_dir}; collect first")
    return pd.DataFrame(rows)
