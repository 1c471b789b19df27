"""The statistics passes against plain implementations of paper section 4's definitions."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib import collect
from lib.collect import (
    PassInterrupted,
    accumulate_sq_dev,
    accumulate_sums,
    check_means,
    check_stats_for_model,
    check_tokenizer_size,
    class_means,
    collect_model_stats,
    collect_pass,
    load_stats,
    load_stats_metadata,
    means_hash,
    merge_stats,
    ncc_agreement,
    partial_path,
)
from lib.model import build_model, final_features, gpt_neo_config, lm_head_weight

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


def _plain_pass1(x, y):
    one_hot = F.one_hot(y, V).double()  # (N, V)
    return one_hot.sum(0).long(), one_hot.T @ x  # (V,), (V, D)


def _plain_sq_dev(x, y, counts, sums):
    sq = torch.zeros(V, dtype=torch.float64)
    for c in range(V):
        if counts[c]:
            sq[c] = ((x[y == c] - sums[c] / counts[c]) ** 2).sum()
    return sq


def _plain_pass3(x, y, W, counts, sums):
    valid = torch.nonzero(counts > 0).squeeze(1)  # (K,)
    mu = sums[valid] / counts[valid, None]  # (K, D)
    lm = valid[(x @ W[valid].double().T).argmax(1)]
    ncc = valid[torch.cdist(x, mu).argmin(1)]
    val_counts = torch.zeros(V, dtype=torch.long)
    val_agree = torch.zeros(V, dtype=torch.long)
    for i in range(len(y)):
        val_counts[y[i]] += 1
        val_agree[y[i]] += int(lm[i] == ncc[i])
    return val_counts, val_agree


def _full_run(model, blocks, out, **kw):
    train, val = blocks
    return load_stats(collect_model_stats(model, train, val, out, progress=False, **kw))


# ---------------------------------------------------------------------------------------------
# Accumulators.


def test_accumulate_sums_matches_one_hot():
    g = torch.Generator().manual_seed(0)
    counts, sums = torch.zeros(7, dtype=torch.long), torch.zeros(7, 3, dtype=torch.float64)
    xs, ys = [], []
    for n in (5, 9):  # two batches accumulate
        x, y = torch.randn(n, 3, generator=g), torch.randint(0, 5, (n,), generator=g)
        accumulate_sums(x, y, counts, sums)
        xs.append(x)
        ys.append(y)
    one_hot = F.one_hot(torch.cat(ys), 7).double()  # (14, 7)
    assert torch.equal(counts, one_hot.sum(0).long())
    torch.testing.assert_close(sums, one_hot.T @ torch.cat(xs).double(), **TIGHT)
    assert counts[5:].sum() == 0


def test_accumulate_sq_dev_matches_definition():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 4, generator=g), torch.randint(0, 3, (20,), generator=g)
    means = torch.randn(3, 4, generator=g, dtype=torch.float64)
    sq_dev = torch.zeros(3, dtype=torch.float64)
    accumulate_sq_dev(x, y, means, sq_dev)
    plain = torch.tensor([sum(float(((x[i].double() - means[c]) ** 2).sum())
                              for i in range(20) if y[i] == c) for c in range(3)],
                         dtype=torch.float64)
    torch.testing.assert_close(sq_dev, plain, **TIGHT)


def test_ncc_agreement_chunks_match_plain():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(300, D, generator=g), torch.randint(0, V, (300,), generator=g)
    counts = torch.randint(0, 3, (V,), generator=g)  # about a third of the classes unseen
    scale = torch.rand(V, 1, generator=g, dtype=torch.float64) * 3  # unequal mean norms
    means = torch.randn(V, D, generator=g, dtype=torch.float64) * scale  # (V, D)
    W = (means + 0.5 * torch.randn(V, D, generator=g, dtype=torch.float64)).float()
    sums, valid = means * counts[:, None], torch.nonzero(counts > 0).squeeze(1)
    for chunk in (1, 7, 4096):  # tiles of one class, of a few, and all at once
        vc, va = torch.zeros(V, dtype=torch.long), torch.zeros(V, dtype=torch.long)
        ncc_agreement(x, y, W, class_means(counts, sums)[valid], valid, vc, va, chunk=chunk)
        want = _plain_pass3(x.double(), y, W, counts, sums)
        assert torch.equal(vc, want[0]) and torch.equal(va, want[1])
    assert 0 < va.sum() < vc.sum() == 300


def test_nan_features_refused(model, blocks, tmp_path):
    x = torch.ones(4, 3)
    x[2, 1] = torch.nan
    with pytest.raises(ValueError, match="NaN"):
        accumulate_sums(x, torch.zeros(4, dtype=torch.long), torch.zeros(2, dtype=torch.long),
                        torch.zeros(2, 3, dtype=torch.float64))
    broken = build_model(gpt_neo_config(1, D, V, T), seed=0).eval()
    with torch.no_grad():
        broken.transformer.ln_f.weight.fill_(torch.nan)
    with pytest.raises(ValueError, match="NaN.*model/precision"):
        collect_pass(broken, blocks[0], 1, tmp_path / "s.safetensors", progress=False)


# ---------------------------------------------------------------------------------------------
# Passes against plain computations from all features at once.


@pytest.mark.parametrize("batch_size", [1, 3, 12])
def test_streaming_equals_one_shot(model, blocks, tmp_path, batch_size):
    out = collect_pass(model, blocks[0], 1, tmp_path / "s.safetensors", batch_size=batch_size,
                       progress=False)
    stats = load_stats(out)
    counts, sums = _plain_pass1(*_pairs(model, blocks[0]))
    assert torch.equal(stats["counts"], counts)
    # float32 features of other batch shapes may differ in the last bits on some BLAS builds
    torch.testing.assert_close(stats["sums"], sums, rtol=1e-6, atol=1e-9)


def test_all_passes_match_definitions(model, blocks, tmp_path):
    stats = _full_run(model, blocks, tmp_path / "stats.safetensors", batch_size=5)
    x, y = _pairs(model, blocks[0])
    counts, sums = _plain_pass1(x, y)
    torch.testing.assert_close(stats["sums"], sums, **TIGHT)
    torch.testing.assert_close(stats["sq_dev"], _plain_sq_dev(x, y, counts, sums), **TIGHT)
    W = lm_head_weight(model).detach()
    val_counts, val_agree = _plain_pass3(*_pairs(model, blocks[1]), W, counts, sums)
    assert torch.equal(stats["val_counts"], val_counts)
    assert torch.equal(stats["val_agree"], val_agree)
    assert 0 < val_agree.sum() < val_counts.sum()  # a random model: partial agreement
    assert torch.equal(stats["lm_head"], W)


def test_metadata(model, blocks, tmp_path):
    out = tmp_path / "stats.safetensors"
    stats = _full_run(model, blocks, out)
    meta = load_stats_metadata(out)
    assert meta["vocab_size"] == str(V) and meta["width"] == str(D)
    assert meta["pass1_blocks"] == meta["pass2_blocks"] == str(N_TRAIN)
    assert meta["pass1_tokens"] == str(N_TRAIN * (T - 1))
    assert meta["pass3_tokens"] == str(N_VAL * (T - 1))
    assert meta["means_hash"] == means_hash(class_means(stats["counts"], stats["sums"]))
    assert meta["format_version"] == collect.FORMAT_VERSION
    assert collect.is_finished(out) and not partial_path(out).exists()


# ---------------------------------------------------------------------------------------------
# Shards and resumption.


def test_merged_shards_equal_one_pass(model, blocks, tmp_path):
    train, val = blocks
    whole = _full_run(model, blocks, tmp_path / "whole.safetensors")
    base = None
    for p, split in ((1, train), (2, train), (3, val)):
        parts = [collect_model_stats(model, split if p < 3 else None, split if p == 3 else None,
                                     tmp_path / f"p{p}_{i}.safetensors", passes=(p,),
                                     shard=(i, 3), base=base, progress=False)
                 for i in (2, 0, 1)]  # any order
        base = merge_stats(parts, tmp_path / f"stage{p}.safetensors")
    merged = load_stats(base)
    for key in ("counts", "val_counts", "val_agree"):
        assert torch.equal(merged[key], whole[key]), key
    for key in ("sums", "sq_dev"):
        torch.testing.assert_close(merged[key], whole[key], **TIGHT)
    meta = load_stats_metadata(base)
    assert collect.is_finished(base) and meta["pass1_blocks"] == str(N_TRAIN)
    assert meta["pass3_tokens"] == str(N_VAL * (T - 1))


def test_merge_refuses_missing_or_duplicate_shards(model, blocks, tmp_path):
    parts = [collect_pass(model, blocks[0], 1, tmp_path / f"p{i}.safetensors", shard=(i, 3),
                          progress=False) for i in range(3)]
    with pytest.raises(ValueError, match="each once"):
        merge_stats(parts[:2], tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="each once"):
        merge_stats([parts[0], parts[0], parts[1]], tmp_path / "m.safetensors")


@pytest.mark.parametrize("pass_no", [1, 2, 3])
def test_killed_pass_resumes_bit_for_bit(model, blocks, tmp_path, pass_no):
    base = collect_pass(model, blocks[0], 1, tmp_path / "base.safetensors", progress=False)
    split = blocks[1] if pass_no == 3 else blocks[0]
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
    collect_pass(model, blocks[0], 1, out, batch_size=2, progress=False)
    with pytest.raises(PassInterrupted):
        collect_pass(model, blocks[0], 2, out, base=out, batch_size=2, checkpoint_every=1,
                     stop_after_batches=4, progress=False)
    resumed = _full_run(model, blocks, out, batch_size=2)
    for key in clean:
        assert torch.equal(resumed[key], clean[key]), key


def test_resume_with_other_settings_refused(model, blocks, tmp_path):
    out = tmp_path / "s.safetensors"
    with pytest.raises(PassInterrupted):
        collect_pass(model, blocks[0], 1, out, batch_size=2, checkpoint_every=1,
                     stop_after_batches=2, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        collect_pass(model, blocks[0], 1, out, batch_size=3, progress=False)


# ---------------------------------------------------------------------------------------------
# Pass 2 and 3 are tied to the finished pass-1 means.


def test_pass2_with_stale_means_refused(model, blocks, tmp_path):
    train, other = blocks[0], (blocks[0] + 1) % 40
    a = collect_pass(model, train, 1, tmp_path / "a.safetensors", progress=False)
    b = collect_pass(model, other, 1, tmp_path / "b.safetensors", progress=False)
    out = tmp_path / "p2.safetensors"
    with pytest.raises(PassInterrupted):  # working state made with means A
        collect_pass(model, train, 2, out, base=a, batch_size=2, checkpoint_every=1,
                     stop_after_batches=2, progress=False)
    with pytest.raises(ValueError, match="pass 2 must use the finished pass-1 means: hash"):
        collect_pass(model, other, 2, out, base=b, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="same blocks"):  # blocks other than pass 1's
        collect_pass(model, train[:6], 2, tmp_path / "x.safetensors", base=a, progress=False)
    with pytest.raises(ValueError, match="pass 2 must use the finished pass-1 means: hash"):
        check_means(class_means(*[load_stats(b)[k] for k in ("counts", "sums")]),
                    load_stats_metadata(a)["means_hash"])


def test_pass2_needs_finished_pass1(model, blocks, tmp_path):
    shard = collect_pass(model, blocks[0], 1, tmp_path / "p1.safetensors", shard=(0, 2),
                         progress=False)
    with pytest.raises(ValueError, match="finished pass-1 means"):
        collect_pass(model, blocks[0], 2, tmp_path / "p2.safetensors", base=shard,
                     progress=False)
    with pytest.raises(ValueError, match="needs the stats file"):
        collect_pass(model, blocks[0], 2, tmp_path / "p2.safetensors", progress=False)


def test_merge_refuses_shards_with_other_means(model, blocks, tmp_path):
    train, other = blocks[0], (blocks[0] + 1) % 40
    a = collect_pass(model, train, 1, tmp_path / "a.safetensors", progress=False)
    b = collect_pass(model, other, 1, tmp_path / "b.safetensors", progress=False)
    p0 = collect_pass(model, train, 2, tmp_path / "p0.safetensors", base=a, shard=(0, 2),
                      progress=False)
    p1 = collect_pass(model, other, 2, tmp_path / "p1.safetensors", base=b,
                      shard=(1, 2), progress=False)
    with pytest.raises(ValueError, match="different pass-1 means: hash"):
        merge_stats([p0, p1], tmp_path / "m.safetensors")


# ---------------------------------------------------------------------------------------------
# Bad input.


def _tokenizer(n_tokens: int):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {f"t{i}": i for i in range(n_tokens)}
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="t0")))


def test_vocabulary_mismatch_refused(model, blocks, tmp_path):
    train, val = blocks
    bad = train.copy()
    bad[3, 5] = V
    with pytest.raises(ValueError, match=f"at least {V + 1} tokens.*LM head has {V} rows"):
        collect_pass(model, bad, 1, tmp_path / "s.safetensors", progress=False)
    with pytest.raises(ValueError, match=f"tokenizer has 60 tokens but .* LM head has {V} rows"):
        collect_model_stats(model, train, val, tmp_path / "s.safetensors",
                            tokenizer=_tokenizer(60), progress=False)
    check_tokenizer_size(V, V)  # equal sizes are fine


@pytest.mark.parametrize("shape", [(0, T), (4, 1)])
def test_empty_split_refused(model, tmp_path, shape):
    with pytest.raises(ValueError, match="empty"):
        collect_pass(model, np.zeros(shape, dtype=np.int32), 1, tmp_path / "s.safetensors",
                     progress=False)


def test_missing_blocks_file(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no train blocks"):
        collect_pass(model, tmp_path / "nope.npy", 1, tmp_path / "s.safetensors", progress=False)


def test_stats_from_other_model_refused(model, other_model, blocks, tmp_path):
    out = collect_pass(model, blocks[0], 1, tmp_path / "s.safetensors", progress=False)
    check_stats_for_model(out, model)
    with pytest.raises(ValueError, match="another LM head"):
        check_stats_for_model(out, other_model)
    wider = build_model(gpt_neo_config(1, 32, V, T)).eval()
    with pytest.raises(ValueError, match="width 16 != 32"):
        check_stats_for_model(out, wider)
    with pytest.raises(ValueError, match="another model"):  # nor resumed with another model
        collect_pass(other_model, blocks[0], 2, tmp_path / "p2.safetensors", base=out,
                     progress=False)


def test_finished_file_is_noop(model, blocks, tmp_path):
    out = tmp_path / "stats.safetensors"
    _full_run(model, blocks, out)
    before = out.stat().st_mtime_ns
    # the model is not even loaded: a path that does not exist is never opened
    assert collect_model_stats(tmp_path / "no-such-model", None, None, out) == out
    assert out.stat().st_mtime_ns == before


# ---------------------------------------------------------------------------------------------
# Shell interface.


def _cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib")
    collect.register_cli(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_on_saved_model_dir(model, blocks, tmp_path, capsys):
    ckpt = tmp_path / "checkpoint-1"
    model.save_pretrained(ckpt)
    _tokenizer(V).save_pretrained(ckpt)
    np.save(tmp_path / "train.npy", blocks[0])
    np.save(tmp_path / "val.npy", blocks[1])
    out = tmp_path / "stats.safetensors"
    common = ["--train-blocks", str(tmp_path / "train.npy"), "--no-progress"]
    _cli(["collect", str(ckpt), *common, "--val-blocks", str(tmp_path / "val.npy"),
          "--out", str(out), "--batch-size", "4"])
    assert str(out) in capsys.readouterr().out
    assert collect.is_finished(out)
    assert load_stats_metadata(out)["model"] == str(ckpt.resolve())
    for i in range(2):
        _cli(["collect", str(ckpt), *common, "--out", str(tmp_path / f"p{i}.safetensors"),
              "--pass", "1", "--shard", f"{i}/2"])
    merged = tmp_path / "m.safetensors"
    _cli(["merge-stats", str(merged), str(tmp_path / "p0.safetensors"),
          str(tmp_path / "p1.safetensors")])
    assert torch.equal(load_stats(merged)["counts"], load_stats(out)["counts"])
    with pytest.raises(SystemExit):
        _cli(["collect", str(ckpt), "--out", str(out), "--shard", "2/2"])
