"""Merging the shard files of one statistics pass into one stats file: the parts must be disjoint
shards of the same model, blocks and earlier passes; moments merge with Chan's formula."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc.accumulate import merge_m2, merge_scatter
from linguistic_collapse.nc.stats_file import (
    FORMAT_VERSION,
    MODEL_KEYS,
    PASS_TENSORS,
    PROVENANCE_KEYS,
    check_train_pass,
    done_passes,
    earlier_meta,
    load_stats_metadata,
    pass1_keys,
    write_stats,
)


def _merged_pass(metas: list[dict[str, str]], paths: Sequence[Path]) -> int:
    highest = {max(done_passes(m), default=0) for m in metas}
    if len(highest) != 1 or 0 in highest:
        raise UserError(f"shards {list(map(str, paths))} hold different last passes {highest}; "
                        "merge the shards of one pass at a time")
    return highest.pop()


def _check_parts(metas: list[dict[str, str]], pass_: int, paths: Sequence[Path]) -> None:
    """Same model, split and provenance, same earlier passes and means; shards 0..n-1 once."""
    first = metas[0]
    for m, p in zip(metas, paths, strict=True):
        if m.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{p} has stats format {m.get('format_version')!r}, not "
                            f"{FORMAT_VERSION!r}; collect that shard again")
        if max(done_passes(m), default=0) != pass_:
            raise UserError(f"{p} does not end with pass {pass_}; merge one pass at a time")
        if pass_ > 1 and m.get("means_hash") != first.get("means_hash"):
            raise UserError(f"cannot merge pass {pass_} shards computed with different pass-1 "
                            f"means: hash {m.get('means_hash')} != {first.get('means_hash')}")
        keys = (*MODEL_KEYS, *PROVENANCE_KEYS, "layers", f"pass{pass_}_split_sha",
                f"pass{pass_}_compute_dtype", *earlier_meta(first, pass_))
        for key in keys:
            if m.get(key) != first.get(key):
                raise UserError(f"cannot merge {p}: its {key} {m.get(key)!r} differs from "
                                f"{first.get(key)!r} of {paths[0]}")
    shards = sorted(m[f"pass{pass_}_shard"] for m in metas)
    n = int(shards[0].split("/")[1]) if shards[0] else 0
    if n == 0 or shards != sorted(f"{i}/{n}" for i in range(n)):
        raise UserError(f"pass-{pass_} shards must be 0/n .. n-1/n, each once; got {shards}")


def merge_accumulators(merged: dict[str, Tensor], part: dict[str, Tensor],
                       keys: Sequence[str]) -> None:
    """Add one shard's accumulators ``keys`` into ``merged`` (Chan's formula for each sq_dev
    and for the pooled scatter ``sw``, with the counts and sums before this part's are added)."""
    for key in keys:
        if key.endswith("sq_dev"):
            sums = key.removesuffix("sq_dev") + "sums"
            merged[key] = merge_m2(merged["counts"], merged[sums], merged[key],
                                   part["counts"], part[sums], part[key])
        elif key == "sw":
            merged[key] = merge_scatter(merged["counts"], merged["sums"], merged[key],
                                        part["counts"], part["sums"], part[key])
    for key in keys:
        if not key.endswith("sq_dev") and key != "sw":
            merged[key] = merged[key] + part[key]


def merge_stats(paths: Sequence[str | Path], out_path: str | Path,
                pass_: int | None = None) -> Path:
    """Merge the shards of one pass, in shard order: pass 1 counts, sums and (Chan) sq_dev and sw,
    pass 2 validation counts. All parts must come from the same model, blocks and (pass 2) the
    same train means; their earlier passes are carried over unchanged."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("merge_stats needs at least one shard file")
    metas = [load_stats_metadata(p) for p in paths]
    pass_ = pass_ or _merged_pass(metas, paths)
    _check_parts(metas, pass_, paths)
    order = sorted(range(len(paths)), key=lambda i: int(metas[i][f"pass{pass_}_shard"]
                                                         .split("/")[0]))
    paths, metas = [paths[i] for i in order], [metas[i] for i in order]
    parts = [check_train_pass(p, m) for p, m in zip(paths, metas, strict=True)]  # verified
    merged = dict(parts[0])
    keys = pass1_keys(metas[0]) if pass_ == 1 else PASS_TENSORS[pass_]
    for part, p in zip(parts[1:], paths[1:], strict=True):
        for key, t in part.items():
            if key not in keys and not torch.equal(merged[key], t):
                raise UserError(f"cannot merge {p}: its {key} differs from {paths[0]}'s")
        merge_accumulators(merged, part, keys)
    meta = {**metas[0], f"pass{pass_}_shard": ""}
    for key in ("blocks", "tokens"):
        meta[f"pass{pass_}_{key}"] = str(sum(int(m[f"pass{pass_}_{key}"]) for m in metas))
    return write_stats(out_path, merged, meta)
