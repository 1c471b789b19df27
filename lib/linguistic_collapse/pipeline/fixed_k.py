"""The sensitivity study's fixed-K measures: every sample of a checkpoint (each fraction and draw
of its training blocks, the full pass included) measured on only the classes seen in all of
them, so the class set (K classes) is the same at every fraction and draw
(``linguistic_collapse.nc.subset.restrict_classes``).

A checkpoint's rows are stored in ``Layout.fixed_k_metrics(ck)`` with the sha256 of every
sample's stats file and the ``MEASURE_VERSION``, and are current while both match, the rule of
every metrics file (``linguistic_collapse.pipeline.refresh``). ``pipeline.jobs.sensitivity_all``
measures them together with the samples' own measures, each stats file hashed once and read
once; ``linguistic_collapse.tables.sensitivity.fixed_k_table`` only reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from linguistic_collapse.core.paths import atomic_write_json, read_json
from linguistic_collapse.nc.measure import MEASURE_VERSION, measure_stats
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.nc.stats_file import read_counts
from linguistic_collapse.nc.subset import restrict_classes


def sample_key(fraction: float, draw: int) -> str:
    """A sample's key in the stored hashes: "0.5/1" (fraction, draw)."""
    return f"{float(fraction):g}/{int(draw)}"


def stored_rows(store: Path, stats_sha256: Mapping[str, str]) -> list[dict] | None:
    """The rows in ``store`` when they were measured from stats files of these sha256
    ({``sample_key``: sha256}) with the current ``MEASURE_VERSION``; None otherwise."""
    done = read_json(store) if store.is_file() else {}
    if done.get("stats_sha256") == dict(stats_sha256) and done.get("measure_version") == MEASURE_VERSION:
        return done["rows"]
    return None


def common_classes(paths: Iterable[Path]) -> Tensor:
    """(V,) bool: the classes with training samples in every stats file of ``paths`` (from each
    file's verified counts alone, a partial read)."""
    keep = None
    for path in paths:
        seen = read_counts(path) > 0
        keep = seen if keep is None else keep & seen
    if keep is None:
        raise ValueError("common_classes needs at least one stats file")
    return keep


def fixed_k_row(ck: Any, fraction: float, draw: int, tensors: Mapping[str, Tensor], keep: Tensor,
                device: str | torch.device = "cpu", tile: int = 2048) -> dict:
    """One sample's row: ``checkpoint, width, fraction, draw, num_classes`` (K) and every measure
    of its statistics ``tensors`` (verified) restricted to the classes ``keep``."""
    values = measure_stats(restrict_classes(tensors, keep), device=device, tile=tile)[0]
    return {"checkpoint": str(ck), "width": ck.width, "fraction": float(fraction),
            "draw": int(draw), "num_classes": int(keep.sum()),
            **{m: values.get(m, np.nan) for m in MEASURES}}


def save_rows(store: Path, stats_sha256: Mapping[str, str], rows: list[dict]) -> None:
    """Write a checkpoint's rows with the hashes of the stats files they were measured from."""
    atomic_write_json(store, {"stats_sha256": dict(stats_sha256),
                              "measure_version": MEASURE_VERSION, "rows": rows})
