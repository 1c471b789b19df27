"""How the measures depend on the sample: statistics of one model from growing prefixes of the
training blocks (issue 8, "sensitivity to the sample").

The subsets are deterministic prefixes: fraction f uses the first ceil(f * n) training blocks
in the stored order (``max_train_blocks``), so each subset contains the smaller ones and the
provenance of every stats file is the whole block array plus its ``pass1_blocks``. Validation
always uses every validation block. A class seen once has zero within-class variance by
construction, so the table also reports how many classes are seen and how often.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lib.collect import collect_model_stats, stale_reasons
from lib.errors import UserError
from lib.provenance import sha256_array, sha256_file
from lib.stats_file import partial_path, read_stats


def _blocks(blocks: np.ndarray | str | Path, split: str) -> np.ndarray:
    if isinstance(blocks, (str, Path)):
        if not Path(blocks).is_file():
            raise UserError(f"no {split} blocks at {blocks}; run the corpus stage first")
        return np.load(blocks, mmap_mode="r")
    return blocks


def prefix_blocks(n_blocks: int, fractions: Sequence[float]) -> list[int]:
    """Blocks used for each fraction: ceil(f * n_blocks), at least 1; fractions in (0, 1]."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad or not fractions:
        raise UserError(f"sample fractions must lie in (0, 1], got {list(fractions)}")
    return [max(1, math.ceil(f * n_blocks)) for f in fractions]


def _fresh(path: Path, n_blocks: int, hashes: dict[str, str]) -> bool:
    """True when ``path`` is a finished stats file of these inputs and this prefix length."""
    if not path.exists():
        return False
    if stale_reasons(path, **hashes, pass1_blocks=n_blocks):
        path.unlink()  # this function's own cache: made from other inputs, collect again
        partial_path(path).unlink(missing_ok=True)
        return False
    return True


def sample_sensitivity(model_dir: str | Path, train_blocks: np.ndarray | str | Path,
                       val_blocks: np.ndarray | str | Path,
                       fractions: Sequence[float] = (0.125, 0.25, 0.5, 1.0), *,
                       work_dir: str | Path, batch_size: int = 64, device: str = "cpu",
                       progress: bool = True) -> pd.DataFrame:
    """One row per fraction: ``fraction, train_tokens, num_classes, median_class_count,
    frac_singletons`` and every measure of ``lib.measure.compute_measures``.

    Statistics of fraction f come from the first ceil(f * n) training blocks and all validation
    blocks, in ``work_dir/train<blocks>.safetensors``; a finished file made from the same
    weights and blocks is reused, any other is collected again.
    """
    from lib.measure import compute_measures

    model_dir, work_dir = Path(model_dir), Path(work_dir)
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"no model.safetensors in {model_dir}; train the model first")
    train, val = _blocks(train_blocks, "train"), _blocks(val_blocks, "validation")
    hashes = {"weights_sha256": sha256_file(weights),
              "train_blocks_sha256": sha256_array(train), "val_blocks_sha256": sha256_array(val)}
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for fraction, n in zip(fractions, prefix_blocks(len(train), fractions), strict=True):
        path = work_dir / f"train{n}.safetensors"
        if not _fresh(path, n, hashes):
            collect_model_stats(model_dir, train_blocks, val_blocks, path, batch_size=batch_size,
                                device=device, max_train_blocks=n, progress=progress)
        stats, meta = read_stats(path)
        counts = stats["counts"][stats["counts"] > 0]  # (K,) classes seen
        rows.append({"fraction": float(fraction), "train_blocks": n,
                     "train_tokens": int(meta["pass1_tokens"]), "num_classes": int(len(counts)),
                     "median_class_count": float(np.median(counts.numpy())),
                     "frac_singletons": float((counts == 1).double().mean()),
                     **compute_measures(stats, device, progress=False)})
    return pd.DataFrame(rows)
