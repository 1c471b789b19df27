"""Any causal LM, exactly: tiny random GPT-2, GPT-NeoX (Pythia), Llama (untied head) and OPT
(with ``project_out``) saved locally; hub ids fail fast offline; ``linguistic_collapse.pipeline.pretrained`` end to end."""

from __future__ import annotations

import json
import math
import time
import warnings

import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import read_json
from linguistic_collapse.lm.head import (
    feature_logit_gap,
    final_features,
    head_logits,
    lm_head_bias,
    lm_head_weight,
)
from linguistic_collapse.lm.loading import load_causal_lm
from linguistic_collapse.nc.stats_file import load_stats_metadata

try:  # the generated corpus may move from linguistic_collapse.lm.data to linguistic_collapse.lm.synthetic
    from linguistic_collapse.lm.synthetic import generate_corpus
except ImportError:
    from linguistic_collapse.lm.data import generate_corpus

ARCHS = ("gpt2", "gpt_neox", "llama", "opt", "opt_plain")
CTX = 32


def tiny_config(arch: str, vocab_size: int, width: int = 32, n_layer: int = 2, n_pos: int = 64):
    """A small randomly initialised config of each family, as the hub models are built."""
    import transformers as tf

    common = {"vocab_size": vocab_size, "bos_token_id": 0, "eos_token_id": 0}
    if arch == "gpt2":
        return tf.GPT2Config(n_positions=n_pos, n_embd=width, n_layer=n_layer, n_head=2, **common)
    if arch == "gpt_neox":  # Pythia: parallel residual, partial rotary, untied embed_out
        return tf.GPTNeoXConfig(max_position_embeddings=n_pos, hidden_size=width,
                                num_hidden_layers=n_layer, num_attention_heads=2,
                                intermediate_size=4 * width, rotary_pct=0.25,
                                use_parallel_residual=True, tie_word_embeddings=False, **common)
    if arch == "llama":
        return tf.LlamaConfig(max_position_embeddings=n_pos, hidden_size=width,
                              num_hidden_layers=n_layer, num_attention_heads=2,
                              num_key_value_heads=1, intermediate_size=2 * width,
                              tie_word_embeddings=False, **common)
    if arch in ("opt", "opt_plain"):  # "opt": word_embed_proj_dim != hidden_size (project_out)
        # OPT's padding row of the (tied) embedding is zero, as in the hub models: a zero
        # classifier row has no direction (NC3 duality undefined), so pad is a non-text token
        return tf.OPTConfig(max_position_embeddings=n_pos, hidden_size=width,
                            num_hidden_layers=n_layer, num_attention_heads=2, ffn_dim=2 * width,
                            word_embed_proj_dim=width // 2 if arch == "opt" else width,
                            **{**common, "pad_token_id": 0})  # "<|endoftext|>": never in text
    raise ValueError(arch)


@pytest.fixture(scope="module")
def texts():
    return generate_corpus(60, seed=0), generate_corpus(12, seed=1)


@pytest.fixture(scope="module")
def tokenizers(texts, tmp_path_factory):
    from linguistic_collapse.lm.data import train_bpe_tokenizer

    root = tmp_path_factory.mktemp("tok")
    with warnings.catch_warnings():  # a tiny corpus may stop short of the vocabulary size
        warnings.simplefilter("ignore")
        a = train_bpe_tokenizer(texts[0], 300, root / "a")
        b = train_bpe_tokenizer(texts[0][:30], 280, root / "b")
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def saved(tokenizers, tmp_path_factory):
    """arch -> (folder, in-memory model): each saved with save_pretrained + its tokenizer."""
    from transformers import AutoModelForCausalLM

    root, out = tmp_path_factory.mktemp("models"), {}
    for i, arch in enumerate(ARCHS):
        tok = tokenizers["a" if i % 2 == 0 else "b"]
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_config(tiny_config(arch, len(tok))).eval()
        model.save_pretrained(root / arch)
        tok.save_pretrained(root / arch)
        out[arch] = (root / arch, model)
    return out


def _ids(vocab: int, shape=(3, CTX), seed=0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_features_are_exactly_the_head_input(arch, saved):
    folder, original = saved[arch]
    model = load_causal_lm(folder)
    assert type(model) is type(original) and not model.training
    W = lm_head_weight(model)
    torch.testing.assert_close(W, lm_head_weight(original), rtol=0, atol=0)
    ids = _ids(W.shape[0])
    with torch.no_grad():
        logits = model(input_ids=ids).logits  # (B, T, V)
        feats = final_features(model, ids)  # (B, T, D)
    assert feats.shape == (*ids.shape, W.shape[1])
    torch.testing.assert_close(head_logits(model, feats), logits, rtol=1e-5, atol=1e-5)
    b = lm_head_bias(model)
    torch.testing.assert_close(feats @ W.T + (0 if b is None else b), logits, rtol=1e-5, atol=1e-5)
    assert feature_logit_gap(model, ids) < 1e-5


@pytest.mark.parametrize("arch", ["gpt_neox", "llama"])
def test_untied_head_is_the_classifier(arch, saved):
    model = load_causal_lm(saved[arch][0])
    W, E = lm_head_weight(model), model.get_input_embeddings().weight
    assert W.data_ptr() != E.data_ptr() and not torch.equal(W, E)
    assert W is model.get_output_embeddings().weight


def test_opt_features_are_after_project_out(saved):
    model = load_causal_lm(saved["opt"][0])
    cfg = model.config
    assert cfg.word_embed_proj_dim != cfg.hidden_size and model.model.decoder.project_out is not None
    ids = _ids(cfg.vocab_size)
    with torch.no_grad():
        feats = final_features(model, ids)
        hidden = model.model.decoder(input_ids=ids).last_hidden_state
    assert feats.shape[-1] == cfg.word_embed_proj_dim == lm_head_weight(model).shape[1]
    torch.testing.assert_close(feats, hidden)  # the decoder's output includes project_out


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama", "opt"])
def test_collect_and_measure_each_architecture(arch, saved, texts, tmp_path):
    from linguistic_collapse.lm.data import load_tokenizer, tokenize_blocks
    from linguistic_collapse.nc.measure import measure_stats
    from linguistic_collapse.pipeline.collect import collect_model_stats
    from safetensors.torch import load_file

    folder, model = saved[arch]
    V = lm_head_weight(model).shape[0]
    tok = load_tokenizer(folder)  # the model's own tokenizer, saved beside it
    train = tokenize_blocks(texts[0], tok, CTX, progress=False)[:8]  # (8, CTX)
    val = tokenize_blocks(texts[1], tok, CTX, progress=False)[:3]
    out = collect_model_stats(folder, train, val, tmp_path / "stats.safetensors", batch_size=4,
                              device="cpu", progress=False)
    stats = load_file(str(out))
    assert stats["sums"].shape == (V, lm_head_weight(model).shape[1])
    measures = measure_stats(stats)[0]
    assert measures["num_classes"] >= 2
    bad = {k: v for k, v in measures.items() if not math.isfinite(v)}
    assert not bad, bad
    assert 0.0 <= measures["nc4_agreement"] <= 1.0


# ---------------------------------------------------------------------------------------------
# Hub ids offline.


@pytest.mark.parametrize("name, revision", [("gpt2", None), ("EleutherAI/pythia-70m", "step1000")])
def test_hub_model_fails_fast_offline(name, revision, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="not available offline") as err:
        load_causal_lm(name, revision=revision)
    assert time.perf_counter() - t0 < 10
    text = str(err.value)
    assert "\n" not in text and name in text and "HF_HOME" in text and "HF_HUB_OFFLINE" in text
    assert (revision or "") in text and "connected machine" in text


def test_hub_unreachable_fails_fast_without_offline_flag(monkeypatch):
    import linguistic_collapse.lm.hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(linguistic_collapse.lm.hub, "hub_reachable", lambda timeout=3.0: False)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="unreachable"):
        load_causal_lm("EleutherAI/pythia-70m", revision="step1000")
    assert time.perf_counter() - t0 < 10


def test_hub_tokenizer_fails_fast_offline(monkeypatch):
    from linguistic_collapse.pipeline.pretrained import load_model_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="tokenizer 'gpt2' is not available offline"):
        load_model_tokenizer("gpt2")


def test_local_paths(saved, tmp_path):
    with pytest.raises(UserError, match="applies to hub models"):
        load_causal_lm(saved["gpt2"][0], revision="step1")
    with pytest.raises(FileNotFoundError, match="no model checkpoint"):
        load_causal_lm(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="no model checkpoint"):
        load_causal_lm("./not/a/hub/id")


# ---------------------------------------------------------------------------------------------
# linguistic_collapse.pipeline.pretrained


def test_measure_pretrained_two_architectures(saved, texts, tmp_path):
    from linguistic_collapse.nc.registry import MEASURES
    from linguistic_collapse.pipeline.pretrained import (
        TABLE_COLUMNS,
        measure_pretrained,
        pretrained_table,
    )

    models = [(str(saved["gpt2"][0]), None), (str(saved["gpt_neox"][0]), None)]
    rows = measure_pretrained(models, texts[0], texts[1], tmp_path, context_len=CTX,
                              batch_size=4, max_train_blocks=12)
    assert [r["name"] for r in rows] == ["local--gpt2", "local--gpt_neox"]
    for row, (_folder, model) in zip(rows, [saved["gpt2"], saved["gpt_neox"]], strict=True):
        missing = [c for c in TABLE_COLUMNS + MEASURES + ["collect_seconds"] if c not in row]
        assert not missing, missing
        assert row["revision"] is None and row["depth"] == 2 and row["width"] == 32
        assert row["n_params"] == sum(p.numel() for p in model.parameters())
        assert row["train_blocks"] == 12 and row["val_blocks"] >= 1
        assert row["vocab_size"] == lm_head_weight(model).shape[0]
        # random init: loss near log V
        assert abs(row["val_loss"] - math.log(row["vocab_size"])) < 0.5
        assert all(math.isfinite(row[m]) for m in MEASURES), row
        assert row["feature_logit_gap"] < 1e-5
        on_disk = json.loads((tmp_path / "metrics" / f"{row['name']}.json").read_text())
        assert on_disk["val_loss"] == row["val_loss"]
    assert rows[0]["family"] == "gpt2" and rows[1]["family"] == "gpt_neox"
    # texts hashed by the one rule (linguistic_collapse.core.provenance); the in-memory model's hash has its own key
    from linguistic_collapse.core.provenance import sha256_texts
    from linguistic_collapse.nc.stats_file import load_stats_metadata

    assert rows[0]["settings"]["train_texts_sha256"] == sha256_texts(texts[0])
    assert rows[0]["settings"]["val_texts_sha256"] == sha256_texts(texts[1])
    recorded = load_stats_metadata(tmp_path / "stats" / "local--gpt2" / "stats.safetensors")
    assert recorded["state_dict_sha256"] and "weights_sha256" not in recorded
    # each model used its own tokenizer: different vocabularies, different block counts
    assert rows[0]["vocab_size"] != rows[1]["vocab_size"]
    table = pretrained_table(tmp_path)
    assert len(table) == 2 and set(TABLE_COLUMNS + MEASURES) <= set(table.columns)
    # finished models are not redone
    mtime = (tmp_path / "metrics" / "local--gpt2.json").stat().st_mtime_ns
    again = measure_pretrained(models[:1], texts[0], texts[1], tmp_path, context_len=CTX,
                               batch_size=4, max_train_blocks=12)
    assert again[0]["val_loss"] == rows[0]["val_loss"]
    assert (tmp_path / "metrics" / "local--gpt2.json").stat().st_mtime_ns == mtime
    # the statistics are read verified: an LM head that no longer matches its hash is refused
    from linguistic_collapse.core.errors import UserError
    from linguistic_collapse.nc.stats_file import read_stats
    from safetensors.torch import save_file

    stats_path = tmp_path / "stats" / "local--gpt2" / "stats.safetensors"
    tensors, meta = read_stats(stats_path)
    tensors["lm_head"][0, 0] += 1.0
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(stats_path), metadata=meta)
    (tmp_path / "metrics" / "local--gpt2.json").unlink()
    with pytest.raises(UserError, match="lm_head_sha256"):
        measure_pretrained(models[:1], texts[0], texts[1], tmp_path, context_len=CTX,
                           batch_size=4, max_train_blocks=12)


def test_measure_pretrained_uses_the_one_refresh_step(saved, texts, tmp_path, monkeypatch):
    """Pretrained models go through linguistic_collapse.pipeline.refresh: a current row is returned without
    loading the model; otherwise the model is hashed once and its stats are reused exactly when
    they are of the same weights and token blocks (whatever the settings' texts say), and
    measured again when the measure definitions change, the stats file hashed once."""
    import linguistic_collapse.lm.identity
    import linguistic_collapse.pipeline.pretrained as pre
    import linguistic_collapse.pipeline.refresh
    from linguistic_collapse.core.provenance import sha256_file

    models, stats = [(str(saved["gpt2"][0]), None)], tmp_path / "stats" / "local--gpt2" / "stats.safetensors"
    metrics = tmp_path / "metrics" / "local--gpt2.json"

    def run(train=texts[0], caps=8):
        return pre.measure_pretrained(models, train, texts[1], tmp_path, context_len=CTX,
                                      batch_size=4, max_train_blocks=caps)[0]

    hashes = []
    original = linguistic_collapse.lm.identity.state_dict_sha256
    for module in (pre, linguistic_collapse.lm.identity):
        monkeypatch.setattr(module, "state_dict_sha256", lambda m: hashes.append(1) or original(m))
    first = run()
    assert len(hashes) == 1 and first["collect_seconds"] > 0  # hashed once, used twice
    stamp = stats.stat().st_mtime_ns
    with monkeypatch.context() as m:  # current: the model is never loaded
        m.setattr(pre, "load_causal_lm", lambda *a, **k: pytest.fail("model loaded"))
        assert run() == first
    # other texts whose first 8 blocks are the same: same stats, a new row of the new settings
    longer = [*texts[0], *texts[0][:5]]
    again = run(train=longer)
    assert stats.stat().st_mtime_ns == stamp and again["collect_seconds"] is None
    assert again["settings"]["train_texts_sha256"] != first["settings"]["train_texts_sha256"]
    assert again["nc1_cdnv"] == first["nc1_cdnv"] and read_json(metrics) == again
    # new measure definitions: measured again from the same stats, hashed once for the check
    # that finds the row stale and for the measure step
    monkeypatch.setattr(linguistic_collapse.pipeline.refresh, "MEASURE_VERSION", "changed")
    hashed = []
    for module in (linguistic_collapse.pipeline.refresh, pre):
        monkeypatch.setattr(module, "sha256_file", lambda path: hashed.append(path) or sha256_file(path),
                            raising=False)
    remeasured = run(train=longer)
    assert remeasured["measure_version"] == "changed" and stats.stat().st_mtime_ns == stamp
    assert hashed == [stats]
    # another cap: other blocks, collected again
    fewer = run(train=longer, caps=6)
    assert fewer["train_blocks"] == 6 and stats.stat().st_mtime_ns != stamp
    assert load_stats_metadata(stats)["pass1_blocks"] == "6"


def test_measure_pretrained_user_errors(saved, texts, tmp_path, tokenizers):
    from linguistic_collapse.pipeline.pretrained import measure_pretrained

    folder = str(saved["opt"][0])
    with pytest.raises(UserError, match="exceeds"):
        measure_pretrained([(folder, None)], texts[0], texts[1], tmp_path, context_len=128)
    with pytest.raises(UserError, match="listed twice"):
        measure_pretrained([(folder, None)] * 2, texts[0], texts[1], tmp_path, context_len=CTX)
    bare = tmp_path / "bare"
    saved["opt"][1].save_pretrained(bare)
    with pytest.raises(UserError, match="no tokenizer saved"):
        measure_pretrained([(str(bare), None)], texts[0], texts[1], tmp_path, context_len=CTX)
    wrong = tmp_path / "wrong"  # a model saved with a larger tokenizer than its head
    saved["gpt_neox"][1].save_pretrained(wrong)  # tokenizer b (280 tokens)
    tokenizers["a"].save_pretrained(wrong)  # 300 tokens
    with pytest.raises(UserError, match="does not belong to the model"):
        measure_pretrained([(str(wrong), None)], texts[0], texts[1], tmp_path, context_len=CTX)


def test_shell_model_argument():
    from linguistic_collapse.pipeline.pretrained import (
        model_slug,
        parse_model_arg,
        pythia_checkpoints,
    )

    assert parse_model_arg("EleutherAI/pythia-70m@step1000") == ("EleutherAI/pythia-70m", "step1000")
    assert parse_model_arg("gpt2") == ("gpt2", None)
    assert model_slug("EleutherAI/pythia-70m", "step1000") == "EleutherAI--pythia-70m@step1000"
    assert pythia_checkpoints("EleutherAI/pythia-160m", [0, 512]) == [
        ("EleutherAI/pythia-160m", "step0"), ("EleutherAI/pythia-160m", "step512")]


def test_shell_command(saved, tmp_path, capsys, monkeypatch):
    from linguistic_collapse.__main__ import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["pretrained", "--model", str(saved["opt"][0]), "--corpus", "generated", "--max-stories", "40",
               "--out", str(tmp_path), "--context-len", str(CTX), "--max-train-blocks", "8"])
    assert rc == 0
    assert "local--opt: n_params" in capsys.readouterr().out
    assert (tmp_path / "metrics" / "local--opt.json").is_file()
    assert main(["pretrained", "--model", "gpt2@main", "--corpus", "generated", "--max-stories", "40",
                 "--out", str(tmp_path)]) == 2  # offline: one line, exit status 2


def test_uncached_hub_model_refused_before_any_work(saved, texts, tmp_path, monkeypatch):
    from linguistic_collapse.pipeline.pretrained import measure_pretrained

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models = [(str(saved["gpt2"][0]), None), ("EleutherAI/pythia-70m", "step1000")]
    with pytest.raises(UserError, match="'EleutherAI/pythia-70m' at revision 'step1000' is not"):
        measure_pretrained(models, texts[0], texts[1], tmp_path, context_len=CTX)
    assert not (tmp_path / "metrics").exists()
