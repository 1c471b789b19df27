"""Sample-size sensitivity (lib.sensitivity) on a tiny saved model."""

from __future__ import annotations

import numpy as np
import pytest

from lib.collect import collect_model_stats
from lib.errors import UserError
from lib.measure import compute_measures
from lib.model import build_model, gpt_neo_config
from lib.sensitivity import prefix_blocks, sample_sensitivity
from lib.stats_file import read_stats

V, D, T = 40, 16, 12


@pytest.fixture
def setup(tmp_path):
    ckpt = tmp_path / "checkpoint-1"
    build_model(gpt_neo_config(1, D, V, T), seed=0).save_pretrained(ckpt)
    rng = np.random.default_rng(0)
    train = rng.integers(0, V, (16, T)).astype(np.int32)  # (16, 12)
    val = rng.integers(0, V, (4, T)).astype(np.int32)  # (4, 12)
    return ckpt, train, val


def test_prefix_blocks():
    assert prefix_blocks(10, (0.125, 0.25, 0.5, 1.0)) == [2, 3, 5, 10]
    assert prefix_blocks(3, (0.01,)) == [1]
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        prefix_blocks(10, (0.0, 1.5))


def test_sample_sensitivity(setup, tmp_path):
    ckpt, train, val = setup
    work = tmp_path / "sens"
    table = sample_sensitivity(ckpt, train, val, (0.25, 0.5, 1.0), work_dir=work,
                               batch_size=4, progress=False)
    assert list(table["fraction"]) == [0.25, 0.5, 1.0]
    assert list(table["train_tokens"]) == [n * (T - 1) for n in (4, 8, 16)]
    for row, n in zip(table.to_dict("records"), (4, 8, 16), strict=True):
        counts = np.bincount(train[:n, 1:].ravel(), minlength=V)  # next-token labels, plainly
        seen = counts[counts > 0]
        assert row["num_classes"] == len(seen)
        assert row["median_class_count"] == np.median(seen)
        assert row["frac_singletons"] == pytest.approx(np.mean(seen == 1))
    whole = collect_model_stats(ckpt, train, val, tmp_path / "whole.safetensors", batch_size=4,
                                progress=False)
    want = compute_measures(read_stats(whole)[0], progress=False)
    last = table.iloc[-1]
    for key, value in want.items():
        assert last[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
    assert table["nc1_cdnv"].nunique() == 3  # the sample changes the measures
    # finished files are reused, and collected again when the model changes
    files = sorted(work.glob("train*.safetensors"))
    before = [f.stat().st_mtime_ns for f in files]
    again = sample_sensitivity(ckpt, train, val, (0.25, 0.5, 1.0), work_dir=work, batch_size=4,
                               progress=False)
    assert [f.stat().st_mtime_ns for f in files] == before and again.equals(table)
    build_model(gpt_neo_config(1, D, V, T), seed=1).save_pretrained(ckpt)
    other = sample_sensitivity(ckpt, train, val, (1.0,), work_dir=work, batch_size=4,
                               progress=False)
    assert other["nc1_cdnv"].iloc[0] != table["nc1_cdnv"].iloc[-1]
