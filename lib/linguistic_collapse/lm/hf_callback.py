"""``NeuralCollapseCallback``: the neural-collapse measures of a model while a Hugging Face
``Trainer`` trains it, every N steps and/or at each epoch end, on fixed token blocks.

When due, the callback streams up to ``max_blocks`` blocks through the model (features: the LM
head's input, labels: the next tokens) into a ``linguistic_collapse.nc.ClassStats``, optionally runs pass 2 on
validation blocks for NC4, and appends the measures (keys ``nc/<measure>``) with ``step`` and
``epoch`` to ``state.log_history`` and, if given, to a CSV. When not due it does nothing but
compare the step counter.

Everything that can be checked before training is checked when it begins (``on_train_begin``):
the blocks against the model (vocabulary, positions), the CSV path (writable, new or a CSV this
callback wrote) and the model's dtype (floating: fp32, bf16, fp16; features are accumulated in
float64 and the classifier is cast once). Under torch.distributed (DDP) each rank streams its
share of the blocks, the ranks' statistics are combined (``ClassStats.all_reduce_``) before
measuring, and rank 0 alone writes the CSV.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from transformers import TrainerCallback

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import check_out, is_csv_with
from linguistic_collapse.lm.devices import inference_autocast
from linguistic_collapse.lm.features import check_token_blocks
from linguistic_collapse.lm.head import final_features, lm_head_weight
from linguistic_collapse.nc import ClassStats

PREFIX = "nc/"  # key prefix of the measures in the log history and the CSV


def _as_blocks(blocks: np.ndarray | torch.Tensor, max_blocks: int, what: str) -> torch.Tensor:
    """(n, T) int64 token blocks, the first ``max_blocks``; UserError when not usable."""
    ids = torch.as_tensor(np.asarray(blocks))
    if ids.ndim != 2 or ids.shape[1] < 2 or ids.shape[0] == 0 or ids.dtype.is_floating_point:
        raise UserError(f"{what} must be integer token blocks (n_blocks, T >= 2), got shape "
                        f"{tuple(ids.shape)} of {ids.dtype}")
    return ids[:max_blocks].long()


class NeuralCollapseCallback(TrainerCallback):
    """Measure the model being trained on ``blocks`` (and NC4 on ``val_blocks``).

    ``every_n_steps``: measure when ``global_step`` is a multiple of it; ``each_epoch``: at each
    epoch end (one row per step at most). ``max_blocks`` caps the blocks of each split;
    ``which``: measure names (default: every one the passes allow); ``csv_path``: also append
    each row there. ``rows`` holds every row measured.
    """

    def __init__(self, blocks: np.ndarray | torch.Tensor,
                 val_blocks: np.ndarray | torch.Tensor | None = None, *,
                 every_n_steps: int | None = None, each_epoch: bool = False,
                 max_blocks: int = 64, batch_size: int = 8, which: Sequence[str] | None = None,
                 csv_path: str | Path | None = None):
        if not every_n_steps and not each_epoch:
            raise UserError("NeuralCollapseCallback needs every_n_steps or each_epoch=True")
        if max_blocks < 1 or batch_size < 1 or (every_n_steps is not None and every_n_steps < 1):
            raise UserError("every_n_steps, max_blocks and batch_size must be positive")
        self.blocks = _as_blocks(blocks, max_blocks, "blocks")
        self.val_blocks = None if val_blocks is None else _as_blocks(val_blocks, max_blocks,
                                                                     "val_blocks")
        self.every_n_steps, self.each_epoch = every_n_steps, each_epoch
        self.batch_size, self.which = batch_size, which
        self.csv_path = None if csv_path is None else Path(csv_path)
        self.rows: list[dict[str, float]] = []
        self.undefined: dict[int, dict[str, str]] = {}  # step -> {measure: why it is NaN}
        self._last_step: int | None = None

    def check(self, model: nn.Module) -> None:
        """UserError in one line when the blocks do not fit ``model`` (vocabulary, positions),
        its dtype is not floating, or the CSV path cannot be written (a folder, another file,
        an unwritable folder)."""
        W = lm_head_weight(model)
        if not W.is_floating_point():
            raise UserError(f"NeuralCollapseCallback needs a floating-point model (fp32, bf16, "
                            f"fp16); its LM head is {W.dtype}")
        check_token_blocks(model, self.blocks, "NeuralCollapseCallback blocks")
        if self.val_blocks is not None:
            check_token_blocks(model, self.val_blocks, "NeuralCollapseCallback val_blocks")
        if self.csv_path is not None and _is_writer():
            check_out(self.csv_path, suffix=".csv", ours=lambda p: is_csv_with(p, ["step", "epoch"]),
                      flag="NeuralCollapseCallback csv_path")
            folder = next(p for p in (self.csv_path.parent, *self.csv_path.parents) if p.exists())
            if not folder.is_dir() or not os.access(folder, os.W_OK):
                raise UserError(f"NeuralCollapseCallback csv_path {self.csv_path}: {folder} is "
                                "not a writable folder; choose another csv_path")

    def on_train_begin(self, args, state, control, model: nn.Module | None = None, **kwargs):
        if model is None:
            raise UserError("NeuralCollapseCallback needs the Trainer to pass the model")
        self.check(model)

    def on_step_end(self, args, state, control, model: nn.Module | None = None, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._measure(model, state)

    def on_epoch_end(self, args, state, control, model: nn.Module | None = None, **kwargs):
        if self.each_epoch:
            self._measure(model, state)

    def _features(self, model: nn.Module, ids: torch.Tensor, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(LM-head inputs (B*(T-1), D) as float32 or wider, next tokens (B*(T-1),)) of a
        batch of blocks."""
        x = final_features(model, ids.to(device))  # (B, T, D)
        x = x[:, :-1].reshape(-1, x.shape[-1])
        return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x,
                ids[:, 1:].reshape(-1).to(device))

    def measure(self, model: nn.Module) -> dict[str, float]:
        """The measures of ``model`` on the callback's blocks (training mode restored); under
        torch.distributed every rank must call it, each streaming its share of the blocks."""
        was_training = model.training
        W = lm_head_weight(model).detach().to(torch.float64)  # (V, D), cast once
        stats = ClassStats(W.shape[0], W.shape[1], W.device)
        rank, world = _rank_world()
        model.eval()
        try:
            with torch.inference_mode(), inference_autocast(W.device):
                for split, blocks in ((1, self.blocks), (2, self.val_blocks)):
                    if blocks is None:
                        continue
                    mine = blocks[rank::world]
                    for a in range(0, len(mine), self.batch_size):
                        x, y = self._features(model, mine[a:a + self.batch_size], W.device)
                        if split == 1:
                            stats.add(x, y)
                        else:
                            stats.add_validation(x, y, W)
                    if split == 2 and not stats.frozen:  # this rank got no validation block
                        stats.add_validation(torch.zeros(0, W.shape[1], device=W.device),
                                             torch.zeros(0, dtype=torch.long), W)
                    if world > 1:
                        stats.all_reduce_()
        finally:
            model.train(was_training)
        return stats.measures(W, self.which)

    def _measure(self, model: nn.Module | None, state) -> None:
        if model is None:
            raise UserError("NeuralCollapseCallback needs the Trainer to pass the model")
        if self._last_step == state.global_step:
            return
        self._last_step = state.global_step
        measures = self.measure(model)
        if "undefined" in measures:
            self.undefined[state.global_step] = measures.pop("undefined")
        row = {"step": state.global_step, "epoch": state.epoch,
               **{PREFIX + k: v for k, v in measures.items()}}
        self.rows.append(row)
        state.log_history.append(dict(row))
        if self.csv_path is not None and _is_writer():
            self._append_csv(row)

    def _append_csv(self, row: dict[str, float]) -> None:
        """Append one row; the header is written with the first."""
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        with self.csv_path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


def _rank_world() -> tuple[int, int]:
    """(this rank, number of ranks) under torch.distributed, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _is_writer() -> bool:
    """True on the process that writes files: rank 0, or the only process."""
    return _rank_world()[0] == 0
