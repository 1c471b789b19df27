"""The three statistics passes of paper section 4, streaming, resumable and shardable.

For every block position t the feature x_t (the LM head's input, ``lib.model.final_features``)
pairs with the label y = token t+1, so a block of T tokens gives T-1 samples.

1. Pass 1 (train): per class c the count N_c and the feature sum; mu_c = sum / N_c.
2. Pass 2 (train): S_c = sum of ||x - mu_c||^2 over class c, with the *finished* pass-1 means.
3. Pass 3 (validation): per true class, how many tokens there are and on how many the LM-head
   decision argmax_c <w_c, x> equals the nearest-class-centre decision argmin_c ||x - mu_c||,
   both over the K train classes (N_c >= 1). The LM head is restricted to those K rows too, so
   both rules choose among the same classes (a token the LM head would give to a class never
   seen in train cannot be compared with the NCC rule).

Accumulation is ``bincount`` + ``index_add_``: work grows with tokens x width, never with
tokens x classes, and sums are kept in float64 whatever the model's precision.

Files. ``out_path`` (e.g. ``stats.safetensors``) holds the finished passes so far; during a pass
the working file ``<out>.partial.safetensors`` holds the pass's accumulators and the next block
index, saved atomically every ``checkpoint_every`` batches. Blocks are processed in a fixed
order, so a run killed at any moment and restarted gives exactly the numbers of an uninterrupted
one (on CPU bit for bit; on CUDA ``index_add_`` uses atomic float adds, so any two runs may differ
in the last bits). Passes 2 and 3 record the sha256 of the pass-1 means they used
(``means_hash``) and refuse working state or shards made with other means.

Sharded workflow (each step may run as n independent jobs, e.g. SLURM array tasks)::

    for i in range(n):  # pass-1 shards: partial counts and sums
        collect_model_stats(m, train, None, p1[i], passes=(1,), shard=(i, n))
    merge_stats(p1, stage1)              # totals -> means and means_hash
    for i in range(n):  # pass-2 shards, all with the merged pass-1 means
        collect_model_stats(m, train, None, p2[i], passes=(2,), shard=(i, n), base=stage1)
    merge_stats(p2, stage2)              # refuses shards made with other means
    for i in range(n):  # pass-3 shards on the validation blocks
        collect_model_stats(m, None, val, p3[i], passes=(3,), shard=(i, n), base=stage2)
    merge_stats(p3, stats)               # the finished stats.safetensors

Shell: ``python -m lib collect MODEL --train-blocks t.npy --out p1_0.safetensors --pass 1
--shard 0/4``, then ``python -m lib merge-stats stage1.safetensors p1_*.safetensors``, and so
on with ``--base``. Shard i of n is the contiguous block range [i*N//n, (i+1)*N//n).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from lib.model import final_features, lm_head_weight, load_causal_lm
from lib.paths import REPO_ROOT, atomic_write, resolve

FORMAT_VERSION = "1"
PASSES = (1, 2, 3)
PASS_TENSORS = {1: ("counts", "sums"), 2: ("sq_dev",), 3: ("val_counts", "val_agree")}
PASS_META = ("blocks", "tokens", "shard", "split_sha")  # metadata keys pass{N}_<key>
DEFAULT_CHUNK = 4096  # classes per score tile in pass 3: (tokens, chunk) float64 at a time
MODEL_KEYS = ("model", "vocab_size", "width", "lm_head_sha256")


class PassInterrupted(RuntimeError):
    """Raised by the ``stop_after_batches`` test hook: simulates a run killed mid-pass."""


# ---------------------------------------------------------------------------------------------
# Accumulators (in place, on any device).


ROW_CHUNK = 4096  # rows converted to float64 at a time: cache-sized, no (N, D) float64 copy


def _check_finite(features: Tensor) -> None:
    # One reduction: any NaN/inf makes the sum non-finite (an elementwise isfinite mask costs
    # more than the accumulation itself; a float32 sum overflows only for absurd features).
    if not torch.isfinite(features.sum()):
        raise ValueError(
            "features contain NaN or inf: check the model/precision (a diverged checkpoint, or "
            "fp16 overflow; collect in float32 or bf16)"
        )


def accumulate_sums(features: Tensor, labels: Tensor, counts: Tensor, sums: Tensor) -> None:
    """Pass 1: ``counts += bincount(labels)``, ``sums[labels] += features`` (float64).

    features (N, D), labels (N,) int64, counts (V,) int64, sums (V, D) float64.
    """
    _check_finite(features)
    n_per_class = torch.bincount(labels, minlength=counts.shape[0])  # (V,)
    if n_per_class.shape[0] != counts.shape[0]:
        raise ValueError(f"label {int(labels.max())} outside the {counts.shape[0]} classes")
    counts += n_per_class
    for a in range(0, features.shape[0], ROW_CHUNK):
        sums.index_add_(0, labels[a:a + ROW_CHUNK], features[a:a + ROW_CHUNK].double())


def accumulate_sq_dev(features: Tensor, labels: Tensor, means: Tensor, sq_dev: Tensor) -> None:
    """Pass 2: ``sq_dev[c] += sum over class-c samples of ||x - mu_c||^2``.

    features (N, D), labels (N,), means (V, D) float64, sq_dev (V,) float64.
    """
    _check_finite(features)
    for a in range(0, features.shape[0], ROW_CHUNK):
        y = labels[a:a + ROW_CHUNK]
        dev = features[a:a + ROW_CHUNK].double() - means[y]  # (chunk, D)
        sq_dev.index_add_(0, y, (dev * dev).sum(1))


def _chunked_argmax(x: Tensor, rows: Callable[[int, int], Tensor], bias: Tensor | None,
                    k: int, chunk: int) -> Tensor:
    """argmax_j <x, r_j> - bias_j over j < k, computed ``chunk`` rows at a time (first on ties)."""
    best_val = torch.full((x.shape[0],), -torch.inf, dtype=x.dtype, device=x.device)  # (N,)
    best_idx = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # (N,)
    for a in range(0, k, chunk):
        b = min(a + chunk, k)
        scores = x @ rows(a, b).T  # (N, b - a)
        if bias is not None:
            scores = scores - bias[a:b]
        val, idx = scores.max(1)
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + a, best_idx)
    return best_idx


def ncc_agreement(features: Tensor, labels: Tensor, W: Tensor, means_valid: Tensor,
                  valid_ids: Tensor, val_counts: Tensor, val_agree: Tensor,
                  chunk: int = DEFAULT_CHUNK) -> None:
    """Pass 3: count tokens per true class, and those where the LM head agrees with NCC.

    LM head: argmax over the K valid classes of <w_c, x> (W (V, D) restricted to ``valid_ids``).
    NCC: argmin_c ||x - mu_c||^2 = argmax_c 2 x.mu_c - ||mu_c||^2 (||x||^2 is constant per x).
    features (N, D), labels (N,), means_valid (K, D) float64, valid_ids (K,),
    val_counts / val_agree (V,) int64. Scores are float64, tiled ``chunk`` classes at a time.
    """
    _check_finite(features)
    x = features.double()  # (N, D)
    k = valid_ids.shape[0]
    lm = _chunked_argmax(x, lambda a, b: W[valid_ids[a:b]].double(), None, k, chunk)  # (N,)
    mu = means_valid.double()
    ncc = _chunked_argmax(x, lambda a, b: 2.0 * mu[a:b], (mu * mu).sum(1), k, chunk)  # (N,)
    v = val_counts.shape[0]
    val_counts += torch.bincount(labels, minlength=v)
    val_agree += torch.bincount(labels[lm == ncc], minlength=v)


# ---------------------------------------------------------------------------------------------
# Means and their hash.


def class_means(counts: Tensor, sums: Tensor) -> Tensor:
    """mu (V, D) float64 = sums / counts; rows of classes never seen stay zero (never used)."""
    return sums.double() / counts.clamp(min=1).unsqueeze(1).double()


def means_hash(means: Tensor) -> str:
    """sha256 of the means' bytes: ties passes 2 and 3 to the pass-1 means they used."""
    return hashlib.sha256(means.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _tensor_sha(t: Tensor) -> str:
    return hashlib.sha256(t.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Blocks: loading, validation, shards.


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r} is not of the form i/n, e.g. 0/4") from None
    return _check_shard((i, n))


def _check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard ({i}, {n}) needs 0 <= i < n")
    return int(i), int(n)


def _shard_text(shard: tuple[int, int] | None) -> str:
    return "" if shard is None else "{}/{}".format(*_check_shard(shard))


def shard_range(n_blocks: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Contiguous block range [start, stop) of shard i of n."""
    i, n = _check_shard(shard)
    return i * n_blocks // n, (i + 1) * n_blocks // n


def _as_block_array(blocks: np.ndarray | str | Path, split: str) -> np.ndarray:
    if isinstance(blocks, (str, Path)):
        path = Path(blocks)
        if not path.exists():
            raise FileNotFoundError(f"no {split} blocks at {path}; run the corpus stage first")
        blocks = np.load(path, mmap_mode="r")
    if not isinstance(blocks, np.ndarray) or blocks.ndim != 2 or blocks.dtype.kind not in "iu":
        raise ValueError(
            f"{split} blocks must be an integer array (n_blocks, T), got {blocks!r:.80}"
        )
    if blocks.shape[0] == 0 or blocks.shape[1] < 2:
        raise ValueError(
            f"{split} split is empty: blocks of shape {blocks.shape}; need at least one block "
            "of at least 2 tokens"
        )
    return blocks


def _check_token_ids(blocks: np.ndarray, vocab_size: int, split: str, rows: int = 4096) -> None:
    lo, hi = 0, 0
    for a in range(0, blocks.shape[0], rows):
        part = np.asarray(blocks[a:a + rows])
        lo, hi = min(lo, int(part.min())), max(hi, int(part.max()))
    if lo < 0:
        raise ValueError(f"{split} blocks contain negative token id {lo}")
    if hi >= vocab_size:
        raise ValueError(
            f"{split} blocks contain token id {hi}, so the tokenizer has at least {hi + 1} tokens, "
            f"but the model's LM head has {vocab_size} rows: use the tokenizer the model was "
            "trained with"
        )


def blocks_fingerprint(blocks: np.ndarray, n_rows: int = 64) -> str:
    """Cheap identity of a block array: its shape and up to ``n_rows`` evenly spaced rows."""
    idx = np.unique(np.linspace(0, blocks.shape[0] - 1, min(n_rows, blocks.shape[0])).astype(int))
    h = hashlib.sha256(str(blocks.shape).encode())
    h.update(np.ascontiguousarray(blocks[idx], dtype=np.int64).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class BlockSplit:
    """The blocks one pass (or shard) processes, and the identity of the whole split."""

    blocks: np.ndarray  # (n, T)
    split_sha: str
    split_blocks: int


def select_blocks(blocks: np.ndarray | str | Path, vocab_size: int, *, split: str = "train",
                  max_blocks: int | None = None,
                  shard: tuple[int, int] | None = None) -> BlockSplit:
    """Validated blocks: the first ``max_blocks``, then shard i/n's contiguous range."""
    arr = _as_block_array(blocks, split)
    if max_blocks is not None:
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be positive, got {max_blocks}")
        arr = arr[:max_blocks]
    split_sha, n_all = blocks_fingerprint(arr), arr.shape[0]
    if shard is not None:
        start, stop = shard_range(n_all, shard)
        if start == stop:
            raise ValueError(f"shard {_shard_text(shard)} of {n_all} {split} blocks is empty")
        arr = arr[start:stop]
    _check_token_ids(arr, vocab_size, split)
    return BlockSplit(arr, split_sha, n_all)


# ---------------------------------------------------------------------------------------------
# Model identity.


def _name_of_path(path: str | Path) -> str:
    """A local checkpoint's name: repository-relative when inside the repository."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO_ROOT)) if p.is_relative_to(REPO_ROOT) else str(p)


def model_name(model: nn.Module) -> str:
    """The model's name_or_path (normalised when it is a local path) or an in-memory tag."""
    name = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
    if not name:
        return f"<in-memory {type(model).__name__}>"
    return _name_of_path(name) if Path(name).exists() else str(name)


def model_info(model: nn.Module, name: str | None = None,
               tokenizer: str | None = None) -> dict[str, str]:
    """Metadata identifying the model a stats file belongs to."""
    W = lm_head_weight(model)
    name = name or model_name(model)
    return {"model": name, "tokenizer": tokenizer or name, "vocab_size": str(W.shape[0]),
            "width": str(W.shape[1]), "lm_head_sha256": _tensor_sha(W)}


def check_tokenizer_size(n_tokens: int, vocab_size: int) -> None:
    """A tokenizer may not produce ids the LM head has no row for."""
    if n_tokens > vocab_size:
        raise ValueError(
            f"tokenizer has {n_tokens} tokens but the model's LM head has {vocab_size} rows: "
            "use the tokenizer the model was trained with"
        )


def _check_same_model(meta: dict[str, str], info: dict[str, str], where: Path) -> None:
    for key in MODEL_KEYS:
        if meta.get(key) != info[key]:
            raise ValueError(
                f"{where} belongs to another model: its {key} is {meta.get(key)!r}, this model's "
                f"is {info[key]!r}; use another output path or delete the file"
            )


# ---------------------------------------------------------------------------------------------
# Stats files.


def load_stats(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a stats file (counts, sums, sq_dev, val_counts, val_agree, lm_head)."""
    return load_file(str(_existing(path)))


def load_stats_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a stats file (model, vocab_size, passN_tokens, means_hash, ...)."""
    with safe_open(str(_existing(path)), framework="pt") as f:
        return dict(f.metadata() or {})


def stats_overview(stats_dir: str | Path):
    """One row per ``<name>/stats.safetensors`` under ``stats_dir``: classes seen (count >= 1),
    tokens per pass, and whether passes 2 and 3 used the finished pass-1 means (the file's
    ``means_hash`` equals the hash of its own means)."""
    import pandas as pd

    rows = []
    for path in sorted(resolve(stats_dir).glob("*/stats.safetensors")):
        meta = load_stats_metadata(path)
        with safe_open(str(path), framework="pt") as f:
            counts, sums = f.get_tensor("counts"), f.get_tensor("sums")
        rows.append({"model": path.parent.name, "classes": int((counts > 0).sum()),
                     **{f"pass{i}_tokens": int(meta.get(f"pass{i}_tokens", 0)) for i in (1, 2, 3)},
                     "passes_tied": meta.get("means_hash") == means_hash(class_means(counts, sums))})
    if not rows:
        raise FileNotFoundError(f"no <model>/stats.safetensors under {resolve(stats_dir)}; collect first")
    return pd.DataFrame(rows)


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no stats file at {path}; run `python -m lib collect` first")
    return path


def _save(path: Path, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=meta))


def partial_path(out_path: str | Path) -> Path:
    """The working file of a pass in progress, beside ``out_path``."""
    return Path(out_path).with_suffix(".partial.safetensors")


def done_passes(meta: dict[str, str]) -> dict[int, str]:
    """{pass: shard} of the passes a file holds ('' = the whole split, else 'i/n')."""
    return {p: meta[f"pass{p}_shard"] for p in PASSES if f"pass{p}_blocks" in meta}


def is_finished(path: str | Path) -> bool:
    """True when ``path`` is a complete, unsharded stats file."""
    path = Path(path)
    return path.exists() and done_passes(load_stats_metadata(path)) == {1: "", 2: "", 3: ""}


def check_stats_for_model(path: str | Path, model: nn.Module, *, check_name: bool = True) -> None:
    """ValueError when the stats file was made from another model (size, width, name, LM head)."""
    meta, W = load_stats_metadata(path), lm_head_weight(model).detach()
    for key, have in (("vocab_size", W.shape[0]), ("width", W.shape[1])):
        if meta.get(key) != str(have):
            raise ValueError(f"{path} belongs to another model: {key} {meta.get(key)} != {have}")
    name, stored = model_name(model), meta.get("model", "")
    in_memory = name.startswith("<in-memory") or stored.startswith("<in-memory")
    if check_name and not in_memory and name != stored:
        raise ValueError(f"{path} belongs to model {stored!r}, not {name!r} "
                         "(pass check_name=False if the checkpoint was moved)")
    with safe_open(str(path), framework="pt") as f:
        head = f.get_tensor("lm_head") if "lm_head" in f.keys() else None
    if head is not None and not _same_head(head, W):
        raise ValueError(f"{path} was collected with another LM head than this model's")


def _same_head(head: Tensor, W: Tensor) -> bool:
    w = W.float().cpu()
    if W.dtype == torch.float32:
        return torch.equal(head, w)
    return bool((head - w).norm() <= 1e-2 * w.norm())  # model loaded in lower precision


# ---------------------------------------------------------------------------------------------
# One pass.


@dataclass
class _Base:
    """The earlier passes a pass builds on: their tensors, metadata and the pass-1 means."""

    tensors: dict[str, Tensor]
    meta: dict[str, str]
    means_hash: str = ""
    means: Tensor | None = None  # (V, D) float64


def _load_base(base: str | Path | None, pass_no: int, info: dict[str, str]) -> _Base:
    if pass_no == 1:
        return _Base({}, {})
    if base is None:
        raise ValueError(f"pass {pass_no} needs the stats file of the earlier passes (base)")
    meta = load_stats_metadata(base)
    _check_same_model(meta, info, Path(base))
    done = done_passes(meta)
    if done.get(1) != "":
        raise ValueError(
            f"pass {pass_no} must use the finished pass-1 means: {base} holds no finished, merged "
            f"pass 1 (passes: shards {done}); run pass 1 or merge its shards first"
        )
    if pass_no == 3 and done.get(2, "") != "":
        raise ValueError(f"{base} holds pass-2 shard {done[2]}: merge the pass-2 shards first")
    keep = [k for p in PASSES if p < pass_no and p in done for k in PASS_TENSORS[p]]
    tensors = {k: v for k, v in load_stats(base).items() if k in keep}
    means = class_means(tensors["counts"], tensors["sums"])
    check_means(means, meta.get("means_hash", ""), pass_no)
    return _Base(tensors, _earlier_meta(meta, pass_no), meta["means_hash"], means)


def check_means(means: Tensor, expected_hash: str, pass_no: int = 2) -> str:
    """ValueError unless ``means`` are the finished pass-1 means recorded as ``expected_hash``."""
    got = means_hash(means)
    if got != expected_hash:
        raise ValueError(
            f"pass {pass_no} must use the finished pass-1 means: hash {got} != {expected_hash}"
        )
    return got


def _earlier_meta(meta: dict[str, str], pass_no: int) -> dict[str, str]:
    keys = [f"pass{p}_{k}" for p in PASSES if p < pass_no for k in PASS_META]
    return {k: meta[k] for k in keys if k in meta}


def _new_acc(pass_no: int, V: int, D: int, device: torch.device) -> dict[str, Tensor]:
    if pass_no == 1:
        return {"counts": torch.zeros(V, dtype=torch.long, device=device),
                "sums": torch.zeros(V, D, dtype=torch.float64, device=device)}
    if pass_no == 2:
        return {"sq_dev": torch.zeros(V, dtype=torch.float64, device=device)}
    return {k: torch.zeros(V, dtype=torch.long, device=device) for k in PASS_TENSORS[3]}


@dataclass
class _State:
    """A pass in progress: its accumulators, the next block to process, tokens so far."""

    acc: dict[str, Tensor]
    next_block: int = 0
    tokens: int = 0


def _load_state(work: Path, expect: dict[str, str], pass_no: int, V: int, D: int,
                device: torch.device) -> _State:
    """Resume from the working file when its settings match this run's exactly."""
    if not work.exists():
        return _State(_new_acc(pass_no, V, D, device))
    meta = load_stats_metadata(work)
    if meta.get("means_hash") != expect["means_hash"] and pass_no > 1:
        raise ValueError(
            f"pass {pass_no} must use the finished pass-1 means: hash {expect['means_hash']} != "
            f"{meta.get('means_hash')} of the working file {work}; delete it to restart the pass"
        )
    for key, want in expect.items():
        if meta.get(key) != want:
            raise ValueError(
                f"working file {work} was written with {key}={meta.get(key)!r}, this run has "
                f"{want!r}: rerun with the same settings, or delete it to restart the pass"
            )
    acc = {k: v.to(device) for k, v in load_file(str(work)).items()}
    return _State(acc, int(meta["next_block"]), int(meta["tokens"]))


def _save_state(work: Path, state: _State, expect: dict[str, str]) -> None:
    meta = {**expect, "next_block": str(state.next_block), "tokens": str(state.tokens)}
    _save(work, state.acc, meta)


@dataclass(frozen=True)
class _Context:
    """What a pass's step needs besides the batch: means, valid classes, classifier."""

    pass_no: int
    W: Tensor  # (V, D)
    means: Tensor | None = None  # (V, D) float64, pass 2
    means_valid: Tensor | None = None  # (K, D) float64, pass 3
    valid_ids: Tensor | None = None  # (K,), pass 3
    chunk: int = DEFAULT_CHUNK


def _make_context(pass_no: int, base: _Base, W: Tensor, chunk: int) -> _Context:
    if pass_no == 1:
        return _Context(1, W)
    means = base.means.to(W.device)
    if pass_no == 2:
        return _Context(2, W, means=means)
    valid_ids = torch.nonzero(base.tensors["counts"] > 0).squeeze(1).to(W.device)  # (K,)
    return _Context(3, W, means_valid=means[valid_ids], valid_ids=valid_ids, chunk=chunk)


def _step(ctx: _Context, x: Tensor, y: Tensor, acc: dict[str, Tensor]) -> None:
    if ctx.pass_no == 1:
        accumulate_sums(x, y, acc["counts"], acc["sums"])
    elif ctx.pass_no == 2:
        accumulate_sq_dev(x, y, ctx.means, acc["sq_dev"])
    else:
        ncc_agreement(x, y, ctx.W, ctx.means_valid, ctx.valid_ids, acc["val_counts"],
                      acc["val_agree"], ctx.chunk)


def _pairs(model: nn.Module, ids: Tensor) -> tuple[Tensor, Tensor]:
    """(feature, next token) pairs of a batch: x (B*(T-1), D), y (B*(T-1),)."""
    feats = final_features(model, ids)  # (B, T, D)
    return feats[:, :-1].reshape(-1, feats.shape[-1]), ids[:, 1:].reshape(-1)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _run_batches(model: nn.Module, blocks: np.ndarray, ctx: _Context, state: _State, *,
                 batch_size: int, save: Callable[[_State], None], checkpoint_every: int,
                 progress: bool, stop_after_batches: int | None) -> _State:
    """Stream the blocks from ``state.next_block`` in fixed order, checkpointing as it goes."""
    device = ctx.W.device
    n, T = blocks.shape
    bar = tqdm(total=n * (T - 1), initial=state.tokens, unit="tok", unit_scale=True,
               desc=f"pass {ctx.pass_no}", disable=not progress)
    with bar, torch.inference_mode(), _autocast(device):
        for i, start in enumerate(range(state.next_block, n, batch_size), 1):
            ids = torch.from_numpy(np.asarray(blocks[start:start + batch_size], dtype=np.int64))
            x, y = _pairs(model, ids.to(device))
            _step(ctx, x, y, state.acc)
            state.next_block, state.tokens = min(start + batch_size, n), state.tokens + y.numel()
            bar.update(y.numel())
            if i % checkpoint_every == 0 and state.next_block < n:
                save(state)
            if stop_after_batches is not None and i >= stop_after_batches:
                raise PassInterrupted(f"stopped after {i} batches (test hook)")
    return state


def _pass_done(out_path: Path, pass_no: int, shard: str, info: dict[str, str],
               base: _Base) -> bool:
    """True when out_path already holds this pass (same shard, model and means)."""
    if not out_path.exists():
        return False
    meta = load_stats_metadata(out_path)
    done = done_passes(meta)
    if pass_no not in done:
        return False
    if done[pass_no] != shard:
        raise ValueError(f"{out_path} holds pass {pass_no} of shard {done[pass_no] or 'all'}, "
                         f"not {shard or 'all'}; choose another output path")
    _check_same_model(meta, info, out_path)
    if pass_no > 1 and meta.get("means_hash") != base.means_hash:
        raise ValueError(f"pass {pass_no} must use the finished pass-1 means: hash "
                         f"{meta.get('means_hash')} in {out_path} != {base.means_hash}")
    return True


def _drop_stale_partial(out_path: Path) -> None:
    """Remove a working file whose pass the output already holds (killed before cleanup)."""
    work = partial_path(out_path)
    if work.exists() and out_path.exists():
        done = done_passes(load_stats_metadata(out_path))
        meta = load_stats_metadata(work)
        if done.get(int(meta.get("pass", 0))) == meta.get("shard"):
            work.unlink()


def _write_output(out_path: Path, pass_no: int, base: _Base, state: _State, split: BlockSplit,
                  shard: str, info: dict[str, str], W: Tensor) -> None:
    tensors = {**base.tensors, **state.acc, "lm_head": W.float()}
    h = base.means_hash
    if pass_no == 1:
        h = "" if shard else means_hash(class_means(state.acc["counts"].cpu(),
                                                    state.acc["sums"].cpu()))
    meta = {**base.meta, **info, "means_hash": h, "format_version": FORMAT_VERSION,
            f"pass{pass_no}_blocks": str(split.blocks.shape[0]),
            f"pass{pass_no}_tokens": str(state.tokens), f"pass{pass_no}_shard": shard,
            f"pass{pass_no}_split_sha": split.split_sha}
    _save(out_path, tensors, meta)


def _check_same_split(pass_no: int, split: BlockSplit, base: _Base) -> None:
    if pass_no == 2 and base.meta.get("pass1_split_sha") != split.split_sha:
        raise ValueError(
            f"pass 2 must see the train blocks of pass 1 ({base.meta.get('pass1_split_sha')}); "
            f"these ({split.split_blocks} blocks) differ: use the same blocks and max_train_blocks"
        )


def collect_pass(model: nn.Module, blocks: np.ndarray | str | Path, pass_no: int,
                 out_path: str | Path, *, base: str | Path | None = None,
                 shard: tuple[int, int] | None = None, batch_size: int = 8,
                 max_blocks: int | None = None, checkpoint_every: int = 50,
                 progress: bool = True, chunk: int = DEFAULT_CHUNK, name: str | None = None,
                 tokenizer_name: str | None = None,
                 stop_after_batches: int | None = None) -> Path:
    """Run pass 1, 2 or 3 of ``model`` over ``blocks`` (its shard), writing ``out_path``.

    ``base``: stats file with the finished earlier passes (passes 2, 3); ``out_path`` then holds
    its tensors plus this pass's. A pass already in ``out_path`` is a no-op; a working file from
    an interrupted run is resumed. ``stop_after_batches`` is a test hook simulating a kill.
    """
    if pass_no not in PASSES or batch_size < 1 or checkpoint_every < 1:
        raise ValueError(f"need pass 1, 2 or 3 and positive sizes, got pass {pass_no}, "
                         f"batch_size {batch_size}, checkpoint_every {checkpoint_every}")
    out_path, shard_txt = Path(out_path), _shard_text(shard)
    model.eval()
    info = model_info(model, name, tokenizer_name)
    base_ = _load_base(base, pass_no, info)
    if _pass_done(out_path, pass_no, shard_txt, info, base_):
        _drop_stale_partial(out_path)
        return out_path
    W = lm_head_weight(model).detach()  # (V, D)
    V, D = W.shape
    split = select_blocks(blocks, V, split="validation" if pass_no == 3 else "train",
                          max_blocks=max_blocks, shard=shard)
    _check_same_split(pass_no, split, base_)
    expect = {**{k: info[k] for k in MODEL_KEYS}, "pass": str(pass_no), "shard": shard_txt,
              "split_sha": split.split_sha, "n_blocks": str(split.blocks.shape[0]),
              "batch_size": str(batch_size), "means_hash": base_.means_hash}
    work = partial_path(out_path)
    _drop_stale_partial(out_path)
    state = _load_state(work, expect, pass_no, V, D, W.device)
    state = _run_batches(model, split.blocks, _make_context(pass_no, base_, W, chunk), state,
                         batch_size=batch_size, save=lambda s: _save_state(work, s, expect),
                         checkpoint_every=checkpoint_every, progress=progress,
                         stop_after_batches=stop_after_batches)
    _write_output(out_path, pass_no, base_, state, split, shard_txt, info, W)
    work.unlink(missing_ok=True)
    return out_path


# ---------------------------------------------------------------------------------------------
# A whole model.


def _as_passes(passes: Sequence[int] | str, shard: tuple[int, int] | None) -> tuple[int, ...]:
    out = PASSES if passes == "all" else tuple(sorted({int(p) for p in passes}))
    if not out or not set(out) <= set(PASSES):
        raise ValueError(f"passes must be a subset of {PASSES} or 'all', got {passes!r}")
    if shard is not None and len(out) > 1:
        raise ValueError("a sharded run does one pass: run pass 1 shards, merge_stats them, then "
                         "pass 2 shards with base=<merged file>, and so on")
    return out


def _has_passes(out_path: Path, passes: tuple[int, ...], shard: str) -> bool:
    if not out_path.exists():
        return False
    done = done_passes(load_stats_metadata(out_path))
    return all(done.get(p) == shard for p in passes)


def _tokenizer_size(tokenizer: object | None,
                    model_dir: Path | None) -> tuple[int | None, str | None]:
    """(number of tokens, name) of the given tokenizer, or of one saved beside the model."""
    if tokenizer is None and model_dir is not None:
        if any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            tokenizer = model_dir
    if tokenizer is None:
        return None, None
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        path = tokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        return len(tokenizer), _name_of_path(path) if Path(path).exists() else str(path)
    return len(tokenizer), getattr(tokenizer, "name_or_path", None) or None


def _open_model(model_dir_or_model: nn.Module | str | Path,
                device: str) -> tuple[nn.Module, Path | None, str]:
    if isinstance(model_dir_or_model, nn.Module):
        model = model_dir_or_model.to(device).eval()
        return model, None, model_name(model)
    path = Path(model_dir_or_model)
    model = load_causal_lm(path, device=device)
    return model, (path if path.exists() else None), (_name_of_path(path) if path.exists()
                                                       else str(path))


def collect_model_stats(model_dir_or_model: nn.Module | str | Path,
                        train_blocks: np.ndarray | str | Path | None,
                        val_blocks: np.ndarray | str | Path | None, out_path: str | Path, *,
                        batch_size: int = 8, device: str = "cpu",
                        max_train_blocks: int | None = None, max_val_blocks: int | None = None,
                        checkpoint_every: int = 50, progress: bool = True,
                        shard: tuple[int, int] | None = None,
                        passes: Sequence[int] | str = "all", base: str | Path | None = None,
                        tokenizer: object | None = None) -> Path:
    """Passes 1, 2, 3 of one model into ``out_path`` (``stats.safetensors``), resumably.

    Passes already in ``out_path`` are skipped; a finished file is a no-op (the model is not
    even loaded; ``check_stats_for_model`` verifies ownership). ``shard``/``passes``/``base``
    give the sharded workflow of the module docstring. ``tokenizer`` (object or path; default:
    one saved in the model directory) is checked against the LM head's size.
    """
    out_path, passes = Path(out_path), _as_passes(passes, shard)
    if _has_passes(out_path, passes, _shard_text(shard)):
        _drop_stale_partial(out_path)
        return out_path
    model, model_dir, name = _open_model(model_dir_or_model, device)
    n_tokens, tok_name = _tokenizer_size(tokenizer, model_dir)
    if n_tokens is not None:
        check_tokenizer_size(n_tokens, lm_head_weight(model).shape[0])
    for p in passes:
        blocks, max_blocks, split = ((val_blocks, max_val_blocks, "validation") if p == 3
                                     else (train_blocks, max_train_blocks, "train"))
        if blocks is None:
            raise ValueError(f"pass {p} needs the {split} blocks")
        src = base if (base is not None and p == passes[0]) else out_path
        collect_pass(model, blocks, p, out_path, base=src, shard=shard, batch_size=batch_size,
                     max_blocks=max_blocks, checkpoint_every=checkpoint_every,
                     progress=progress, name=name, tokenizer_name=tok_name)
    return out_path


# ---------------------------------------------------------------------------------------------
# Merging shards.


def _merged_pass(metas: list[dict[str, str]], paths: Sequence[Path]) -> int:
    highest = {max(done_passes(m), default=0) for m in metas}
    if len(highest) != 1 or 0 in highest:
        raise ValueError(f"shards {list(map(str, paths))} hold different last passes {highest}")
    return highest.pop()


def _check_parts(metas: list[dict[str, str]], pass_: int, paths: Sequence[Path]) -> None:
    """Same model, same split, same earlier passes and means; shards 0..n-1 each exactly once."""
    first = metas[0]
    for m, p in zip(metas, paths, strict=True):
        if max(done_passes(m), default=0) != pass_:
            raise ValueError(f"{p} does not end with pass {pass_}; merge one pass at a time")
        if pass_ > 1 and m.get("means_hash") != first.get("means_hash"):
            raise ValueError(f"cannot merge pass {pass_} shards computed with different pass-1 "
                             f"means: hash {m.get('means_hash')} != {first.get('means_hash')}")
        for key in (*MODEL_KEYS, f"pass{pass_}_split_sha", *_earlier_meta(first, pass_)):
            if m.get(key) != first.get(key):
                raise ValueError(f"cannot merge {p}: its {key} {m.get(key)!r} differs from "
                                 f"{first.get(key)!r} of {paths[0]}")
    shards = sorted(m[f"pass{pass_}_shard"] for m in metas)
    n = parse_shard(shards[0])[1] if shards[0] else 0
    if shards != sorted(f"{i}/{n}" for i in range(n)) or n == 0:
        raise ValueError(f"pass-{pass_} shards must be 0/n .. n-1/n, each once; got {shards}")


def merge_stats(paths: Sequence[str | Path], out_path: str | Path,
                pass_: int | None = None) -> Path:
    """Add the shards of one pass: counts and sums (1), sq_dev (2), validation counts (3).

    All parts must come from the same model and split and (passes 2, 3) the same pass-1 means;
    their earlier passes are carried over unchanged.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("merge_stats needs at least one shard file")
    metas = [load_stats_metadata(p) for p in paths]
    pass_ = pass_ or _merged_pass(metas, paths)
    _check_parts(metas, pass_, paths)
    parts = [load_stats(p) for p in paths]
    merged = dict(parts[0])
    for part, p in zip(parts[1:], paths[1:], strict=True):
        for key, t in part.items():
            if key in PASS_TENSORS[pass_]:
                merged[key] = merged[key] + t
            elif not torch.equal(merged[key], t):
                raise ValueError(f"cannot merge {p}: its {key} differs from {paths[0]}'s")
    meta = {**metas[0], f"pass{pass_}_shard": ""}
    for key in ("blocks", "tokens"):
        meta[f"pass{pass_}_{key}"] = str(sum(int(m[f"pass{pass_}_{key}"]) for m in metas))
    if pass_ == 1:
        meta["means_hash"] = means_hash(class_means(merged["counts"], merged["sums"]))
    _save(Path(out_path), merged, meta)
    return Path(out_path)


# ---------------------------------------------------------------------------------------------
# Shell interface.


def _cli_collect(args: argparse.Namespace) -> None:
    def opt(p: Path | None) -> Path | None:
        return None if p is None else resolve(p)

    out = collect_model_stats(
        resolve(args.model_dir), opt(args.train_blocks), opt(args.val_blocks), resolve(args.out),
        batch_size=args.batch_size, device=args.device, max_train_blocks=args.max_train_blocks,
        max_val_blocks=args.max_val_blocks, checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress, shard=args.shard, passes=args.passes,
        base=opt(args.base),
    )
    print(out)


def _cli_merge(args: argparse.Namespace) -> None:
    print(merge_stats([resolve(p) for p in args.parts], resolve(args.out), args.pass_))


def _passes_arg(text: str) -> str | tuple[int, ...]:
    if text == "all":
        return "all"
    if text not in ("1", "2", "3"):
        raise argparse.ArgumentTypeError(f"--pass must be 1, 2, 3 or all, got {text!r}")
    return (int(text),)


def _shard_arg(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register_cli(subparsers) -> None:
    """Add ``collect`` and ``merge-stats`` to the ``python -m lib`` subcommands."""
    p = subparsers.add_parser("collect", help="statistics passes 1-3 of one model checkpoint")
    p.add_argument("model_dir", type=Path, help="checkpoint directory (save_pretrained)")
    p.add_argument("--train-blocks", type=Path, help="train_blocks.npy (passes 1, 2)")
    p.add_argument("--val-blocks", type=Path, help="val_blocks.npy (pass 3)")
    p.add_argument("--out", type=Path, required=True, help="stats.safetensors to write")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-train-blocks", type=int)
    p.add_argument("--max-val-blocks", type=int)
    p.add_argument("--checkpoint-every", type=int, default=50, help="batches between saves")
    p.add_argument("--shard", type=_shard_arg, help="i/n: process shard i of n (one pass)")
    p.add_argument("--pass", dest="passes", type=_passes_arg, default="all",
                   help="1, 2, 3 or all (default)")
    p.add_argument("--base", type=Path, help="merged stats of the earlier passes (sharded runs)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cli_collect)
    m = subparsers.add_parser("merge-stats", help="add the shard files of one pass")
    m.add_argument("out", type=Path)
    m.add_argument("parts", type=Path, nargs="+")
    m.add_argument("--pass", dest="pass_", type=int, choices=PASSES,
                   help="the pass to merge (default: the parts' last pass)")
    m.set_defaults(func=_cli_merge)
