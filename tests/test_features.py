"""linguistic_collapse.lm.features.head_features and the Trainer callback's checks when training
begins, on fp32, bf16 and fp16 models."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm.features import head_features
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.lm.hf_callback import NeuralCollapseCallback
from linguistic_collapse.nc.registry import MEASURES

V, D, T = 40, 16, 12


@pytest.fixture(scope="module")
def model():
    return build_model(gpt_neo_config(1, D, V, T), seed=0).eval()


def _hooked(model, ids, mask=None):
    """The LM head's input by a plain forward hook, the README's former hand-written way."""
    seen = []
    hook = model.get_output_embeddings().register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    hook.remove()
    return seen[0]


def test_features_are_the_head_input_and_labels_the_next_token(model):
    ids = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(0))
    x, y = head_features(model, ids)
    want = _hooked(model, ids)[:, :-1].reshape(-1, D)
    torch.testing.assert_close(x, want, rtol=0, atol=0)
    assert torch.equal(y, ids[:, 1:].reshape(-1))


def test_padding_and_ignored_labels_are_left_out(model):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (2, T), generator=g)
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, :4] = 0  # left padding of the second row
    labels = ids.clone()
    labels[0, 5] = -100  # HF: ignore the token at position 5 (predicted at position 4)
    x, y = head_features(model, ids, attention_mask=mask, labels=labels)
    full = _hooked(model, ids, mask)
    keep = torch.ones(2, T - 1, dtype=torch.bool)
    keep[0, 4] = False
    keep[1, :4] = False  # positions 0..3 are padding, and 3's next is the first real token
    torch.testing.assert_close(x, full[:, :-1][keep], rtol=0, atol=0)
    assert torch.equal(y, ids[:, 1:][keep])
    assert len(y) == 2 * (T - 1) - 1 - 4


def test_token_ids_outside_the_model_are_refused(model):
    with pytest.raises(UserError, match=f"token id {V} outside the model's vocabulary of {V}"):
        head_features(model, torch.full((1, T), V))
    with pytest.raises(UserError, match=f"more than the model's {T} positions"):
        head_features(model, torch.zeros(1, T + 1, dtype=torch.long))


def _callback(tmp_path, blocks=None, **kw):
    blocks = np.random.default_rng(0).integers(0, V, (4, T)) if blocks is None else blocks
    return NeuralCollapseCallback(blocks, every_n_steps=1, batch_size=2, **kw)


@pytest.mark.parametrize("bad,match", [
    (np.full((2, T), V), "outside the model's vocabulary"),
    (np.zeros((2, T + 3), dtype=int), "more than the model's"),
])
def test_the_callback_checks_its_blocks_when_training_begins(tmp_path, model, bad, match):
    cb = _callback(tmp_path, bad)
    with pytest.raises(UserError, match=match):
        cb.on_train_begin(None, None, None, model=model)  # main: accepted until the first due step


def test_the_callback_checks_its_csv_path_when_training_begins(tmp_path, model):
    other = tmp_path / "notes.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="csv_path .*not a file this command writes"):
        _callback(tmp_path, csv_path=other).on_train_begin(None, None, None, model=model)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(UserError, match="not a writable folder"):
        _callback(tmp_path, csv_path=a_file / "nc.csv").on_train_begin(None, None, None, model=model)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(UserError, match="not a writable folder"):
            _callback(tmp_path, csv_path=locked / "nc.csv").on_train_begin(None, None, None,
                                                                           model=model)
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_callback_measures_16_bit_models(dtype):
    model = build_model(gpt_neo_config(1, D, V, T), seed=0).to(dtype)
    rng = np.random.default_rng(1)
    cb = NeuralCollapseCallback(rng.integers(0, V, (6, T)), rng.integers(0, V, (3, T)),
                                every_n_steps=1, batch_size=3)
    cb.on_train_begin(None, None, None, model=model)
    got = cb.measure(model)  # main: "stats: lm_head is bfloat16"
    assert [k for k in got if k != "undefined"] == MEASURES
    assert all(math.isfinite(got[k]) for k in MEASURES)
    assert model.get_output_embeddings().weight.dtype == dtype  # the model is left as it was
