"""Training: checkpoints and results, no-op when finished, exact resume, seeds, clear errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from lib.data import block_order, prepare_corpus
from lib.model import RunName, count_params
from lib.profiles import ModelConfig, TrainingConfig
from lib.train import (
    STATE_FILE,
    build_run_model,
    checkpoint_dir,
    evaluate,
    load_checkpoint,
    param_groups,
    run_dir,
    train_run,
)

TRAINING = TrainingConfig(lr=1e-3, batch_size=8, eval_batch_size=16)
MODEL = ModelConfig()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return prepare_corpus(
        corpus={"source": "generated", "max_train_stories": 100, "max_val_stories": 30},
        tokenizer={"kind": "bpe", "vocab_size": 300}, context_len=32,
        cache_dir=tmp_path_factory.mktemp("corpus"), progress=False)


def train(run: str, out_dir, corpus, **kw) -> dict:
    return train_run(RunName.parse(run), corpus=corpus, training=TRAINING, model_cfg=MODEL,
                     out_dir=out_dir, device="cpu", progress=False, **kw)


def losses(results: dict) -> list[tuple[float, float, float]]:
    return [(c["train_loss"], c["val_loss"], c["val_acc"]) for c in results["checkpoints"]]


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return out, train("L1-d16-e3-wd0.1-s0", out, corpus)


def test_checkpoints_and_results_written(uninterrupted, corpus):
    out, res = uninterrupted
    run = RunName.parse("L1-d16-e3-wd0.1-s0")
    for epoch in (1, 2, 3):
        ck = checkpoint_dir(out, run.at(epoch))
        assert (ck / "config.json").is_file() and (ck / STATE_FILE).is_file()
        assert (ck / "tokenizer.json").is_file()
    assert not list(run_dir(out, run).glob(".checkpoint-*"))  # no temp dirs left
    stored = json.loads((run_dir(out, run) / "results.json").read_text())
    assert stored == res and res["status"] == "complete"
    assert res["spec"]["width"] == 16 and res["spec"]["lr"] == 1e-3
    assert res["spec"]["batch_size"] == 8 and res["spec"]["context_len"] == 32
    assert [c["epoch"] for c in res["checkpoints"]] == [1, 2, 3]
    assert res["checkpoints"][-1]["tokens_seen"] == 3 * corpus.n_train_tokens
    for c in res["checkpoints"]:
        assert c["val_ppl"] == pytest.approx(math.exp(c["val_loss"]))
        assert 0 <= c["val_acc"] <= 1 and c["wall_s"] > 0 and c["train_tokens_per_s"] > 0
    assert res["checkpoints"][-1]["val_loss"] < res["checkpoints"][0]["val_loss"]
    model = load_checkpoint(out, run.at(3))
    assert res["n_params"] == count_params(model) and res["paper_param_count"] > 0
    assert set(res["versions"]) == {"torch", "transformers"}


def test_lr_decays_linearly_to_zero(uninterrupted):
    out, _ = uninterrupted
    ck = checkpoint_dir(out, RunName.parse("L1-d16-e3-wd0.1-s0-ck3"))
    state = torch.load(ck / STATE_FILE, weights_only=False)
    assert state["scheduler"]["_last_lr"] == [0.0, 0.0]


def test_finished_run_is_a_noop(uninterrupted, corpus, monkeypatch):
    out, res = uninterrupted
    import lib.train

    def boom(*args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(lib.train, "train_epoch", boom)
    assert train("L1-d16-e3-wd0.1-s0", out, corpus) == res


def test_resume_equals_uninterrupted(uninterrupted, corpus, tmp_path):
    _, full = uninterrupted
    part = train("L1-d16-e3-wd0.1-s0", tmp_path, corpus, stop_after_epochs=2)
    assert part["status"] == "running" and len(part["checkpoints"]) == 2
    assert not checkpoint_dir(tmp_path, RunName.parse("L1-d16-e3-wd0.1-s0-ck3")).exists()
    resumed = train("L1-d16-e3-wd0.1-s0", tmp_path, corpus)
    assert resumed["status"] == "complete"
    assert losses(resumed) == losses(full)


def test_settings_change_is_refused(uninterrupted, corpus):
    out, _ = uninterrupted
    with pytest.raises(ValueError, match="trained with other settings"):
        train_run(RunName.parse("L1-d16-e3-wd0.1-s0"), corpus=corpus,
                  training=replace(TRAINING, lr=5e-4), model_cfg=MODEL, out_dir=out,
                  device="cpu", progress=False)


def test_finished_run_on_other_text_is_refused(uninterrupted, corpus, tmp_path):
    """Same sizes, other token blocks (another generated seed): the stored run is not reused."""
    from lib.data import generate_corpus

    texts = generate_corpus(100, seed=7)
    (tmp_path / "train.txt").write_text("\n".join(texts))
    (tmp_path / "validation.txt").write_text("\n".join(generate_corpus(30, seed=8)))
    other = prepare_corpus(corpus={"source": "path", "path": str(tmp_path)},
                           tokenizer={"kind": "bpe", "vocab_size": 300}, context_len=32,
                           cache_dir=tmp_path / "corpus", progress=False)
    out, _ = uninterrupted
    with pytest.raises(ValueError, match="corpus_sha256"):
        train("L1-d16-e3-wd0.1-s0", out, other)


def test_seeds(corpus, tmp_path):
    a = train("L1-d16-e1-wd0.0005-s0", tmp_path / "a", corpus)
    b = train("L1-d16-e1-wd0.0005-s0", tmp_path / "b", corpus)
    c = train("L1-d16-e1-wd0.0005-s1", tmp_path / "c", corpus)
    assert losses(a) == losses(b)  # same seed -> identical
    assert losses(a) != losses(c)  # another shuffling seed -> another data order
    n = corpus.n_train_blocks
    assert not np.array_equal(block_order(n, 0, 1), block_order(n, 1, 1))
    w0 = build_run_model(RunName.parse("L1-d16-e1-wd0.0005-s0"), corpus, MODEL).state_dict()
    w1 = build_run_model(RunName.parse("L1-d16-e1-wd0.0005-s1"), corpus, MODEL).state_dict()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # identical initial weights


def test_weight_decay_groups_follow_trainer():
    from lib.model import build_model, gpt_neo_config

    model = build_model(gpt_neo_config(2, 16, 300, 32))
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    plain = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(n.endswith("bias") or ".ln_" in n for n in plain)
    assert all(not n.endswith("bias") and ".ln_" not in n for n in decayed)
    assert "transformer.wte.weight" in decayed and "transformer.ln_f.weight" in plain
    assert len(decayed) + len(plain) == len(list(model.parameters()))


def test_evaluate_matches_plain_cross_entropy(corpus):
    model = build_run_model(RunName.parse("L1-d16-e1-wd0.1-s0"), corpus, MODEL).eval()
    blocks = corpus.val_blocks()[:5]  # (5, T); batches of 2, 2, 1
    got = evaluate(model, blocks, 2, torch.device("cpu"), "fp32")
    ids = torch.from_numpy(np.asarray(blocks, dtype=np.int64))
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[:, :-1], -1)  # (5, T-1, V)
    target = ids[:, 1:]
    nll = -logp.gather(-1, target[..., None]).mean().item()
    acc = (logp.argmax(-1) == target).float().mean().item()
    assert got["val_loss"] == pytest.approx(nll, rel=1e-5)
    assert got["val_acc"] == pytest.approx(acc)


def test_errors(corpus, tmp_path):
    with pytest.raises(ValueError, match="not divisible into 5 attention heads"):
        train_run(RunName.parse("L1-d16-e1-wd0.1-s0"), corpus=corpus, training=TRAINING,
                  model_cfg=ModelConfig(n_head=5), out_dir=tmp_path, device="cpu", progress=False)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_run(RunName.parse("L1-d16-e1-wd0.1-s0"), corpus=corpus,
                  training=replace(TRAINING, batch_size=10**6), model_cfg=MODEL, out_dir=tmp_path,
                  device="cpu", progress=False)
    with pytest.raises(FileNotFoundError, match="train the run first"):
        load_checkpoint(tmp_path, RunName.parse("L1-d16-e1-wd0.1-s0-ck1"))
    with pytest.raises(ValueError, match="names no checkpoint"):
        checkpoint_dir(tmp_path, RunName.parse("L1-d16-e1-wd0.1-s0"))


def test_corpus_without_validation_block(corpus, tmp_path):
    empty_val = replace(corpus, n_val_blocks=0)
    with pytest.raises(ValueError, match="validation corpus has no block"):
        train_run(RunName.parse("L1-d16-e1-wd0.1-s0"), corpus=empty_val, training=TRAINING,
                  model_cfg=MODEL, out_dir=tmp_path, device="cpu", progress=False)
