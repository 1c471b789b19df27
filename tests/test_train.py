"""Training: checkpoints and results, no-op when finished, exact resume, seeds, clear errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import Layout
from linguistic_collapse.core.profile_sections import ModelConfig, TrainingConfig
from linguistic_collapse.core.provenance import weights_sha256
from linguistic_collapse.lm.data import block_order, prepare_corpus
from linguistic_collapse.lm.gpt_neo import count_params
from linguistic_collapse.lm.loading import load_causal_lm
from linguistic_collapse.pipeline.checkpoints import STATE_FILE, STATE_TENSORS, read_training_state
from linguistic_collapse.pipeline.loop import build_run_model, evaluate, param_groups
from linguistic_collapse.pipeline.train import train_run

TRAINING = TrainingConfig(lr=1e-3, batch_size=8, eval_batch_size=16)
MODEL = ModelConfig()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return prepare_corpus(
        corpus={"source": "generated", "max_train_stories": 100, "max_val_stories": 30},
        tokenizer={"kind": "bpe", "vocab_size": 300}, context_len=32,
        cache_dir=tmp_path_factory.mktemp("corpus"), progress=False)


def train(run: str, out_dir, corpus, **kw) -> dict:
    return train_run(ModelName.parse(run), corpus=corpus, training=TRAINING, model_cfg=MODEL,
                     out_dir=out_dir, device="cpu", progress=False, **kw)


def checkpoint_dir(out_dir, ck: ModelName):
    return Layout(out_dir).checkpoint_dir(ck)


def run_dir(out_dir, run: ModelName):
    return Layout(out_dir).run_dir(run)


def losses(results: dict) -> list[tuple[float, float, float]]:
    return [(c["train_loss"], c["val_loss"], c["val_acc"]) for c in results["checkpoints"]]


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    return out, train("L1-d16-e3-wd0.1-s0", out, corpus)


def test_checkpoints_and_results_written(uninterrupted, corpus):
    out, res = uninterrupted
    run = ModelName.parse("L1-d16-e3-wd0.1-s0")
    for epoch in (1, 2, 3):
        ck = checkpoint_dir(out, run.at(epoch))
        assert (ck / "config.json").is_file() and (ck / STATE_FILE).is_file()
        assert (ck / STATE_TENSORS).is_file() and not list(ck.glob("*.pt"))
        assert (ck / "tokenizer.json").is_file()
        assert res["checkpoints"][epoch - 1]["weights_sha256"] == weights_sha256(ck)
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
    model = load_causal_lm(checkpoint_dir(out, run.at(3)))
    assert res["n_params"] == count_params(model) and res["paper_param_count"] > 0
    assert set(res["versions"]) == {"torch", "transformers"}


def test_lr_decays_linearly_to_zero(uninterrupted):
    out, _ = uninterrupted
    ck = checkpoint_dir(out, ModelName.parse("L1-d16-e3-wd0.1-s0-ck3"))
    _, plain = read_training_state(ck)
    assert plain["scheduler"]["_last_lr"] == [0.0, 0.0]


def test_finished_run_is_a_noop(uninterrupted, corpus, monkeypatch):
    out, res = uninterrupted
    import linguistic_collapse.pipeline.loop

    def boom(*args, **kwargs):
        raise AssertionError("a finished run must not train again")

    monkeypatch.setattr(linguistic_collapse.pipeline.loop, "train_epoch", boom)  # the one training loop
    assert train("L1-d16-e3-wd0.1-s0", out, corpus) == res


def test_resume_equals_uninterrupted(uninterrupted, corpus, tmp_path):
    _, full = uninterrupted
    part = train("L1-d16-e3-wd0.1-s0", tmp_path, corpus, stop_after_epochs=2)
    assert part["status"] == "running" and len(part["checkpoints"]) == 2
    assert not checkpoint_dir(tmp_path, ModelName.parse("L1-d16-e3-wd0.1-s0-ck3")).exists()
    resumed = train("L1-d16-e3-wd0.1-s0", tmp_path, corpus)
    assert resumed["status"] == "complete"
    assert losses(resumed) == losses(full)


def test_settings_change_is_refused(uninterrupted, corpus):
    out, _ = uninterrupted
    with pytest.raises(UserError, match=r"trained from other inputs \(training.lr changed\).*retrain"):
        train_run(ModelName.parse("L1-d16-e3-wd0.1-s0"), corpus=corpus,
                  training=TRAINING.model_copy(update={"lr": 5e-4}), model_cfg=MODEL,
                  out_dir=out, device="cpu", progress=False)


def test_finished_run_on_other_text_is_refused(uninterrupted, corpus, tmp_path):
    """Same sizes, other token blocks (another generated seed): the stored run is not reused."""
    from linguistic_collapse.lm.synthetic import generate_corpus

    texts = generate_corpus(100, seed=7)
    (tmp_path / "train.txt").write_text("\n".join(texts))
    (tmp_path / "validation.txt").write_text("\n".join(generate_corpus(30, seed=8)))
    other = prepare_corpus(corpus={"source": "path", "path": str(tmp_path)},
                           tokenizer={"kind": "bpe", "vocab_size": 300}, context_len=32,
                           cache_dir=tmp_path / "corpus", progress=False)
    out, _ = uninterrupted
    with pytest.raises(UserError, match="tokenizer_sha256, train_blocks_sha256, val_blocks_sha256 changed"):
        train("L1-d16-e3-wd0.1-s0", out, other)


@pytest.mark.slow
def test_seeds(corpus, tmp_path):
    a = train("L1-d16-e1-wd0.0005-s0", tmp_path / "a", corpus)
    b = train("L1-d16-e1-wd0.0005-s0", tmp_path / "b", corpus)
    c = train("L1-d16-e1-wd0.0005-s1", tmp_path / "c", corpus)
    assert losses(a) == losses(b)  # same seed -> identical
    assert losses(a) != losses(c)  # another shuffling seed -> another data order
    n = corpus.n_train_blocks
    assert not np.array_equal(block_order(n, 0, 1), block_order(n, 1, 1))
    w0 = build_run_model(ModelName.parse("L1-d16-e1-wd0.0005-s0"), corpus, MODEL).state_dict()
    w1 = build_run_model(ModelName.parse("L1-d16-e1-wd0.0005-s1"), corpus, MODEL).state_dict()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # identical initial weights


def test_weight_decay_groups_follow_trainer():
    from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config

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
    model = build_run_model(ModelName.parse("L1-d16-e1-wd0.1-s0"), corpus, MODEL).eval()
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
        train_run(ModelName.parse("L1-d16-e1-wd0.1-s0"), corpus=corpus, training=TRAINING,
                  model_cfg=ModelConfig(n_head=5), out_dir=tmp_path, device="cpu", progress=False)
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_run(ModelName.parse("L1-d16-e1-wd0.1-s0"), corpus=corpus,
                  training=TRAINING.model_copy(update={"batch_size": 10**6}), model_cfg=MODEL,
                  out_dir=tmp_path,
                  device="cpu", progress=False)
    with pytest.raises(ValueError, match="names no checkpoint"):
        checkpoint_dir(tmp_path, ModelName.parse("L1-d16-e1-wd0.1-s0"))


def test_corpus_without_validation_block(corpus, tmp_path):
    empty_val = replace(corpus, n_val_blocks=0)
    with pytest.raises(ValueError, match="validation corpus has no block"):
        train_run(ModelName.parse("L1-d16-e1-wd0.1-s0"), corpus=empty_val, training=TRAINING,
                  model_cfg=MODEL, out_dir=tmp_path, device="cpu", progress=False)


def test_results_record_the_inputs(uninterrupted, corpus):
    """results.json ties the run to its blocks, tokenizer, settings and init seed."""
    _, res = uninterrupted
    manifest = json.loads((corpus.cache_dir / "manifest.json").read_text())
    s = res["settings"]
    for key in ("train_blocks_sha256", "val_blocks_sha256", "tokenizer_sha256"):
        assert s[key] == manifest[key] and len(s[key]) == 64
    assert s["init_seed"] == MODEL.init_seed and s["training"]["lr"] == TRAINING.lr


class _Payload:
    """Unpickling this creates a file: the proof that a pickle ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
def test_planted_pickle_is_never_executed(corpus, tmp_path):
    """A training_state.pt planted in a run folder is not unpickled when the run resumes."""
    run = "L1-d16-e2-wd0.1-s0"
    train(run, tmp_path / "out", corpus, stop_after_epochs=1)
    ck = checkpoint_dir(tmp_path / "out", ModelName.parse(run).at(1))
    marker = tmp_path / "pwned"
    payload = {"epoch": 1, "optimizer": _Payload(marker), "scheduler": _Payload(marker),
               "rng": _Payload(marker), "records": [], "settings": _Payload(marker)}
    torch.save(payload, ck / "training_state.pt")
    resumed = train(run, tmp_path / "out", corpus)  # the .pt file is never read
    assert resumed["status"] == "complete" and not marker.exists()
    ck2 = checkpoint_dir(tmp_path / "out", ModelName.parse(run).at(2))
    torch.save(payload, ck / STATE_FILE)  # even under the state file's own name: JSON, not pickle
    (ck2 / STATE_FILE).unlink()
    (run_dir(tmp_path / "out", ModelName.parse(run)) / "results.json").unlink()
    with pytest.raises(UserError, match=r"training_state.json: unreadable training state.*retrain"):
        train(run, tmp_path / "out", corpus)
    assert not marker.exists()
    again = train(run, tmp_path / "out", corpus, retrain=True)  # the fix the message names
    assert losses(again) == losses(resumed)


@pytest.mark.slow
def test_retrain_discards_a_run_made_from_other_inputs(corpus, tmp_path):
    run = "L1-d16-e1-wd0.1-s0"
    first = train(run, tmp_path, corpus)
    other = TRAINING.model_copy(update={"lr": 5e-4})
    with pytest.raises(UserError, match=r"training.lr changed.*retrain it with: RETRAIN"):
        train_run(ModelName.parse(run), corpus=corpus, training=other, model_cfg=MODEL,
                  out_dir=tmp_path, device="cpu", progress=False, retrain_command="RETRAIN")
    again = train_run(ModelName.parse(run), corpus=corpus, training=other, model_cfg=MODEL,
                      out_dir=tmp_path, device="cpu", progress=False, retrain=True)
    assert again["settings"]["training"]["lr"] == 5e-4 and losses(again) != losses(first)
    fresh = train_run(ModelName.parse(run), corpus=corpus, training=other, model_cfg=MODEL,
                      out_dir=tmp_path / "fresh", device="cpu", progress=False)
    assert losses(again) == losses(fresh)
    assert not list(tmp_path.glob("models/.*.tmp"))  # the old run is gone, nothing left aside


@pytest.mark.slow
def test_interrupted_run_on_other_inputs_is_refused(corpus, tmp_path):
    """No results.json yet: the last checkpoint's recorded inputs are compared."""
    run = "L1-d16-e2-wd0.1-s0"
    train(run, tmp_path, corpus, stop_after_epochs=1)
    (run_dir(tmp_path, ModelName.parse(run)) / "results.json").unlink()
    with pytest.raises(UserError, match="training.lr changed"):
        train_run(ModelName.parse(run), corpus=corpus,
                  training=TRAINING.model_copy(update={"lr": 5e-4}), model_cfg=MODEL,
                  out_dir=tmp_path, device="cpu", progress=False)
