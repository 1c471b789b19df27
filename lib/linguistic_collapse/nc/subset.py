"""Statistics restricted to a set of classes, so that every measure can be recomputed on them.

Why: robustness lines (the global measures on classes with at least ``min_count`` training
samples) and the sensitivity study's fixed-K variant (only the classes present in the smallest
sample) measure the same statistics on fewer classes. A class left out is made empty (count 0,
zero sums and moments), which every measure already skips; the global mean is then that of the
kept classes. Validation agreement keeps the NCC decisions made at collection over all classes,
and only the kept classes' tokens count. Pooled tensors that cannot be split by class are dropped,
so measures needing them are not computed from restricted statistics. No model code.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from linguistic_collapse.nc.measure import measure_stats

PER_CLASS = ("counts", "sums", "sq_dev", "val_counts", "val_agree")  # first dimension V
KEPT_AS_IS = ("lm_head",)  # the classifier is not a statistic of the samples


def _per_class(key: str) -> bool:
    return key in PER_CLASS or (key.startswith("layer") and key.split(".", 1)[-1] in ("sums", "sq_dev"))


def restrict_classes(stats: Mapping[str, Tensor], keep: Tensor) -> dict[str, Tensor]:
    """A copy of ``stats`` where only the classes in ``keep`` ((V,) bool) have samples.

    Per-class tensors are zeroed outside ``keep``; ``lm_head`` is kept; any other (pooled)
    tensor is dropped (module docstring)."""
    V = stats["counts"].shape[0]
    if keep.dtype != torch.bool or keep.shape != (V,):
        raise ValueError(f"keep must be a (V,) = ({V},) bool tensor, got {tuple(keep.shape)} {keep.dtype}")
    out = {}
    for key, t in stats.items():
        if _per_class(key):
            mask = keep.to(t.device).reshape(-1, *([1] * (t.dim() - 1)))
            out[key] = torch.where(mask, t, torch.zeros((), dtype=t.dtype, device=t.device))
        elif key in KEPT_AS_IS:
            out[key] = t
    return out


def min_count_classes(stats: Mapping[str, Tensor], min_count: int) -> Tensor:
    """(V,) bool: the classes with at least ``min_count`` training samples."""
    return stats["counts"] >= min_count


def min_count_section(stats: Mapping[str, Tensor], min_count: int,
                      device: str | torch.device = "cpu", tile: int = 2048) -> dict:
    """The robustness section of a metrics file: every measure on the classes with at least
    ``min_count`` training samples, as {"min_count": {"min_count": m, "num_classes": K_m,
    <measure>: value, "undefined": {...}}}; ``nc1_pinv`` is undefined there (its scatter is
    pooled over every class). Fewer than 2 such classes: every measure undefined, with why."""
    keep = min_count_classes(stats, min_count)
    head = {"min_count": int(min_count), "num_classes": int(keep.sum())}
    if int(keep.sum()) < 2:
        return {"min_count": {**head, "undefined": {
            "all": f"only {int(keep.sum())} class(es) have >= {min_count} training samples"}}}
    out = measure_stats(restrict_classes(stats, keep), device=device, tile=tile)[0]
    return {"min_count": {**out, **head}}
