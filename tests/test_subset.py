"""linguistic_collapse.nc.subset: restricting statistics to classes equals collecting only those classes' samples."""

import math

import pytest
import torch
from linguistic_collapse.nc import reference
from linguistic_collapse.nc.classstats import ClassStats
from linguistic_collapse.nc.subset import min_count_classes, restrict_classes
from numerics import ROUNDOFF64


def test_restricted_stats_equal_stats_of_the_kept_samples_only():
    g = torch.Generator().manual_seed(0)
    V, D, N = 12, 5, 400
    x = torch.randn(N, D, generator=g, dtype=torch.float64) + 3.0
    y = torch.randint(0, V, (N,), generator=g)
    y[:40] = 7  # one frequent class
    W = torch.randn(V, D, generator=g, dtype=torch.float64)
    full = ClassStats(num_classes=V, dim=D)
    full.add(x, y)
    keep = min_count_classes(full.tensors, 35)
    assert keep.sum() >= 2 and not keep.all()
    only = ClassStats(num_classes=V, dim=D)
    sel = keep[y]
    only.add(x[sel], y[sel])
    val_counts = torch.randint(1, 9, (V,), generator=g)
    val = {"val_counts": val_counts, "val_agree": val_counts // 2}
    restricted = restrict_classes({**full.tensors, **val, "lm_head": W, "pooled": W.T @ W}, keep)
    assert "pooled" not in restricted and restricted["lm_head"] is W
    assert "sw" not in restricted  # pooled over every class: cannot be restricted
    expected = {**{k: v for k, v in only.tensors.items() if k != "sw"}, "lm_head": W,
                **{k: torch.where(keep, v, 0) for k, v in val.items()}}
    for key in ("counts", "sums", "sq_dev", "val_counts", "val_agree"):
        torch.testing.assert_close(restricted[key], expected[key], rtol=1e-12, atol=1e-12)
    a, b = reference.measures(restricted), reference.measures(expected)
    for name in a:
        assert (a[name] != a[name] and b[name] != b[name]) or abs(a[name] - b[name]) <= 1e-9 * max(1, abs(b[name])), name


def test_min_count_section_measures_the_frequent_classes_of_a_tiny_stats_file(tmp_path):
    from linguistic_collapse.nc import stats_file as sf
    from linguistic_collapse.nc.measure import measure_stats
    from linguistic_collapse.nc.subset import min_count_section
    from stats_helpers import random_stats

    path = sf.write_stats(tmp_path / "stats.safetensors", random_stats(K=10, D=4, seed=2),
                          {"model": "m", "vocab_size": "10", "width": "4"})
    stats, _ = sf.read_stats(path)
    m = int(stats["counts"].median())
    keep = stats["counts"] >= m
    got = min_count_section(stats, m)["min_count"]
    want = measure_stats(restrict_classes(stats, keep))[0]
    assert got["min_count"] == m and got["num_classes"] == int(keep.sum()) < 10
    for key in ("nc1_cdnv", "nc4_agreement"):
        assert got[key] == pytest.approx(want[key], rel=ROUNDOFF64["rtol"]), key
    dense = {k: v[keep] for k, v in stats.items() if k != "sw"}  # the kept classes alone
    assert got["nc2_etf_error"] == pytest.approx(reference.measures(dense)["nc2_etf_error"],
                                                 rel=1e-9)
    assert math.isnan(got["nc1_pinv"]) and "nc1_pinv" in got["undefined"]  # sw is pooled
    none = min_count_section(stats, 10**6)["min_count"]
    assert none["num_classes"] == 0 and "all" in none["undefined"]
