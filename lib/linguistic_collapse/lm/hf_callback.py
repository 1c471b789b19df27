"""``NeuralCollapseCallback``: the neural-collapse measures of a model while a Hugging Face
``Trainer`` trains it, every N steps and/or at each epoch end, on fixed token blocks.

When due, the callback streams up to ``max_blocks`` blocks through the model (features: the LM
head's input, labels: the next tokens) into a ``linguistic_collapse.nc.ClassStats``, optionally runs pass 2 on
validation blocks for NC4, and appends the measures (keys ``nc/<measure>``) with ``step`` and
``epoch`` to ``state.log_history`` and, if given, to a CSV. When not due it does nothing but
compare the step counter.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import TrainerCallback

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm.devices import inference_autocast
from linguistic_collapse.lm.model import final_features, lm_head_weight
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
        self._last_step: int | None = None

    def on_step_end(self, args, state, control, model: nn.Module | None = None, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._measure(model, state)

    def on_epoch_end(self, args, state, control, model: nn.Module | None = None, **kwargs):
        if self.each_epoch:
            self._measure(model, state)

    def _features(self, model: nn.Module, ids: torch.Tensor, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(LM-head inputs (B*(T-1), D), next tokens (B*(T-1),)) of a batch of blocks."""
        x = final_features(model, ids.to(device))  # (B, T, D)
        return x[:, :-1].reshape(-1, x.shape[-1]), ids[:, 1:].reshape(-1).to(device)

    def measure(self, model: nn.Module) -> dict[str, float]:
        """The measures of ``model`` on the callback's blocks (training mode restored)."""
        was_training = model.training
        W = lm_head_weight(model).detach()  # (V, D)
        stats = ClassStats(W.shape[0], W.shape[1], W.device)
        model.eval()
        try:
            with torch.inference_mode(), inference_autocast(W.device):
                for a in range(0, len(self.blocks), self.batch_size):
                    stats.add(*self._features(model, self.blocks[a:a + self.batch_size],
                                              W.device))
                for a in range(0, 0 if self.val_blocks is None else len(self.val_blocks),
                               self.batch_size):
                    x, y = self._features(model, self.val_blocks[a:a + self.batch_size],
                                          W.device)
                    stats.add_validation(x, y, W)
        finally:
            model.train(was_training)
        return stats.measures(W, self.which)

    def _measure(self, model: nn.Module | None, state) -> None:
        if model is None:
            raise UserError("NeuralCollapseCallback needs the Trainer to pass the model")
        if self._last_step == state.global_step:
            return
        self._last_step = state.global_step
        row = {"step": state.global_step, "epoch": state.epoch,
               **{PREFIX + k: v for k, v in self.measure(model).items()}}
        self.rows.append(row)
        state.log_history.append(dict(row))
        if self.csv_path is not None:
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
