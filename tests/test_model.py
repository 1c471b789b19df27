"""GPT-Neo configuration, parameter count, run names, and (features, classifier) of a causal LM."""

import pytest
import torch
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.lm.gpt_neo import (
    attention_types,
    build_model,
    count_params,
    gpt_neo_config,
    paper_param_count,
)
from linguistic_collapse.lm.head import final_features, lm_head_weight
from linguistic_collapse.lm.loading import load_causal_lm


@pytest.mark.parametrize("n_layer, expected", [
    (1, ["global"]),
    (2, ["global", "local"]),
    (3, ["global", "local", "global"]),
    (4, ["global", "local", "global", "local"]),
])
def test_attention_alternates_starting_global(n_layer, expected):
    cfg = gpt_neo_config(n_layer, 32, vocab_size=50, n_ctx=16)
    assert cfg.attention_layers == expected
    assert attention_types(n_layer)


@pytest.mark.parametrize("n_layer, n_embd", [(1, 16), (2, 32), (3, 64)])
def test_param_count_matches_paper_formula(n_layer, n_embd):
    model = build_model(gpt_neo_config(n_layer, n_embd, vocab_size=97, n_ctx=24))
    assert count_params(model) == paper_param_count(n_layer, n_embd, 97, 24)


def test_paper_architecture_settings():
    cfg = gpt_neo_config(2, 64, vocab_size=50, n_ctx=32)
    assert cfg.intermediate_size == 256 and cfg.activation_function == "gelu_new"
    assert cfg.resid_dropout == cfg.embed_dropout == cfg.attention_dropout == 0.0
    assert cfg.tie_word_embeddings and cfg.layer_norm_epsilon == 1e-5
    assert cfg.num_heads == 4 and cfg.window_size == 32  # window capped at the context
    model = build_model(cfg)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    assert model.lm_head.bias is None


def test_width_not_divisible_into_heads():
    with pytest.raises(ValueError, match="not divisible into 16 attention heads"):
        gpt_neo_config(1, 40, vocab_size=50, n_ctx=16, n_head=16)


def test_features_are_lm_head_input():
    model = build_model(gpt_neo_config(2, 32, vocab_size=60, n_ctx=16), seed=1).eval()
    ids = torch.randint(0, 60, (3, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids).logits  # (B, T, V)
        feats = final_features(model, ids)  # (B, T, D)
    torch.testing.assert_close(feats @ lm_head_weight(model).T, logits, rtol=1e-5, atol=1e-5)


def test_load_saved_model_and_missing_checkpoint(tmp_path):
    model = build_model(gpt_neo_config(1, 16, vocab_size=30, n_ctx=8))
    model.save_pretrained(tmp_path / "m")
    loaded = load_causal_lm(tmp_path / "m")
    assert torch.equal(lm_head_weight(loaded), lm_head_weight(model))
    with pytest.raises(FileNotFoundError, match="no model checkpoint"):
        load_causal_lm(tmp_path / "absent")


@pytest.mark.parametrize("name", [
    ModelName(2, 64, 10, 5e-4, 3), ModelName(2, 64, 10, 5e-4, 3, 6), ModelName(12, 1024, 1, 0.1, 0),
    ModelName(1, 16, 3, 5e-05, 20, 3),
])
def test_run_names_round_trip(name):
    assert ModelName.parse(str(name)) == name


def test_run_name_text_and_errors():
    assert str(ModelName(2, 64, 10, 5e-4, 0).at(6)) == "L2-d64-e10-wd0.0005-s0-ck6"
    assert ModelName.parse("L2-d64-e10-wd0.0005-s0-ck6").run == ModelName(2, 64, 10, 5e-4, 0)
    with pytest.raises(ValueError, match="not a run name"):
        ModelName.parse("gpt2")
    with pytest.raises(ValueError, match="outside epochs"):
        ModelName(1, 16, 3, 0.1, 0).at(4)
