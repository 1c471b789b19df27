"""The stats.safetensors format (linguistic_collapse.nc.stats_file): verified reads, merging; the
pipeline's reading of what a file was made from (linguistic_collapse.pipeline.freshness) and its
overview table (linguistic_collapse.tables.sample_sizes)."""

from __future__ import annotations

import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.provenance import sha256_tensor
from linguistic_collapse.nc.accumulate import class_means, means_hash
from linguistic_collapse.nc.merge import merge_stats
from linguistic_collapse.nc.stats_file import (
    FORMAT_VERSION,
    load_stats,
    load_stats_metadata,
    read_stats,
    write_stats,
)
from linguistic_collapse.pipeline.freshness import stale_reasons
from linguistic_collapse.tables.sample_sizes import stats_overview
from safetensors.torch import save_file

V, D = 6, 3
HASHES = {"weights_sha256": "w" * 64, "train_blocks_sha256": "t" * 64,
          "val_blocks_sha256": "v" * 64, "tokenizer_sha256": "k" * 64}


def _tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    counts = torch.tensor([3, 0, 1, 5, 2, 4])
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    return {"counts": counts, "sums": torch.randn(V, D, generator=g, dtype=torch.float64),
            "sw": a.T @ a,
            "sq_dev": torch.rand(V, generator=g, dtype=torch.float64) * (counts > 1),
            "val_counts": torch.tensor([2, 1, 0, 3, 1, 1]),
            "val_agree": torch.tensor([1, 0, 0, 2, 1, 0]), "lm_head": torch.randn(V, D, generator=g)}


def _finished_meta(**extra: str) -> dict[str, str]:
    passes = {f"pass{p}_{k}": v for p in (1, 2) for k, v in
              (("blocks", "4"), ("tokens", "60"), ("shard", ""), ("split_sha", f"s{p}"))}
    return {"model": "m", "vocab_size": str(V), "width": str(D), **passes, **HASHES, **extra}


@pytest.fixture
def stats_file(tmp_path):
    return write_stats(tmp_path / "stats.safetensors", _tensors(), _finished_meta())


def test_write_then_read_verifies(stats_file):
    tensors, meta = read_stats(stats_file)
    want = _tensors()
    assert tensors.keys() == want.keys()
    assert all(torch.equal(tensors[k], want[k]) for k in want)
    assert meta["means_hash"] == means_hash(class_means(want["counts"], want["sums"]))
    assert meta["lm_head_sha256"] == sha256_tensor(want["lm_head"])
    assert meta["format_version"] == FORMAT_VERSION and stale_reasons(stats_file) == []


def test_read_refuses_missing_truncated_and_foreign_files(stats_file, tmp_path):
    with pytest.raises(UserError, match=r"no stats file at .*nope\.safetensors.*collect"):
        read_stats(tmp_path / "nope.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(stats_file.read_bytes()[:-40])
    with pytest.raises(UserError, match=r"cut\.safetensors is not a readable stats file"):
        read_stats(cut)
    text = tmp_path / "text.safetensors"
    text.write_text("not a tensor file")
    with pytest.raises(UserError, match=r"text\.safetensors is not a readable stats file"):
        read_stats(text)
    for err_path in (cut, text):  # one line each
        with pytest.raises(UserError) as err:
            read_stats(err_path)
        assert "\n" not in str(err.value)


def _resave(path, tensors, meta):
    save_file(tensors, str(path), metadata=meta)


def test_read_refuses_tampered_means_head_and_old_format(stats_file, tmp_path):
    tensors, meta = read_stats(stats_file)
    bad = tmp_path / "bad.safetensors"
    _resave(bad, {**tensors, "sums": tensors["sums"] + 1e-9}, meta)  # sums no longer match
    with pytest.raises(UserError, match=r"bad\.safetensors is inconsistent: its means_hash"):
        read_stats(bad)
    _resave(bad, {**tensors, "lm_head": tensors["lm_head"] * 2}, meta)
    with pytest.raises(UserError, match=r"bad\.safetensors is inconsistent: its lm_head_sha256"):
        read_stats(bad)
    _resave(bad, tensors, {**meta, "format_version": "1"})
    with pytest.raises(UserError, match="stats format '1'.*collect it again"):
        read_stats(bad)
    assert stale_reasons(bad)
    del tensors["val_agree"]
    _resave(bad, tensors, meta)
    with pytest.raises(UserError, match=r"lacks tensors \['val_agree'\]"):
        read_stats(bad)


def test_stale_reasons(stats_file, tmp_path):
    head = sha256_tensor(_tensors()["lm_head"])
    assert stale_reasons(stats_file) == []
    assert stale_reasons(stats_file, lm_head_sha256=head, **HASHES, pass1_blocks=4) == []
    assert stale_reasons(stats_file, pass1_blocks=400) == ["pass1_blocks 4 != current 400"]
    reasons = stale_reasons(stats_file, lm_head_sha256=head,
                            **{**HASHES, "train_blocks_sha256": "x" * 64,
                               "tokenizer_sha256": "y" * 64})
    assert len(reasons) == 2
    assert reasons[0].startswith("train_blocks_sha256") and reasons[1].startswith("tokenizer")
    assert stale_reasons(tmp_path / "none.safetensors") == [
        f"no stats file at {tmp_path / 'none.safetensors'}"]
    half = write_stats(tmp_path / "half.safetensors", _tensors(),
                       {k: v for k, v in _finished_meta().items() if not k.startswith("pass2")})
    assert stale_reasons(half)[0].startswith("unfinished")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 5)
    assert "not a readable stats file" in stale_reasons(tmp_path / "junk.safetensors")[0]


def _pass1_shard(tmp_path, i: int, n: int, x: torch.Tensor, y: torch.Tensor, **meta):
    """A pass-1 shard file from features x (m, D) float64 and labels y (m,), by definition."""
    counts = torch.bincount(y, minlength=V)
    sums = torch.zeros(V, D, dtype=torch.float64).index_add_(0, y, x)
    mu = class_means(counts, sums)
    sq = torch.zeros(V, dtype=torch.float64).index_add_(0, y, ((x - mu[y]) ** 2).sum(1))
    sw = (x - mu[y]).T @ (x - mu[y])  # (D, D)
    m = {"model": "m", "vocab_size": str(V), "width": str(D), **HASHES,
         "pass1_blocks": "1", "pass1_tokens": str(len(y)), "pass1_shard": f"{i}/{n}",
         "pass1_split_sha": "s", **meta}
    return write_stats(tmp_path / f"p{i}.safetensors", {"counts": counts, "sums": sums,
                       "sq_dev": sq, "sw": sw, "lm_head": torch.ones(V, D)}, m)


def test_merge_pass1_shards_by_chan(tmp_path):
    g = torch.Generator().manual_seed(3)
    y = torch.randint(0, V - 1, (90,), generator=g)
    x = torch.randn(90, D, generator=g, dtype=torch.float64) + 1e3
    parts = [_pass1_shard(tmp_path, i, 3, x[30 * i:30 * i + 30], y[30 * i:30 * i + 30])
             for i in range(3)]
    merged = merge_stats(parts[::-1], tmp_path / "m.safetensors")  # any order
    counts = torch.bincount(y, minlength=V)
    mu = class_means(counts, torch.zeros(V, D, dtype=torch.float64).index_add_(0, y, x))
    sq = torch.zeros(V, dtype=torch.float64).index_add_(0, y, ((x - mu[y]) ** 2).sum(1))
    got, meta = load_stats(merged), load_stats_metadata(merged)
    assert torch.equal(got["counts"], counts)
    torch.testing.assert_close(got["sq_dev"], sq, rtol=1e-9, atol=0)
    dev = x - mu[y]  # (90, D) two-pass: the pooled scatter about the final means
    torch.testing.assert_close(got["sw"], dev.T @ dev, rtol=1e-9, atol=0)
    assert meta["pass1_shard"] == "" and meta["pass1_tokens"] == "90"
    assert meta["means_hash"] == means_hash(class_means(got["counts"], got["sums"]))


def test_merge_refuses_bad_shard_sets(tmp_path):
    x, y = torch.zeros(2, D, dtype=torch.float64), torch.tensor([0, 1])
    parts = [_pass1_shard(tmp_path, i, 3, x, y) for i in range(3)]
    with pytest.raises(UserError, match="each once"):
        merge_stats(parts[:2], tmp_path / "m.safetensors")
    with pytest.raises(UserError, match="each once"):
        merge_stats([parts[0], parts[0], parts[1]], tmp_path / "m.safetensors")
    other = _pass1_shard(tmp_path, 2, 3, x, y, train_blocks_sha256="z" * 64)
    with pytest.raises(UserError, match="train_blocks_sha256"):
        merge_stats([parts[0], parts[1], other], tmp_path / "m.safetensors")


def test_stats_overview(stats_file, tmp_path):
    (tmp_path / "run-a").mkdir()
    stats_file.rename(tmp_path / "run-a" / "stats.safetensors")
    table = stats_overview(tmp_path)
    assert table.to_dict("records") == [{"model": "run-a", "classes": 5, "pass1_tokens": 60,
                                         "pass2_tokens": 60, "passes_tied": True}]
    with pytest.raises(UserError, match="no <model>/stats.safetensors"):
        stats_overview(tmp_path / "run-a")


def test_a_file_of_the_older_format_is_stale_and_refused_with_one_line(tmp_path):
    path = write_stats(tmp_path / "stats.safetensors", _tensors(), _finished_meta())
    tensors, meta = read_stats(path)
    save_file({k: v for k, v in tensors.items() if k != "sw"}, str(path),
              metadata={**meta, "format_version": "2"})
    assert stale_reasons(path)
    assert "collect it again" in stale_reasons(path)[0] and "hashes" in stale_reasons(path)[0]
    with pytest.raises(UserError, match="collect it again"):
        read_stats(path)
