"""One path for the measures: ClassStats.measures, stats mappings and the per-property functions
of tensors agree; undefined values are NaN with a reason everywhere; nc1_pinv under its three
pre-registered cut-offs; the lazy exports are visible to type checkers."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from linguistic_collapse.nc import (
    ClassStats,
    gnc2_measures,
    measure,
    nc1_measures,
    nc2_measures,
    nc3_measures,
    nc4_measure,
    reference,
)
from linguistic_collapse.nc.measure import measure_stats
from linguistic_collapse.nc.registry import MEASURES, PINV_MEASURES, PINV_RTOLS, REGISTRY

V, D = 10, 6


def _stats(seed: int = 0, offset: float = 2.0) -> ClassStats:
    g = torch.Generator().manual_seed(seed)
    stats = ClassStats(V, D)
    for _ in range(4):
        stats.add(torch.randn(60, D, generator=g, dtype=torch.float64) + offset,
                  torch.randint(0, V, (60,), generator=g))
    W = torch.randn(V, D, generator=g)
    stats.add_validation(torch.randn(50, D, generator=g) + offset,
                         torch.randint(0, V, (50,), generator=g), W)
    return stats


def test_coincident_means_give_nan_with_a_reason_not_inf():
    g = torch.Generator().manual_seed(1)
    stats = ClassStats(4, 2)
    x = torch.randn(40, 2, generator=g, dtype=torch.float64)
    y = torch.arange(40) % 4
    x[y == 1] = x[y == 0]  # classes 0 and 1: the same samples, the same mean
    stats.add(x, y)
    got = stats.measures()  # main: nc1_cdnv = inf, no reason
    for key in ("nc1_cdnv", "gnc2_logkernel_mean"):
        assert math.isnan(got[key]) and key in got["undefined"], key
    assert "identical means" in got["undefined"]["nc1_cdnv"]
    assert all(not math.isinf(v) for k, v in got.items() if k != "undefined")
    file_path = measure_stats({**stats.tensors})[0]
    assert file_path["undefined"] == got["undefined"]


def test_classstats_the_mapping_and_the_tensor_functions_are_one_path():
    stats = _stats()
    t, means, W = stats.tensors, stats.means(), stats.W
    got = stats.measures()
    mapped = measure_stats({**t, "lm_head": W})[0]
    assert {k: mapped[k] for k in MEASURES} == got
    parts = {**nc1_measures(t["counts"], means, t["sq_dev"], t["sw"]),
             **nc2_measures(t["counts"], means), **gnc2_measures(t["counts"], means),
             **nc3_measures(t["counts"], means, W.float()),  # its float32 values
             **nc4_measure(t["val_counts"], t["val_agree"])}
    assert set(parts) == set(MEASURES)
    for k in MEASURES:
        assert parts[k] == pytest.approx(got[k], rel=1e-12), k
    want = reference.measures({**t, "lm_head": W})
    for k in MEASURES:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), k


def test_per_property_functions_take_any_float_dtype_and_name_a_bad_argument():
    stats = _stats()
    t, means = stats.tensors, stats.means()
    assert nc2_measures(t["counts"], means.float())["nc2_norm_cv"] == pytest.approx(
        nc2_measures(t["counts"], means)["nc2_norm_cv"], rel=1e-6)
    with pytest.raises(ValueError, match=r"nc2_measures: means has shape \(3, 6\)"):
        nc2_measures(t["counts"], means[:3])


def _hyperplane_stats(seed: int) -> dict[str, torch.Tensor]:
    """Class means spread over a few strong and some weak directions, so the three cut-offs
    keep different numbers of eigenvalues of Sigma_B."""
    g = torch.Generator().manual_seed(seed)
    K, Dd = 30, 12
    scales = torch.tensor([1.0, 1.0, 1.0, 1e-2, 1e-2, 1e-4, 1e-4, 1e-6, 1e-6, 1e-8, 0.0, 0.0],
                          dtype=torch.float64)
    mu = torch.randn(K, Dd, generator=g, dtype=torch.float64) * scales
    counts = torch.randint(5, 30, (K,), generator=g)
    a = torch.randn(Dd + 3, Dd, generator=g, dtype=torch.float64)
    sw = a.T @ a
    return {"counts": counts, "sums": mu * counts[:, None],
            "sq_dev": torch.full((K,), float(sw.trace()) / K, dtype=torch.float64), "sw": sw}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nc1_pinv_under_each_cut_off_is_the_plain_pseudo_inverse(seed):
    stats = _hyperplane_stats(seed)
    got = measure_stats(stats, PINV_MEASURES)[0]
    C = reference.classes({**stats, "lm_head": torch.zeros_like(stats["sums"])})
    values = []
    for name, rtol in zip(PINV_MEASURES, PINV_RTOLS, strict=True):
        want = reference.nc1_pinv(stats, C, rtol)
        assert got[name] == pytest.approx(want, rel=1e-6), name  # 1/l of l ~ 1e-8 max l
        values.append(got[name])
    assert values[0] > values[1] > values[2] > 0  # the cut-offs drop different directions
    for name in PINV_MEASURES[1:]:
        entry = REGISTRY[name]
        assert (entry.collapse, entry.unit, entry.transform) == (
            REGISTRY["nc1_pinv"].collapse, REGISTRY["nc1_pinv"].unit, REGISTRY["nc1_pinv"].transform)
        assert entry.claim == "" and entry.authors_r2 is None


def test_the_mean_gram_is_computed_once(monkeypatch):
    calls = []
    real = measure._mean_gram
    monkeypatch.setattr(measure, "_mean_gram", lambda C: calls.append(1) or real(C))
    stats = _stats()
    stats.measures()
    assert len(calls) == 1


def test_exports_are_visible_to_type_checkers():
    import linguistic_collapse.nc as nc

    tree = ast.parse(Path(nc.__file__).read_text(encoding="utf-8"))
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded |= {a.asname or a.name for n in node.body if isinstance(n, ast.ImportFrom)
                        for a in n.names}
    assert set(nc.__all__) <= guarded
    for name in nc.__all__:
        assert getattr(nc, name) is not None
    assert np.isfinite(measure.PINV_RTOL)
