"""The one training loop (``train_loop``) and its parts: optimiser, schedule, one stretch of an
epoch, evaluation, the fresh model of a run.

The grid (``linguistic_collapse.pipeline.train``) saves a checkpoint at each epoch end; ``linguistic_collapse.pipeline.dynamics``
saves more snapshots through the same loop, so both resume, record and hash alike. What matches
the Hugging Face Trainer is listed in ``linguistic_collapse.pipeline.train``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.outputs import checkpoint_in
from linguistic_collapse.core.profile_sections import ModelConfig, TrainingConfig
from linguistic_collapse.lm.data import PreparedCorpus, block_order
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.lm.loading import load_causal_lm
from linguistic_collapse.pipeline.checkpoints import (
    last_checkpoint,
    read_training_state,
    restore_state,
    save_checkpoint,
)

# Trainer's rule: no weight decay for biases and normalisation weights.
NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


# ---------------------------------------------------------------------------------------------
# Device, optimiser, schedule


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on CUDA, fp32 on CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups as the Trainer builds them: decayed weights, and the rest."""
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(model, [nn.LayerNorm], NO_DECAY_PATTERNS))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, training: TrainingConfig, weight_decay: float,
                   device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=training.lr, betas=tuple(training.adam_betas),
        eps=training.adam_eps, fused=device.type == "cuda",
    )


def make_scheduler(optimizer: torch.optim.Optimizer, training: TrainingConfig, total_steps: int):
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if training.lr_schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, training.warmup_steps, total_steps)
    return get_constant_schedule_with_warmup(optimizer, training.warmup_steps)


# ---------------------------------------------------------------------------------------------
# One epoch, evaluation


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _batch(blocks: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(blocks[idx], dtype=np.int64)).to(device)  # (B, T)


class LossSum:
    """A token-weighted training loss over optimiser steps: the float64 sum of loss x predicted
    tokens (on the device), the predicted tokens and the tokens seen."""

    def __init__(self, device: torch.device) -> None:
        self.total = torch.zeros((), device=device, dtype=torch.float64)
        self.n_pred = self.n_seen = 0

    def add(self, loss: torch.Tensor, k: int, seen: int) -> None:
        self.total += loss.detach().double() * k
        self.n_pred, self.n_seen = self.n_pred + k, self.n_seen + seen

    def mean(self) -> float:
        return (self.total / self.n_pred).item()


def train_epoch(model: nn.Module, optimizer, scheduler, blocks: np.ndarray, order: np.ndarray,
                batch_size: int, max_grad_norm: float, device: torch.device, precision: str,
                bar: tqdm | None = None, also: tuple[LossSum, ...] = ()) -> tuple[float, int]:
    """One pass over ``blocks`` in ``order``; returns (token-weighted mean loss, tokens seen).
    Each step's loss is also added to every ``also`` sum (a loss over several passes)."""
    model.train()
    own = LossSum(device)
    t0 = time.perf_counter()
    for step, start in enumerate(range(0, len(order), batch_size)):
        ids = _batch(blocks, order[start:start + batch_size], device)  # (B, T)
        with _autocast(device, precision):
            loss = model(input_ids=ids, labels=ids).loss  # mean over B*(T-1) next tokens
        loss.backward()
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        k = ids.shape[0] * (ids.shape[1] - 1)
        for acc in (own, *also):
            acc.add(loss, k, ids.numel())
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                rate = own.n_seen / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:,.0f}")
    return own.mean(), own.n_seen


@torch.no_grad()
def evaluate(model: nn.Module, blocks: np.ndarray, batch_size: int, device: torch.device,
             precision: str) -> dict:
    """Validation loss (nats/token, token-weighted), top-1 next-token accuracy, perplexity."""
    model.eval()
    nll, correct, n = 0.0, 0, 0
    for start in range(0, len(blocks), batch_size):
        ids = _batch(blocks, np.arange(start, min(start + batch_size, len(blocks))), device)
        with _autocast(device, precision):
            logits = model(input_ids=ids).logits[:, :-1].float()  # (B, T-1, V)
        target = ids[:, 1:]  # (B, T-1)
        nll += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
        n += target.numel()
    loss = nll / n
    return {"val_loss": loss, "val_acc": correct / n, "val_ppl": math.exp(loss)}



# ---------------------------------------------------------------------------------------------
# The loop


def build_run_model(run: ModelName, corpus: PreparedCorpus, model_cfg: ModelConfig,
                    tokenizer: Any = None) -> nn.Module:
    """A fresh model of one run: its initial weights depend on model_cfg.init_seed only."""
    config = gpt_neo_config(
        run.depth, run.width, corpus.vocab_size, corpus.context_len, n_head=model_cfg.n_head,
        window_size=model_cfg.window_size, attn_implementation=model_cfg.attn_implementation,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
    )
    return build_model(config, seed=model_cfg.init_seed)

@dataclass(frozen=True)
class SavePoints:
    """Where the one training loop saves: ``checkpoint-<label>`` after optimiser step ``step``
    for each (step, label) of ``points`` (every epoch end among them, steps increasing), its
    record made by ``record(step, epoch_fraction, tokens_seen, train_loss, n_tokens, t0, train_s,
    evaluation)``; ``saved(records, label, model)`` runs after each save; ``initial``: also save
    (label 0) the untrained model."""

    points: tuple[tuple[int, int], ...]
    record: Callable[..., dict]
    saved: Callable[[list[dict], int, nn.Module], None]
    initial: bool = False
    snapshots: Snapshots | None = None


@dataclass(frozen=True)
class Snapshots:
    """Snapshots taken while the loop trains, beside its own save points and not resume points
    (``linguistic_collapse.pipeline.snapshots``: the dynamics of a grid run): after each optimiser
    step of ``steps`` (0: the untrained model), ``take(step, record, model)`` with ``record`` =
    step, epoch, tokens_seen, train_loss (of the steps since the previous snapshot) and the
    evaluation. Taken only in a run trained from its start, so none is missed. Training cut at
    more steps and evaluated there takes the same optimiser steps on the same batches (no
    dropout, no random draw), so the weights and records of the save points do not change."""

    steps: tuple[int, ...]
    take: Callable[[int, dict, nn.Module], None]


def train_loop(run: ModelName, directory: Path, corpus: PreparedCorpus, training: TrainingConfig,
               model_cfg: ModelConfig, settings: dict, batch_size: int, device: torch.device,
               at: SavePoints, progress: bool, fix: str,
               desc: str) -> tuple[nn.Module, list[dict], str]:
    """Train ``run`` in ``directory`` from scratch or from its last complete checkpoint, saving
    at each of ``at``'s points; returns (model, records, precision). The grid saves at epoch
    ends, ``linguistic_collapse.pipeline.dynamics`` at more steps: each stretch between two points trains on its
    slice of the epoch's ``block_order``, so the weights at an epoch end are the same either way."""
    precision = resolve_precision(training.precision, device)
    tokenizer = corpus.tokenizer()
    train_blocks, val_blocks = corpus.train_blocks(), corpus.val_blocks()  # (n, T) int32
    S, B = math.ceil(corpus.n_train_blocks / batch_size), batch_size
    start = last_checkpoint(directory)
    model = (build_run_model(run, corpus, model_cfg, tokenizer) if start == 0
             else load_causal_lm(checkpoint_in(directory, start)).train())
    model.to(device)
    optimizer = make_optimizer(model, training, run.weight_decay, device)
    scheduler = make_scheduler(optimizer, training, run.epochs * S)
    records: list[dict] = []
    if start:
        tensors, plain = read_training_state(checkpoint_in(directory, start), fix)
        restore_state(tensors, plain, optimizer, scheduler)
        records = plain["records"]
    step = next((s for s, label in at.points if label == start), 0) if start else 0

    def save(target: int, label: int, tokens: int, loss: float, n_tok: int, t0: float,
             train_s: float, evaluation: dict) -> None:
        nonlocal records
        record = at.record(target, target / S, tokens, loss, n_tok, t0, train_s, evaluation)
        records = save_checkpoint(directory, label, model, tokenizer, optimizer, scheduler,
                                  [*records, record], settings)
        at.saved(records, label, model)

    snaps = at.snapshots if at.snapshots is not None and start == 0 else None
    snap_steps = set(snaps.steps) if snaps else set()
    saves = dict(at.points)  # step -> label
    first_eval = (evaluate(model, val_blocks, training.eval_batch_size, device, precision)
                  if (at.initial and not records) or 0 in snap_steps else None)
    if at.initial and not records:
        save(0, 0, 0, math.nan, 0, time.perf_counter(), 0.0, first_eval)
    if 0 in snap_steps:
        snaps.take(0, {"step": 0, "epoch": 0.0, "tokens_seen": 0, "train_loss": math.nan,
                       **first_eval}, model)
    todo = sorted(t for t in set(saves) | snap_steps if t > step)
    bar = tqdm(total=todo[-1] - step if todo else 0, desc=desc, disable=not progress,
               unit="step", leave=False)
    tokens_seen = records[-1]["tokens_seen"] if records else 0
    since_save, t0, train_s = LossSum(device), time.perf_counter(), 0.0  # since the last save point
    for target in todo:
        epoch = step // S + 1  # a stretch lies in one epoch: every epoch end is a save point
        order = block_order(corpus.n_train_blocks, run.seed, epoch)
        piece = order[(step - (epoch - 1) * S) * B:(target - (epoch - 1) * S) * B]
        started = time.perf_counter()
        stretch_loss, n_tok = train_epoch(model, optimizer, scheduler, train_blocks, piece, B,
                                          training.max_grad_norm, device, precision, bar,
                                          also=(since_save,))
        train_s += time.perf_counter() - started
        tokens_seen += n_tok
        evaluation = evaluate(model, val_blocks, training.eval_batch_size, device, precision)
        if target in snap_steps:
            snaps.take(target, {"step": target, "epoch": target / S, "tokens_seen": tokens_seen,
                                "train_loss": stretch_loss, **evaluation}, model)
        if target in saves:
            save(target, saves[target], tokens_seen, since_save.mean(), since_save.n_seen, t0,
                 train_s, evaluation)
            since_save, t0, train_s = LossSum(device), time.perf_counter(), 0.0
        step = target
    bar.close()
    return model, records, precision

