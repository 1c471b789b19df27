"""The statistics driver (linguistic_collapse.pipeline.collect) against plain implementations of paper section 4."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.provenance import sha256_array, sha256_file, tokenizer_sha256
from linguistic_collapse.lm import identity
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.lm.head import final_features, lm_head_weight
from linguistic_collapse.nc import stats_file
from linguistic_collapse.nc.merge import merge_stats
from linguistic_collapse.nc.stats_file import (
    load_stats,
    load_stats_metadata,
    partial_path,
    read_stats,
)
from linguistic_collapse.pipeline import collect_cli, stats_cli
from linguistic_collapse.pipeline.collect import PassInterrupted, collect_model_stats, collect_pass
from linguistic_collapse.pipeline.freshness import stale_reasons
from test_accumulate import _plain_agreement, plain_two_pass  # tests/ is on sys.path

V, D, T = 50, 16, 16
N_TRAIN, N_VAL = 12, 6
TIGHT = {"rtol": 1e-12, "atol": 1e-12}  # float64 sums added in another order: last bits only


@pytest.fixture(scope="module")
def model():
    return build_model(gpt_neo_config(1, D, V, T), seed=0).eval()


@pytest.fixture(scope="module")
def other_model():
    return build_model(gpt_neo_config(1, D, V, T), seed=1).eval()


@pytest.fixture(scope="module")
def blocks():
    """Train and validation blocks over tokens 0..39 only: classes 40..49 never occur."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 40, (N_TRAIN, T)).astype(np.int32)  # (12, 16)
    val = rng.integers(0, 45, (N_VAL, T)).astype(np.int32)  # (6, 16): some unseen classes
    return train, val


def _pairs(model, blocks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """All (feature, next token) pairs in one forward pass: x (N, D) float64, y (N,)."""
    ids = torch.from_numpy(blocks.astype(np.int64))
    with torch.no_grad():
        feats = final_features(model, ids)  # (B, T, D)
    return feats[:, :-1].reshape(-1, D).double(), ids[:, 1:].reshape(-1)


def _full_run(model, blocks, out, **kw):
    train, val = blocks
    return load_stats(collect_model_stats(model, train, val, out, progress=False, **kw))


def _tokenizer(n_tokens: int, prefix: str = "t"):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {f"{prefix}{i}": i for i in range(n_tokens)}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(vocab, unk_token=f"{prefix}0")))


# ---------------------------------------------------------------------------------------------
# Passes against plain computations from all features at once.


@pytest.mark.parametrize("batch_size", [1, 5, 12])
def test_passes_match_definitions(model, blocks, tmp_path, batch_size):
    stats = _full_run(model, blocks, tmp_path / "stats.safetensors", batch_size=batch_size)
    x, y = _pairs(model, blocks[0])
    counts, sums, sq_dev = plain_two_pass(x, y, V)
    assert torch.equal(stats["counts"], counts)
    # float32 features of other batch shapes may differ in the last bits on some BLAS builds
    torch.testing.assert_close(stats["sums"], sums, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(stats["sq_dev"], sq_dev, rtol=1e-6, atol=1e-9)
    W = lm_head_weight(model).detach()
    val_counts, val_agree = _plain_agreement(*_pairs(model, blocks[1]), W, counts, sums)
    assert torch.equal(stats["val_counts"], val_counts)
    assert torch.equal(stats["val_agree"], val_agree)
    assert 0 < val_agree.sum() < val_counts.sum()  # a random model: partial agreement
    assert torch.equal(stats["lm_head"], W)


def test_metadata_and_provenance(model, blocks, tmp_path):
    out = tmp_path / "stats.safetensors"
    _full_run(model, blocks, out)
    tensors, meta = read_stats(out)  # verifies means_hash and lm_head_sha256
    assert meta["vocab_size"] == str(V) and meta["width"] == str(D)
    assert meta["pass1_blocks"] == str(N_TRAIN) and meta["pass2_blocks"] == str(N_VAL)
    assert meta["pass1_tokens"] == str(N_TRAIN * (T - 1))
    assert meta["pass2_tokens"] == str(N_VAL * (T - 1))
    assert meta["format_version"] == stats_file.FORMAT_VERSION == "4"
    assert meta["train_blocks_sha256"] == sha256_array(blocks[0])
    assert meta["val_blocks_sha256"] == sha256_array(blocks[1])
    assert meta["state_dict_sha256"] == identity.state_dict_sha256(model)  # in memory: its own key
    assert "weights_sha256" not in meta  # that key is the hash of saved weight files only
    assert stale_reasons(out) == [] and not partial_path(out).exists()
    assert stale_reasons(out, lm_head_sha256=meta["lm_head_sha256"],
                         train_blocks_sha256=sha256_array(blocks[0])) == []
    capped = tmp_path / "capped.safetensors"
    _full_run(model, blocks, capped, max_train_blocks=5)  # the hash is of the whole array
    meta = load_stats_metadata(capped)
    assert meta["pass1_blocks"] == "5" and meta["train_blocks_sha256"] == sha256_array(blocks[0])


# ---------------------------------------------------------------------------------------------
# Shards and resumption.


def test_merged_shards_equal_one_pass(model, blocks, tmp_path):
    train, val = blocks
    whole = _full_run(model, blocks, tmp_path / "whole.safetensors")
    base = None
    for p, (tr, va) in ((1, (train, None)), (2, (None, val))):
        parts = [collect_model_stats(model, tr, va, tmp_path / f"p{p}_{i}.safetensors",
                                     passes=(p,), shard=(i, 3), base=base, progress=False)
                 for i in (2, 0, 1)]  # any order
        base = merge_stats(parts, tmp_path / f"stage{p}.safetensors")
    merged, meta = read_stats(base)
    for key in ("counts", "val_counts", "val_agree", "lm_head"):
        assert torch.equal(merged[key], whole[key]), key
    for key in ("sums", "sq_dev"):
        torch.testing.assert_close(merged[key], whole[key], **TIGHT)
    assert stale_reasons(base) == [] and meta["pass1_blocks"] == str(N_TRAIN)
    assert meta["pass2_tokens"] == str(N_VAL * (T - 1))
    assert meta["train_blocks_sha256"] == sha256_array(train)
    assert meta["val_blocks_sha256"] == sha256_array(val)


@pytest.mark.parametrize("pass_no", [1, 2])
def test_killed_pass_resumes_bit_for_bit(model, blocks, tmp_path, pass_no):
    base = collect_pass(model, blocks[0], 1, tmp_path / "base.safetensors", progress=False)
    split = blocks[pass_no - 1]
    kw = {"base": base, "batch_size": 2, "checkpoint_every": 2, "progress": False}
    clean = load_stats(collect_pass(model, split, pass_no, tmp_path / "clean.safetensors", **kw))
    out = tmp_path / "killed.safetensors"
    with pytest.raises(PassInterrupted):  # batch 3 is lost, batches 1-2 are checkpointed
        collect_pass(model, split, pass_no, out, stop_after_batches=3, **kw)
    assert partial_path(out).exists() and not out.exists()
    assert load_stats_metadata(partial_path(out))["next_block"] == "4"
    resumed = load_stats(collect_pass(model, split, pass_no, out, **kw))
    assert resumed.keys() == clean.keys()
    for key in clean:
        assert torch.equal(resumed[key], clean[key]), key
    assert not partial_path(out).exists()


def test_model_stats_resume_after_kill_between_and_within_passes(model, blocks, tmp_path):
    clean = _full_run(model, blocks, tmp_path / "clean.safetensors", batch_size=2)
    out = tmp_path / "stats.safetensors"
    with pytest.raises(PassInterrupted):  # killed within pass 1
        collect_pass(model, blocks[0], 1, out, batch_size=2, checkpoint_every=1,
                     stop_after_batches=4, progress=False)
    collect_pass(model, blocks[0], 1, out, batch_size=2, progress=False)
    with pytest.raises(PassInterrupted):  # then within pass 2
        collect_pass(model, blocks[1], 2, out, base=out, batch_size=2, checkpoint_every=1,
                     stop_after_batches=2, progress=False)
    resumed = _full_run(model, blocks, out, batch_size=2)
    for key in clean:
        assert torch.equal(resumed[key], clean[key]), key


def test_resume_with_other_settings_refused(model, blocks, tmp_path):
    out = tmp_path / "s.safetensors"
    with pytest.raises(PassInterrupted):
        collect_pass(model, blocks[0], 1, out, batch_size=2, checkpoint_every=1,
                     stop_after_batches=2, progress=False)
    with pytest.raises(UserError, match="batch_size"):
        collect_pass(model, blocks[0], 1, out, batch_size=3, progress=False)


# ---------------------------------------------------------------------------------------------
# Pass 2 is tied to the finished pass-1 means.


def test_pass2_with_stale_means_refused(model, blocks, tmp_path):
    train, other = blocks[0], (blocks[0] + 1) % 40
    a = collect_pass(model, train, 1, tmp_path / "a.safetensors", progress=False)
    b = collect_pass(model, other, 1, tmp_path / "b.safetensors", progress=False)
    out = tmp_path / "p2.safetensors"
    with pytest.raises(PassInterrupted):  # working state made with means A
        collect_pass(model, blocks[1], 2, out, base=a, batch_size=2, checkpoint_every=1,
                     stop_after_batches=2, progress=False)
    with pytest.raises(UserError, match="pass 2 must use the finished pass-1 means: hash"):
        collect_pass(model, blocks[1], 2, out, base=b, batch_size=2, progress=False)
    done = collect_pass(model, blocks[1], 2, tmp_path / "done.safetensors", base=a,
                        progress=False)
    with pytest.raises(UserError, match="pass 2 must use the finished pass-1 means: hash"):
        collect_pass(model, blocks[1], 2, done, base=b, progress=False)  # finished, other means


def test_pass2_needs_finished_pass1(model, blocks, tmp_path):
    shard = collect_pass(model, blocks[0], 1, tmp_path / "p1.safetensors", shard=(0, 2),
                         progress=False)
    with pytest.raises(UserError, match="finished pass-1 means"):
        collect_pass(model, blocks[1], 2, tmp_path / "p2.safetensors", base=shard,
                     progress=False)
    with pytest.raises(UserError, match="needs the stats file of pass 1"):
        collect_pass(model, blocks[1], 2, tmp_path / "p2.safetensors", progress=False)


def test_merge_refuses_shards_with_other_means(model, blocks, tmp_path):
    train, other = blocks[0], (blocks[0] + 1) % 40
    a = collect_pass(model, train, 1, tmp_path / "a.safetensors", progress=False)
    b = collect_pass(model, other, 1, tmp_path / "b.safetensors", progress=False)
    p0 = collect_pass(model, blocks[1], 2, tmp_path / "p0.safetensors", base=a, shard=(0, 2),
                      progress=False)
    p1 = collect_pass(model, blocks[1], 2, tmp_path / "p1.safetensors", base=b, shard=(1, 2),
                      progress=False)
    with pytest.raises(UserError, match="different pass-1 means: hash"):
        merge_stats([p0, p1], tmp_path / "m.safetensors")


# ---------------------------------------------------------------------------------------------
# Bad input, checked before any pass runs.


def test_vocabulary_mismatch_refused(model, blocks, tmp_path):
    train, val = blocks
    bad = train.copy()
    bad[3, 5] = V
    with pytest.raises(UserError, match=f"at least {V + 1} tokens.*LM head has {V} rows"):
        collect_pass(model, bad, 1, tmp_path / "s.safetensors", progress=False)
    with pytest.raises(UserError, match=f"tokenizer has 60 tokens but .* LM head has {V} rows"):
        collect_model_stats(model, train, val, tmp_path / "s.safetensors",
                            tokenizer=_tokenizer(60), progress=False)


@pytest.mark.parametrize("shape", [(0, T), (4, 1)])
def test_empty_split_refused(model, tmp_path, shape):
    with pytest.raises(UserError, match="empty"):
        collect_pass(model, np.zeros(shape, dtype=np.int32), 1, tmp_path / "s.safetensors",
                     progress=False)


def test_inputs_checked_before_any_pass(model, blocks, tmp_path):
    out = tmp_path / "s.safetensors"
    with pytest.raises(UserError, match=r"no validation blocks at .*nope\.npy"):
        collect_model_stats(model, blocks[0], tmp_path / "nope.npy", out, progress=False)
    bad_val = blocks[1].copy()
    bad_val[0, 0] = V + 3
    with pytest.raises(UserError, match="validation blocks contain token id"):
        collect_model_stats(model, blocks[0], bad_val, out, progress=False)
    with pytest.raises(UserError, match="pass 2 needs the validation blocks"):
        collect_model_stats(model, blocks[0], None, out, progress=False)
    assert not out.exists() and not partial_path(out).exists()  # pass 1 never started


def test_stats_from_other_model_refused(model, other_model, blocks, tmp_path):
    out = collect_pass(model, blocks[0], 1, tmp_path / "s.safetensors", progress=False)
    with pytest.raises(UserError, match="another model"):  # not continued with another model
        collect_pass(other_model, blocks[1], 2, tmp_path / "p2.safetensors", base=out,
                     progress=False)


def test_finished_file_reused_only_for_same_model_and_blocks(model, other_model, blocks,
                                                             tmp_path):
    out = tmp_path / "stats.safetensors"
    _full_run(model, blocks, out)
    before = out.stat().st_mtime_ns
    assert collect_model_stats(model, *blocks, out, progress=False) == out  # reused as is
    assert out.stat().st_mtime_ns == before
    with pytest.raises(UserError, match=r"stats\.safetensors belongs to another model: its "
                                        "lm_head_sha256"):
        collect_model_stats(other_model, *blocks, out, progress=False)
    wider = build_model(gpt_neo_config(1, 32, V, T)).eval()
    with pytest.raises(UserError, match="belongs to another model: its width is '16'"):
        collect_model_stats(wider, *blocks, out, progress=False)
    with pytest.raises(UserError, match="another selection"):  # same blocks, another cap
        collect_model_stats(model, *blocks, out, max_train_blocks=5, progress=False)
    other_train = (blocks[0] + 1) % 40
    with pytest.raises(UserError, match=r"other inputs: its train_blocks_sha256 .*delete"):
        collect_model_stats(model, other_train, blocks[1], out, progress=False)
    assert out.stat().st_mtime_ns == before


def _saved_checkpoint(model, tmp_path, tokenizer) -> object:
    ckpt = tmp_path / "checkpoint-1"
    model.save_pretrained(ckpt)
    tokenizer.save_pretrained(ckpt)
    return ckpt


def test_identical_stats_have_identical_bytes_wherever_written(model, blocks, tmp_path):
    """Metadata names the model and tokenizer by content hash and relative path, not by where
    the output folder lies, so stats_sha256 is the same in two output folders."""
    files = []
    for where in ("a", "b/deeper"):
        root = tmp_path / where
        ckpt = _saved_checkpoint(model, root / "runs", _tokenizer(V))
        out = root / "stats" / "ck1" / "stats.safetensors"
        collect_model_stats(ckpt, blocks[0], blocks[1], out, batch_size=4, progress=False)
        meta = load_stats_metadata(out)
        assert meta["model"] == meta["tokenizer"] == "../../runs/checkpoint-1"
        files.append(out)
    # the same header (metadata and tensor entries) and the same tensor bytes; with headers
    # written in sorted order (linguistic_collapse.nc.stats_file) that makes the same file bytes
    (a, a_data), (b, b_data) = (_header_and_data(f) for f in files)
    assert a == b and a_data == b_data


def _header_and_data(path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def test_tokenizer_identity(model, blocks, tmp_path):
    ckpt = _saved_checkpoint(model, tmp_path, _tokenizer(V))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    np.save(corpus / "train.npy", blocks[0])
    np.save(corpus / "val.npy", blocks[1])
    other = _tokenizer(V, prefix="u")  # same size, other tokens
    (corpus / "manifest.json").write_text(json.dumps({"tokenizer_sha256":
                                                      tokenizer_sha256(other)}))
    out = tmp_path / "stats.safetensors"
    with pytest.raises(UserError, match="blocks were made with another tokenizer"):
        collect_model_stats(ckpt, corpus / "train.npy", corpus / "val.npy", out, progress=False)
    with pytest.raises(UserError, match="blocks were made with another tokenizer"):
        collect_model_stats(ckpt, *blocks, out, progress=False,
                            blocks_tokenizer_sha256=tokenizer_sha256(other))
    assert not out.exists()
    own = tokenizer_sha256(ckpt)
    (corpus / "manifest.json").write_text(json.dumps({"tokenizer_sha256": own}))
    collect_model_stats(ckpt, corpus / "train.npy", corpus / "val.npy", out, progress=False)
    meta = load_stats_metadata(out)
    assert meta["tokenizer_sha256"] == own
    assert meta["weights_sha256"] == sha256_file(ckpt / "model.safetensors")
    assert stale_reasons(out, tokenizer_sha256=own,
                         weights_sha256=sha256_file(ckpt / "model.safetensors")) == []


# ---------------------------------------------------------------------------------------------
# Shell interface.


def _cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m linguistic_collapse")
    sub = parser.add_subparsers(required=True)
    collect_cli.register_cli(sub)
    stats_cli.register_cli(sub)
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_on_saved_model_dir(model, blocks, tmp_path, capsys):
    ckpt = _saved_checkpoint(model, tmp_path, _tokenizer(V))
    np.save(tmp_path / "train.npy", blocks[0])
    np.save(tmp_path / "val.npy", blocks[1])
    out = tmp_path / "stats.safetensors"
    common = ["--train-blocks", str(tmp_path / "train.npy"), "--no-progress"]
    _cli(["collect", str(ckpt), *common, "--val-blocks", str(tmp_path / "val.npy"),
          "--out", str(out), "--batch-size", "4"])
    assert str(out) in capsys.readouterr().out
    assert stale_reasons(out) == []
    assert load_stats_metadata(out)["model"] == "checkpoint-1"  # relative to the stats' folder
    for i in range(2):
        _cli(["collect", str(ckpt), *common, "--out", str(tmp_path / f"p{i}.safetensors"),
              "--pass", "1", "--shard", f"{i}/2"])
    merged = tmp_path / "m.safetensors"
    _cli(["merge-stats", str(merged), str(tmp_path / "p0.safetensors"),
          str(tmp_path / "p1.safetensors")])
    assert torch.equal(load_stats(merged)["counts"], load_stats(out)["counts"])
    with pytest.raises(SystemExit):
        _cli(["collect", str(ckpt), "--out", str(out), "--shard", "2/2"])
    with pytest.raises(SystemExit):
        _cli(["collect", str(ckpt), "--out", str(out), "--pass", "3"])
