"""linguistic_collapse.lm.hf_callback.NeuralCollapseCallback inside a real transformers Trainer run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm import hf_callback
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.lm.hf_callback import NeuralCollapseCallback
from linguistic_collapse.nc.registry import MEASURES

V, D, T = 40, 16, 12


def _blocks(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, (n, T))


def test_bad_settings_are_one_line_errors():
    with pytest.raises(UserError, match="every_n_steps or each_epoch"):
        NeuralCollapseCallback(_blocks(0, 2))
    with pytest.raises(UserError, match="integer token blocks"):
        NeuralCollapseCallback(np.zeros((2, 5)), every_n_steps=1)


@pytest.mark.slow
def test_trainer_logs_measures_when_due_and_costs_nothing_otherwise(tmp_path, monkeypatch):
    from transformers import Trainer, TrainingArguments

    calls = []
    real = hf_callback.final_features
    monkeypatch.setattr(hf_callback, "final_features",
                        lambda model, ids: calls.append(len(ids)) or real(model, ids))
    model = build_model(gpt_neo_config(1, D, V, T), seed=0)
    train = [{"input_ids": torch.from_numpy(b), "labels": torch.from_numpy(b)}
             for b in _blocks(1, 8)]
    cb = NeuralCollapseCallback(_blocks(2, 10), _blocks(3, 4), every_n_steps=3, each_epoch=True,
                                max_blocks=6, batch_size=4, csv_path=tmp_path / "nc.csv")
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=6, num_train_epochs=3,
                             per_device_train_batch_size=4, logging_steps=1, report_to=[],
                             save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[cb])
    trainer.train()
    # 2 batches an epoch, 3 epochs: due at steps 3 and 6 and epoch ends 2, 4, 6 (6 once)
    assert [r["step"] for r in cb.rows] == [2, 3, 4, 6]
    assert len(calls) == 4 * (2 + 1)  # per row: 6 capped train blocks in 2 batches, 4 val in 1
    logged = [h for h in trainer.state.log_history if "nc/nc1_cdnv" in h]
    table = pd.read_csv(tmp_path / "nc.csv")
    assert list(table["step"]) == [2, 3, 4, 6]
    assert [c.removeprefix("nc/") for c in table.columns[2:]] == MEASURES
    assert np.isfinite(table.iloc[:, 2:].to_numpy()).all()
    assert model.training  # restored after measuring
    assert logged == cb.rows
