"""The statistics driver: streams blocks through a model, resumably and shardably.

The math is in ``linguistic_collapse.nc.accumulate`` and the file format in ``linguistic_collapse.nc.stats_file``. Two passes:

1. Train: counts, float64 sums, within-class squared deviations ``sq_dev`` and the pooled
   within-class scatter ``sw`` (D, D) of the head input in one pass; with ``layers`` (``linguistic_collapse.pipeline.layers``) also those of each requested residual stream, from the
   same forward pass.
2. Validation: LM-head / nearest-class-centre agreement with the finished pass-1 means.

During a pass ``<out>.partial.safetensors`` holds its accumulators and the next block, saved
atomically every ``checkpoint_every`` batches; blocks go in a fixed order, so a killed and
restarted run gives the numbers of an uninterrupted one (bit for bit on CPU). Pass 2 records the
hash of the pass-1 means it used (``means_hash``) and refuses state or shards made with others.
A finished output is reused only when made from the same model, blocks and tokenizer.

Sharded workflow (each step may run as n independent jobs, e.g. SLURM array tasks)::

    for i in range(n):  # pass-1 shards: counts, sums, sq_dev and sw of their blocks
        collect_model_stats(m, train, None, p1[i], passes=(1,), shard=(i, n))
    merge_stats(p1, stage1)              # exact: Chan's formula for sq_dev and sw
    for i in range(n):  # pass-2 shards, all with the merged pass-1 means
        collect_model_stats(m, None, val, p2[i], passes=(2,), shard=(i, n), base=stage1)
    merge_stats(p2, stats)               # the finished stats.safetensors

Shell: ``python -m linguistic_collapse collect MODEL --train-blocks t.npy --out p1_0.safetensors --pass 1
--shard 0/4``, ``python -m linguistic_collapse merge-stats stage1.safetensors p1_*.safetensors``, then ``--base``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import resolve_if_checkout
from linguistic_collapse.core.provenance import weights_sha256
from linguistic_collapse.lm import identity as ident
from linguistic_collapse.lm.devices import compute_dtype, inference_autocast
from linguistic_collapse.lm.head import lm_head_weight
from linguistic_collapse.lm.loading import load_causal_lm
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.nc.accumulate import DEFAULT_CHUNK
from linguistic_collapse.nc.classstats import ClassStats
from linguistic_collapse.pipeline import freshness as fresh
from linguistic_collapse.pipeline import layers as lay
from linguistic_collapse.pipeline.blocks import BlockSplit, IndexedBlocks, select_blocks, shard_text

BLOCKS_KEY = {1: "train_blocks_sha256", 2: "val_blocks_sha256"}  # metadata key per pass


class PassInterrupted(RuntimeError):
    """Raised by the ``stop_after_batches`` test hook: simulates a run killed mid-pass."""


# ---------------------------------------------------------------------------------------------
# One pass.


@dataclass
class _Base:
    """The train pass a validation pass builds on: tensors, metadata and the means."""

    tensors: dict[str, Tensor]
    meta: dict[str, str]
    means_hash: str = ""
    means: Tensor | None = None  # (V, D) float64


def _load_base(base: str | Path | None, pass_no: int, info: dict[str, str],
               prov: dict[str, str]) -> _Base:
    if pass_no == 1:
        return _Base({}, {})
    if base is None:
        raise UserError("pass 2 needs the stats file of pass 1 (base): run pass 1 first")
    return _Base(*fresh.read_train_pass(base, info, prov))


def _new_stats(pass_no: int, base: _Base, V: int, D: int, device: torch.device,
               layers: tuple[tuple[int, ...], int] = ((), 0),
               acc: dict[str, Tensor] | None = None) -> ClassStats:
    """The ClassStats a pass accumulates into: empty (pass 1; ``layers``: residual-stream
    indices and their width) or the base's pass 1 (pass 2), plus resumed accumulators ``acc``."""
    if pass_no == 1 and not acc:
        return ClassStats(V, D, device, {i: layers[1] for i in layers[0]})
    return ClassStats.from_tensors({**base.tensors, **(acc or {})}, device)


@dataclass
class _State:
    """A pass in progress: its statistics, the next block to process, tokens so far."""

    stats: ClassStats
    next_block: int = 0
    tokens: int = 0


def _load_state(work: Path, expect: dict[str, str], pass_no: int, base: _Base, V: int, D: int,
                device: torch.device, layers: tuple[tuple[int, ...], int] = ((), 0)) -> _State:
    """Resume from the working file when its settings match this run's exactly."""
    if not work.exists():
        return _State(_new_stats(pass_no, base, V, D, device, layers))
    meta = sf.load_stats_metadata(work)
    for key, want in expect.items():
        if meta.get(key) != want:
            what = "pass 2 must use the finished pass-1 means: hash" if key == "means_hash" else ""
            raise UserError(
                f"working file {work} was written with {what or key}={meta.get(key)!r}, this run "
                f"has {want!r}: rerun with the same settings, or delete it to restart the pass"
            )
    acc = {k: v.to(device) for k, v in sf.load_stats(work).items()}
    return _State(_new_stats(pass_no, base, V, D, device, layers, acc), int(meta["next_block"]),
                  int(meta["tokens"]))


# (features [top x (N, D), then each layer's], y (N,), the pass's statistics)
Step = Callable[[list[Tensor], Tensor, ClassStats], None]


def _make_step(pass_no: int, W: Tensor, chunk: int) -> Step:
    """The accumulation of one batch: train moments of the top and of the layers with shared
    counts (pass 1), or NCC agreement of the top with the frozen train means (pass 2)."""
    if pass_no == 1:
        return lambda xs, y, stats: stats.add(xs[0], y, xs[1:])
    return lambda xs, y, stats: stats.add_validation(xs[0], y, W, chunk)


def _pass_tensors(stats: ClassStats, pass_no: int) -> dict[str, Tensor]:
    """The accumulators a pass's working file holds (pass 2: not the base's pass 1)."""
    keys = sf.pass1_keys({"layers": ",".join(map(str, stats.layers))}) if pass_no == 1 \
        else sf.PASS_TENSORS[2]
    return {k: stats.tensors[k] for k in keys}


def _pairs(model: nn.Module, ids: Tensor, layers: tuple[int, ...] = ()
           ) -> tuple[list[Tensor], Tensor]:
    """(feature, next token) pairs of a batch: [x (B*(T-1), D) of the top, then of each layer
    in ``layers``, all from one forward], y (B*(T-1),)."""
    feats = lay.batch_features(model, ids, layers)  # each (B, T, D)
    return [f[:, :-1].reshape(-1, f.shape[-1]) for f in feats], ids[:, 1:].reshape(-1)


def _run_batches(model: nn.Module, blocks: np.ndarray | IndexedBlocks, step: Step, state: _State, *,
                 device: torch.device, desc: str, batch_size: int,
                 save: Callable[[_State], None], checkpoint_every: int, progress: bool,
                 stop_after_batches: int | None, layers: tuple[int, ...] = ()) -> _State:
    """Stream the blocks from ``state.next_block`` in fixed order, checkpointing as it goes."""
    n, T = blocks.shape
    bar = tqdm(total=n * (T - 1), initial=state.tokens, unit="tok", unit_scale=True, desc=desc,
               disable=not progress)
    with bar, torch.inference_mode(), inference_autocast(device):
        for i, start in enumerate(range(state.next_block, n, batch_size), 1):
            ids = torch.from_numpy(np.asarray(blocks[start:start + batch_size], dtype=np.int64))
            xs, y = _pairs(model, ids.to(device), layers)
            step(xs, y, state.stats)
            state.next_block, state.tokens = min(start + batch_size, n), state.tokens + y.numel()
            bar.update(y.numel())
            if i % checkpoint_every == 0 and state.next_block < n:
                save(state)
            if stop_after_batches is not None and i >= stop_after_batches:
                raise PassInterrupted(f"stopped after {i} batches (test hook)")
    return state


def _pass_done(out_path: Path, pass_no: int, shard: str, split: BlockSplit,
               info: dict[str, str], prov: dict[str, str], base: _Base,
               layer_meta: dict[str, str]) -> bool:
    """True when out_path already holds this pass of this model, inputs and means; UserError
    when it holds the pass from anything else."""
    if not out_path.exists():
        return False
    meta = sf.load_stats_metadata(out_path)
    done = sf.done_passes(meta)
    if pass_no not in done or meta.get("format_version") != sf.FORMAT_VERSION:
        return False
    if done[pass_no] != shard:
        raise UserError(f"{out_path} holds pass {pass_no} of shard {done[pass_no] or 'all'}, "
                        f"not {shard or 'all'}; choose another output path")
    fresh.check_same_model(meta, info, out_path)
    fresh.check_provenance(meta, prov, out_path)
    if pass_no == 1:
        lay.check_same_layers(meta, layer_meta, out_path)
    if meta.get(f"pass{pass_no}_split_sha") != split.split_sha:
        raise UserError(f"{out_path} holds pass {pass_no} over {meta.get(f'pass{pass_no}_blocks')}"
                        f" blocks of another selection (max blocks) than this run's "
                        f"{split.blocks.shape[0]}: use another output path or delete the file")
    if pass_no > 1 and meta.get("means_hash") != base.means_hash:
        raise UserError(f"pass {pass_no} must use the finished pass-1 means: hash "
                        f"{meta.get('means_hash')} in {out_path} != {base.means_hash}; use "
                        "another output path or delete the file")
    return True


def _drop_stale_partial(out_path: Path) -> None:
    """Remove a working file whose pass the output already holds (killed before cleanup)."""
    work = sf.partial_path(out_path)
    if work.exists() and out_path.exists():
        meta = sf.load_stats_metadata(work)
        if sf.done_passes(sf.load_stats_metadata(out_path)).get(int(meta.get("pass", 0))) == \
                meta.get("shard"):
            work.unlink()


def collect_pass(model: nn.Module, blocks: np.ndarray | str | Path | BlockSplit, pass_no: int,
                 out_path: str | Path, *, base: str | Path | None = None,
                 shard: tuple[int, int] | None = None, batch_size: int = 8,
                 max_blocks: int | None = None, checkpoint_every: int = 50,
                 progress: bool = True, chunk: int = DEFAULT_CHUNK, name: str | None = None,
                 tokenizer_name: str | None = None, provenance: dict[str, str] | None = None,
                 stop_after_batches: int | None = None, layers: lay.LayerSpec = None) -> Path:
    """Run pass 1 (train) or 2 (validation) of ``model`` over ``blocks``, writing ``out_path``.

    ``base``: stats file with the finished pass 1 (pass 2); ``out_path`` then holds its tensors
    plus this pass's. A pass already in ``out_path`` is a no-op when it was made from the same
    model and inputs; a working file from an interrupted run is resumed. ``provenance``: extra
    hashes to record (without ``weights_sha256``, the hash of saved weight files, the in-memory
    ``state_dict_sha256`` is recorded; the blocks' hash is computed). ``stop_after_batches`` is a test hook simulating a kill. ``layers`` (pass 1):
    None, "all" or residual-stream indices whose statistics to gather too (``linguistic_collapse.pipeline.layers``).
    """
    if pass_no not in sf.PASSES or batch_size < 1 or checkpoint_every < 1:
        raise UserError(f"need pass 1 or 2 and positive sizes, got pass {pass_no}, "
                        f"batch_size {batch_size}, checkpoint_every {checkpoint_every}")
    out_path, shard_txt = Path(out_path), shard_text(shard)
    model.eval()
    W = lm_head_weight(model).detach()  # (V, D)
    V, D = W.shape
    split = select_blocks(blocks, V, split=sf.SPLITS[pass_no], max_blocks=max_blocks, shard=shard)
    info = ident.model_info(model, name, tokenizer_name)
    prov = {k: v for k, v in {**(provenance or {}), BLOCKS_KEY[pass_no]: split.sha256}.items()
            if v}
    if not {"weights_sha256", "state_dict_sha256"} & prov.keys():  # (setdefault: hash every time)
        prov["state_dict_sha256"] = ident.state_dict_sha256(model)
    base_ = _load_base(base, pass_no, info, prov)
    lays, n_layer, width = lay.model_layers(model, layers if pass_no == 1 else None)
    layer_meta = lay.layer_metadata(lays, n_layer)
    if _pass_done(out_path, pass_no, shard_txt, split, info, prov, base_, layer_meta):
        _drop_stale_partial(out_path)
        return out_path
    expect = {**{k: info[k] for k in sf.MODEL_KEYS}, "pass": str(pass_no), "shard": shard_txt,
              "split_sha": split.split_sha, "n_blocks": str(split.blocks.shape[0]),
              "batch_size": str(batch_size), "means_hash": base_.means_hash,
              "format_version": sf.FORMAT_VERSION, **layer_meta}
    work = sf.partial_path(out_path)
    _drop_stale_partial(out_path)
    state = _load_state(work, expect, pass_no, base_, V, D, W.device, (lays, width))

    def save(s: _State) -> None:
        sf.save_raw(work, _pass_tensors(s.stats, pass_no),
                    {**expect, "next_block": str(s.next_block), "tokens": str(s.tokens)})

    state = _run_batches(model, split.blocks, _make_step(pass_no, W, chunk), state,
                         device=W.device, desc=f"pass {pass_no}", batch_size=batch_size,
                         save=save, checkpoint_every=checkpoint_every, progress=progress,
                         stop_after_batches=stop_after_batches, layers=lays)
    meta = {**base_.meta, **info, **prov, **layer_meta,
            f"pass{pass_no}_blocks": str(split.blocks.shape[0]),
            f"pass{pass_no}_tokens": str(state.tokens), f"pass{pass_no}_shard": shard_txt,
            f"pass{pass_no}_split_sha": split.split_sha,
            f"pass{pass_no}_compute_dtype": compute_dtype(model, W.device),
            **({f"pass{pass_no}_indices_sha256": split.indices_sha256} if split.indices_sha256
               else {})}
    state.stats.save(out_path, info["model"], W, meta)
    work.unlink(missing_ok=True)
    return out_path


# ---------------------------------------------------------------------------------------------
# A whole model.


def _as_passes(passes: Sequence[int] | str, shard: tuple[int, int] | None) -> tuple[int, ...]:
    out = sf.PASSES if passes == "all" else tuple(sorted({int(p) for p in passes}))
    if not out or not set(out) <= set(sf.PASSES):
        raise UserError(f"passes must be a subset of {sf.PASSES} or 'all', got {passes!r}")
    if shard is not None and len(out) > 1:
        raise UserError("a sharded run does one pass: run pass 1 shards, merge_stats them, then "
                        "pass 2 shards with base=<merged file>")
    return out


def _open_model(model_dir_or_model: nn.Module | str | Path, device: str,
                weights_hash: dict[str, str] | None = None
                ) -> tuple[nn.Module, Path | None, str, dict[str, str]]:
    """(model, its folder or None, its name, {hash key: value}): ``weights_hash`` when the caller
    has hashed the checkpoint already, else ``weights_sha256`` of the saved files of a model
    folder, else ``state_dict_sha256`` of the loaded model."""
    if isinstance(model_dir_or_model, nn.Module):
        model = model_dir_or_model.to(device).eval()
        return model, None, ident.model_name(model), (
            weights_hash or {"state_dict_sha256": ident.state_dict_sha256(model)})
    path = Path(model_dir_or_model)
    if path.exists() and not (path / "config.json").is_file():
        raise UserError(f"{path} is not a model checkpoint (no config.json); train it first")
    model = load_causal_lm(path, device=device)
    on_disk = path.is_dir() and any(path.glob("model*.safetensors"))  # else a hub cache
    sha = weights_hash or ({"weights_sha256": weights_sha256(path)} if on_disk
                           else {"state_dict_sha256": ident.state_dict_sha256(model)})
    return model, (path if path.exists() else None), (ident.name_of_path(path) if path.exists()
                                                       else str(path)), sha


def relative_to_stats(name: str | None, out_path: Path) -> str | None:
    """A local model or tokenizer as its path relative to the stats file's folder, so identical
    statistics written elsewhere in the same layout have identical bytes (a hub name as is;
    identity is by content: weights_sha256 or state_dict_sha256, lm_head_sha256,
    tokenizer_sha256)."""
    if not name:
        return name
    path = resolve_if_checkout(name)
    if not path.exists():
        return name
    return os.path.relpath(path.resolve(), out_path.resolve().parent)


def collect_model_stats(model_dir_or_model: nn.Module | str | Path,
                        train_blocks: np.ndarray | str | Path | None,
                        val_blocks: np.ndarray | str | Path | None, out_path: str | Path, *,
                        batch_size: int = 8, device: str = "cpu",
                        max_train_blocks: int | None = None, max_val_blocks: int | None = None,
                        checkpoint_every: int = 50, progress: bool = True,
                        shard: tuple[int, int] | None = None,
                        passes: Sequence[int] | str = "all", base: str | Path | None = None,
                        tokenizer: object | None = None,
                        blocks_tokenizer_sha256: str | None = None,
                        layers: lay.LayerSpec = None,
                        train_indices: Sequence[int] | None = None,
                        weights_hash: dict[str, str] | None = None) -> Path:
    """Passes 1 and 2 of one model into ``out_path`` (``stats.safetensors``), resumably.

    Every input is checked before any pass starts: the blocks of every requested pass, the
    tokenizer's size against the LM head, and its identity against ``blocks_tokenizer_sha256``
    (default: the ``tokenizer_sha256`` of a corpus manifest.json beside block files). Passes
    already in ``out_path`` are reused only when made from the same model, blocks and tokenizer
    (else UserError). ``shard``/``passes``/``base``: the sharded workflow of the module
    docstring. ``tokenizer``: object or path; default one saved in the model directory.
    ``layers``: also the statistics of these residual streams in pass 1 (``linguistic_collapse.pipeline.layers``).
    ``train_indices``: pass 1 reads only these rows of the (capped) training blocks, in order
    (a subsample; ``linguistic_collapse.pipeline.blocks.subsample_blocks``), recorded as ``pass1_indices_sha256``.
    ``weights_hash``: the model's hash the caller computed already (``{"weights_sha256": ...}``
    of its files or ``{"state_dict_sha256": ...}``), recorded without hashing the weights again.
    """
    out_path, passes = Path(out_path), _as_passes(passes, shard)
    model, model_dir, name, weights_hash = _open_model(model_dir_or_model, device, weights_hash)
    V = lm_head_weight(model).shape[0]
    tok_name, tok_sha = ident.tokenizer_provenance(tokenizer, model_dir, V, blocks_tokenizer_sha256
                                                or ident.manifest_tokenizer_sha256(train_blocks,
                                                                                val_blocks))
    splits = {}
    for p in passes:  # all inputs validated before the first pass runs
        blocks, max_blocks = ((train_blocks, max_train_blocks) if p == 1
                              else (val_blocks, max_val_blocks))
        if blocks is None:
            raise UserError(f"pass {p} needs the {sf.SPLITS[p]} blocks; pass them "
                            f"(--{BLOCKS_KEY[p].split('_')[0]}-blocks)")
        splits[p] = select_blocks(blocks, V, split=sf.SPLITS[p], max_blocks=max_blocks, shard=shard,
                                  indices=train_indices if p == 1 else None)
    prov = {**weights_hash, "tokenizer_sha256": tok_sha or ""}
    name, tok_name = relative_to_stats(name, out_path), relative_to_stats(tok_name, out_path)
    # Both passes: pass 1 goes to a sibling first, so out_path never holds pass 1 alone.
    staged = (sf.pass1_path(out_path) if passes == sf.PASSES and base is None
              and not out_path.exists() else out_path)
    for p in passes:
        src = base if (base is not None and p == passes[0]) else staged
        collect_pass(model, splits[p], p, staged if p == 1 else out_path, base=src, shard=shard,
                     batch_size=batch_size, checkpoint_every=checkpoint_every, progress=progress,
                     name=name, tokenizer_name=tok_name, provenance=prov, layers=layers)
    if passes == sf.PASSES:
        for leftover in (sf.pass1_path(out_path), sf.partial_path(sf.pass1_path(out_path))):
            leftover.unlink(missing_ok=True)
    return out_path


