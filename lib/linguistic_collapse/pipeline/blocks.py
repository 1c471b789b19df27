"""The token blocks of a statistics pass: loading, token-id validation, shards and their identity
(the hash of the selected blocks, recorded in the stats file), and the sensitivity study's random
subsamples of training blocks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.provenance import sha256_array, sha256_json


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"shard {text!r} is not of the form i/n, e.g. 0/4") from None
    shard_range(n, (i, n))
    return i, n


def shard_text(shard: tuple[int, int] | None) -> str:
    """'' for the whole split, else 'i/n' (validated)."""
    return "" if shard is None else "{}/{}".format(*shard) if shard_range(0, shard) else ""


def shard_range(n_blocks: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Contiguous block range [start, stop) of shard i of n (Shard i of n: [i*N//n, (i+1)*N//n))."""
    i, n = shard
    if not 0 <= i < n:
        raise UserError(f"shard ({i}, {n}) needs 0 <= i < n")
    return i * n_blocks // n, (i + 1) * n_blocks // n


def _as_block_array(blocks: np.ndarray | str | Path, split: str) -> np.ndarray:
    if isinstance(blocks, (str, Path)):
        path = Path(blocks)
        if not path.is_file():
            raise UserError(f"no {split} blocks at {path}; run the corpus step first")
        blocks = np.load(path, mmap_mode="r")
    if not isinstance(blocks, np.ndarray) or blocks.ndim != 2 or blocks.dtype.kind not in "iu":
        raise UserError(f"{split} blocks must be an integer array (n_blocks, T), got "
                        f"{blocks!r:.80}")
    if blocks.shape[0] == 0 or blocks.shape[1] < 2:
        raise UserError(f"{split} split is empty: blocks of shape {blocks.shape}; need at least "
                        "one block of at least 2 tokens")
    return blocks


def _check_token_ids(blocks: np.ndarray, vocab_size: int, split: str, rows: int = 4096) -> None:
    lo, hi = 0, 0
    for a in range(0, blocks.shape[0], rows):
        part = np.asarray(blocks[a:a + rows])
        lo, hi = min(lo, int(part.min())), max(hi, int(part.max()))
    if lo < 0:
        raise UserError(f"{split} blocks contain negative token id {lo}")
    if hi >= vocab_size:
        raise UserError(
            f"{split} blocks contain token id {hi}, so the tokenizer has at least {hi + 1} tokens, "
            f"but the model's LM head has {vocab_size} rows: use the tokenizer the model was "
            "trained with"
        )


def subsample_blocks(n_blocks: int, fraction: float, seed: int, draw: int) -> np.ndarray:
    """Indices of ``ceil(fraction * n_blocks)`` (at least one) distinct blocks of ``n_blocks``,
    in increasing order, drawn without replacement by a generator seeded from (``seed``,
    ``fraction``, ``draw``): the same subsample on every machine and run, another per draw."""
    if not 0 < fraction <= 1 or n_blocks < 1 or draw < 0:
        raise UserError(f"need 0 < fraction <= 1, n_blocks >= 1 and draw >= 0, got {fraction}, "
                        f"{n_blocks}, {draw}")
    k = max(1, math.ceil(fraction * n_blocks))
    # the fraction enters the seed as an exact integer (parts per billion), not as a float
    rng = np.random.default_rng([int(seed), round(fraction * 10**9), int(draw)])
    return np.sort(rng.choice(n_blocks, size=k, replace=False)).astype(np.int64)  # (k,)


class IndexedBlocks:
    """Rows ``indices`` of a block array, read lazily (a memory map stays a memory map): the
    slicing and ``shape`` a statistics pass uses, so a subsample is never copied whole."""

    def __init__(self, blocks: np.ndarray, indices: np.ndarray) -> None:
        self.base, self.indices = blocks, indices  # (N, T), (n,) increasing
        self.shape = (int(indices.shape[0]), int(blocks.shape[1]))
        self.dtype = blocks.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.base[self.indices[rows]])  # (len(rows), T)


def _check_indices(indices: Sequence[int], n: int, split: str) -> np.ndarray:
    """``indices`` as an increasing int64 array of distinct rows of ``n`` blocks, else one line."""
    idx = np.asarray(indices, dtype=np.int64)  # (k,)
    if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= n \
            or np.any(np.diff(idx) <= 0):
        raise UserError(f"{split} block indices must be increasing, distinct and in [0, {n}); "
                        f"got {idx.size} indices")
    return idx


@dataclass(frozen=True)
class BlockSplit:
    """The blocks one pass (or shard) processes, and the identity of the split they come from."""

    blocks: np.ndarray | IndexedBlocks  # (n, T)
    split_sha: str  # identity of the capped split: whole array's sha256 + blocks kept
    sha256: str  # linguistic_collapse.core.provenance.sha256_array of the whole array, before any cap
    indices_sha256: str = ""  # sha256 of the selected row indices; "" when no selection


def select_blocks(blocks: np.ndarray | str | Path | BlockSplit, vocab_size: int, *,
                  split: str = "train", max_blocks: int | None = None,
                  shard: tuple[int, int] | None = None,
                  indices: Sequence[int] | None = None) -> BlockSplit:
    """Validated blocks: the first ``max_blocks``, then the rows ``indices`` of those (a
    subsample, kept in order), then shard i/n's contiguous range."""
    if isinstance(blocks, BlockSplit):
        return blocks
    whole = _as_block_array(blocks, split)
    if max_blocks is not None and max_blocks < 1:
        raise UserError(f"max_blocks must be positive, got {max_blocks}")
    arr, whole_sha = whole[:max_blocks], sha256_array(whole)
    identity: dict[str, object] = {"blocks_sha256": whole_sha, "first": int(arr.shape[0])}
    indices_sha = ""
    if indices is not None:
        idx = _check_indices(indices, arr.shape[0], split)
        indices_sha = sha256_array(idx)
        identity["indices_sha256"] = indices_sha
        arr = IndexedBlocks(arr, idx)
    split_sha = sha256_json(identity)
    if shard is not None:
        start, stop = shard_range(arr.shape[0], shard)
        if start == stop:
            raise UserError(f"shard {shard_text(shard)} of {arr.shape[0]} {split} blocks is empty")
        arr = (IndexedBlocks(arr.base, arr.indices[start:stop]) if isinstance(arr, IndexedBlocks)
               else arr[start:stop])
    _check_token_ids(arr, vocab_size, split)
    return BlockSplit(arr, split_sha, whole_sha, indices_sha)
