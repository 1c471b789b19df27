"""The sensitivity study's random subsamples of training blocks (linguistic_collapse.pipeline.blocks) and
statistics collected on them (linguistic_collapse.pipeline.collect): reproducible, distinct across draws, of the
asked size, and equal to collecting on the selected rows as an array of their own."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.nc.stats_file import load_stats_metadata, read_stats
from linguistic_collapse.pipeline.blocks import select_blocks, subsample_blocks
from linguistic_collapse.pipeline.collect import collect_model_stats

V, D, T = 30, 8, 8


@pytest.mark.parametrize(("n", "fraction"), [(100, 0.125), (37, 0.5), (5, 0.01), (9, 1.0)])
def test_subsample_size_order_and_reproducibility(n, fraction):
    draws = [subsample_blocks(n, fraction, seed=7, draw=d) for d in range(3)]
    for d, idx in enumerate(draws):
        assert len(idx) == max(1, math.ceil(fraction * n))  # ceil(f n), at least one block
        assert np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < n  # distinct, in order
        np.testing.assert_array_equal(idx, subsample_blocks(n, fraction, seed=7, draw=d))
    if 1 < len(draws[0]) < n:  # a real subsample: each draw another set, each seed another
        assert len({tuple(idx) for idx in draws}) == 3
        assert not np.array_equal(draws[0], subsample_blocks(n, fraction, seed=8, draw=0))


def test_subsample_is_uniform_over_blocks():
    """Over many draws every block is chosen about ``fraction`` of the time (not a prefix)."""
    hits = np.zeros(20)
    for d in range(2000):
        hits[subsample_blocks(20, 0.25, seed=0, draw=d)] += 1
    np.testing.assert_allclose(hits / 2000, 0.25, atol=0.04)  # 5 sd of a binomial share


def test_bad_indices_and_fractions_are_one_line():
    blocks = np.zeros((6, T), dtype=np.int32)
    for bad in ([2, 1], [0, 0], [6], []):
        with pytest.raises(UserError, match="increasing, distinct"):
            select_blocks(blocks, V, indices=bad)
    with pytest.raises(UserError, match="fraction"):
        subsample_blocks(10, 0.0, 0, 0)


def test_collecting_indices_equals_collecting_those_rows(tmp_path):
    """Pass 1 on rows ``idx`` of the blocks gives the statistics of the array ``blocks[idx]``,
    recorded with the indices' hash; another index set gives another split identity."""
    model = build_model(gpt_neo_config(1, D, V, T), seed=0).eval()
    rng = np.random.default_rng(1)
    train = rng.integers(0, V, (10, T)).astype(np.int32)  # (10, 8)
    val = rng.integers(0, V, (4, T)).astype(np.int32)  # (4, 8)
    idx = subsample_blocks(10, 0.5, seed=0, draw=0)  # (5,)
    sub = collect_model_stats(model, train, val, tmp_path / "sub.safetensors", batch_size=2,
                              progress=False, train_indices=idx)
    own = collect_model_stats(model, np.ascontiguousarray(train[idx]), val,
                              tmp_path / "own.safetensors", batch_size=2, progress=False)
    (a, meta), (b, _) = read_stats(sub), read_stats(own)
    for key in ("counts", "sums", "sq_dev", "val_counts"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-12)
    assert meta["pass1_blocks"] == "5" and meta["pass1_indices_sha256"]
    assert "pass1_indices_sha256" not in load_stats_metadata(own)
    other = subsample_blocks(10, 0.5, seed=0, draw=1)
    assert (select_blocks(train, V, indices=other).split_sha
            != select_blocks(train, V, indices=idx).split_sha
            != select_blocks(train, V).split_sha)
