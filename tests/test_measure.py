"""linguistic_collapse.nc.measure against plain implementations of paper section 5 and known-answer cases."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from linguistic_collapse.nc import pairwise, reference, stats_file
from linguistic_collapse.nc.measure import measure_stats, measure_stats_file
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.pipeline import stats_cli
from safetensors.torch import save_file

MEASURE_NAMES = tuple(MEASURES)


def compute_measures(stats, **kwargs) -> dict:
    """Every measure of a stats mapping (the one assembly's dictionary)."""
    kwargs.pop("progress", None)
    return measure_stats(stats, **kwargs)[0]


def per_class_measures(stats, **kwargs):
    """The per-class table of a stats mapping."""
    return measure_stats(stats, per_class=True, **kwargs)[1]


def make_stats(K: int = 12, D: int = 6, seed: int = 0, empty: tuple[int, ...] = (),
               offset: float = 3.0) -> dict[str, torch.Tensor]:
    """Random stats of K tokens; tokens in ``empty`` have count 0 (and zero sums)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 50, (K,), generator=g)
    counts[list(empty)] = 0
    mu = torch.randn(K, D, generator=g, dtype=torch.float64) + offset  # (K, D)
    val_counts = torch.randint(0, 30, (K,), generator=g)
    val_counts[0] = 5  # never an all-zero validation split
    sq_dev = torch.rand(K, generator=g, dtype=torch.float64) * 4 * counts
    out = {
        "counts": counts,
        "sums": mu * counts[:, None],
        "sq_dev": sq_dev,
        "val_counts": val_counts,
        "val_agree": (val_counts * torch.rand(K, generator=g)).long(),
        "lm_head": torch.randn(K, D, generator=g),
    }
    a = torch.randn(D + 3, D, generator=g, dtype=torch.float64)  # drawn last (same stats as before)
    return {**out, "sw": a.T @ a * (sq_dev.sum() / (a * a).sum())}  # PSD, trace = sum sq_dev


def reference_measures(stats) -> dict[str, float]:
    return reference.measures(stats)


def assert_measures_close(got: dict, want: dict, rtol: float = 1e-9, atol: float = 1e-12):
    for name in MEASURE_NAMES:
        assert got[name] == pytest.approx(want[name], rel=rtol, abs=atol), name


# ---------------------------------------------------------------------------------------------
# Against the plain implementation


@pytest.mark.parametrize("K,D,seed,tile", [
    (7, 3, 0, 2048),  # K > D + 1: no ETF possible, like language models
    (13, 20, 1, 4),
    (40, 8, 2, 5),
    (23, 5, 3, 23),
])
def test_measures_match_plain_definition(K, D, seed, tile):
    stats = make_stats(K, D, seed)
    got = compute_measures(stats, tile=tile)
    assert_measures_close(got, reference_measures(stats))
    assert got["num_classes"] == K
    assert set(got) == {*MEASURE_NAMES, "num_classes"}


@pytest.mark.parametrize("tile", [1, 2, 3, 5, 7, 16])
def test_tile_size_does_not_change_results(tile):
    stats = make_stats(17, 6, seed=4)
    assert_measures_close(compute_measures(stats, tile=tile), compute_measures(stats, tile=1000),
                          rtol=1e-11)


@pytest.mark.parametrize("tile", [3, 5, 100])
def test_per_class_table_matches_plain_definition(tile):
    stats = make_stats(19, 5, seed=5, empty=(2, 11))
    table = per_class_measures(stats, tile=tile)
    want = reference.per_class(stats)
    assert list(table.columns) == list(want)
    np.testing.assert_array_equal(table["token_id"], want["token_id"])
    np.testing.assert_array_equal(table["count"], want["count"])
    for col in ("sigma2", "norm"):
        np.testing.assert_allclose(table[col], want[col], rtol=1e-12)
    for col in ("duality", "variability"):
        np.testing.assert_allclose(table[col], want[col], rtol=1e-10)
    np.testing.assert_allclose(table["interference"], want["interference"], rtol=1e-9, atol=1e-13)


def test_classes_with_count_zero_are_ignored():
    empty = (0, 4, 9)
    stats = make_stats(14, 5, seed=6, empty=empty)
    stats["lm_head"][list(empty)] = 1e6  # must not matter
    keep = [c for c in range(14) if c not in empty]
    dense = {k: v if k == "sw" else v[keep] for k, v in stats.items()}
    got, want = compute_measures(stats, tile=4), compute_measures(dense, tile=4)
    assert got["num_classes"] == want["num_classes"] == 11
    for name in MEASURE_NAMES[:-1]:  # nc4 is token-weighted over every token: differs
        assert got[name] == pytest.approx(want[name], rel=1e-12), name
    assert per_class_measures(stats)["token_id"].tolist() == keep


# ---------------------------------------------------------------------------------------------
# Known answers


def simplex_stats(K: int, D: int, scale: float = 2.0, offset: float = 5.0):
    """Class means forming a simplex ETF (after centring), with unequal counts."""
    counts = torch.arange(1, K + 1)
    mu = torch.full((K, D), offset, dtype=torch.float64)
    mu[:, :K] += scale * torch.eye(K, dtype=torch.float64)  # centred: scale (e_c - 1/K)
    M = mu - mu.mean(dim=0)
    return {
        "counts": counts, "sums": mu * counts[:, None],
        "sq_dev": torch.zeros(K, dtype=torch.float64),  # every feature on its class mean
        "sw": torch.zeros(D, D, dtype=torch.float64),
        "val_counts": counts * 3, "val_agree": counts * 3,  # classifier == nearest centre
        "lm_head": M.float() * 0.5,  # rows proportional to the centred means
    }


@pytest.mark.parametrize("K,D,tile", [(5, 5, 2048), (9, 12, 4), (16, 16, 5)])
def test_known_answers_on_a_collapsed_simplex(K, D, tile):
    got = compute_measures(simplex_stats(K, D), tile=tile)
    expected = {
        "nc1_cdnv": 0.0, "nc1_cdnv_galanti": 0.0,  # sq_dev = 0
        "nc2_norm_cv": 0.0, "nc2_interference_mean": -1 / (K - 1), "nc2_interference_std": 0.0,
        "nc2_interference_cv": 0.0,
        "gnc2_logkernel_var": 0.0, "gnc2_logkernel_mean": -0.5 * np.log(2 + 2 / (K - 1)),
        "nc3_duality_mean": 1.0, "unc3_duality_cv": 0.0, "nc4_agreement": 1.0,
        "nc2_etf_error": 0.0, "nc3_duality_error": 0.0,  # a simplex ETF, W = the means / 2
        "nc1_pinv": 0.0,  # sw = 0
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-7), name


@pytest.mark.parametrize("K,D", [(5, 5), (6, 9)])
def test_nc1_pinv_known_answer(K, D):
    """Isotropic Sigma_W = s^2 I and a simplex with Sigma_B = scale^2 P / K (P the centring
    projector on K coordinates): Tr(Sigma_W Sigma_B^+) / K = s^2 (K - 1) / scale^2."""
    stats = simplex_stats(K, D, scale=2.0)
    s2 = 0.3
    stats["sw"] = s2 * float(stats["counts"].sum()) * torch.eye(D, dtype=torch.float64)
    got = compute_measures(stats, progress=False)["nc1_pinv"]
    assert got == pytest.approx(s2 * (K - 1) / 4.0, rel=1e-9)
    assert reference.measures(stats)["nc1_pinv"] == pytest.approx(got, rel=1e-9)


def test_etf_and_duality_errors_detect_a_non_etf():
    """Unequal norms break the ETF (error > 0);
    the errors are checked against their definitions on K x K matrices."""
    stats = simplex_stats(6, 8)
    stats["sums"][0] *= 3.0
    got, want = compute_measures(stats, progress=False), reference.measures(stats)
    assert got["nc2_etf_error"] > 0.1
    for name in ("nc2_etf_error", "nc3_duality_error"):
        assert got[name] == pytest.approx(want[name], rel=1e-9, abs=1e-12), name


def test_without_the_pooled_scatter_nc1_pinv_is_undefined_with_a_reason():
    stats = {k: v for k, v in make_stats(10, 4, seed=3).items() if k != "sw"}
    got = compute_measures(stats, progress=False)
    assert math.isnan(got["nc1_pinv"]) and "pooled within-class scatter" in got["undefined"]["nc1_pinv"]
    assert set(got["undefined"]) == {"nc1_pinv", "nc1_pinv_rtol1e6", "nc1_pinv_rtol1e3"}
    picked = measure_stats(stats, ["nc1_pinv", "nc1_cdnv"])[0]
    assert math.isnan(picked["nc1_pinv"]) and set(picked["undefined"]) == {"nc1_pinv"}


def test_unc3_is_std_over_the_absolute_mean_when_the_duality_is_negative():
    stats = make_stats(10, 4, seed=4)
    stats["lm_head"] = -(stats["sums"] / stats["counts"][:, None]).float()  # mostly anti-aligned
    got = compute_measures(stats, progress=False)
    assert got["nc3_duality_mean"] < 0 < got["unc3_duality_cv"]
    assert got["unc3_duality_cv"] == pytest.approx(reference.measures(stats)["unc3_duality_cv"],
                                                   rel=1e-9)


def test_near_duplicate_means_are_recomputed_exactly(monkeypatch):
    """Two means 1e-8 apart (relative): the Gram form alone loses most digits of d^2."""
    stats = make_stats(9, 16, seed=7, offset=0.0)
    mu = stats["sums"] / stats["counts"][:, None]
    direction = torch.randn(16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mu[1] = mu[0] + 1e-8 * mu[0].norm() * direction / direction.norm()
    stats["sums"] = mu * stats["counts"][:, None]
    want = reference_measures(stats)
    assert_measures_close(compute_measures(stats, tile=4), want, rtol=1e-6)
    monkeypatch.setattr(pairwise, "REL_CLOSE", 0.0)  # switch the exact recomputation off
    crude = compute_measures(stats, tile=4)
    assert not np.isclose(crude["nc1_cdnv"], want["nc1_cdnv"], rtol=1e-3)
    assert not np.isclose(crude["gnc2_logkernel_mean"], want["gnc2_logkernel_mean"], rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# Bad input


def _with(stats, **changes):
    return {**stats, **changes}


def _poison(t: torch.Tensor, value: float) -> torch.Tensor:
    t = t.clone()
    t[1, 2] = value
    return t


BAD_INPUTS = [
    ("sums", lambda s: _with(s, sums=_poison(s["sums"], float("nan")))),
    ("lm_head", lambda s: _with(s, lm_head=_poison(s["lm_head"], float("inf")))),
    ("at least 2", lambda s: _with(s, counts=torch.tensor([3] + [0] * 7))),
    ("lm_head has shape", lambda s: _with(s, lm_head=s["lm_head"][:, :3])),
    ("sq_dev has shape", lambda s: _with(s, sq_dev=s["sq_dev"][:5])),
    ("lack tensors", lambda s: {k: v for k, v in s.items() if k != "val_agree"}),
    ("negative", lambda s: _with(s, counts=-s["counts"])),
    ("val_agree exceeds", lambda s: _with(s, val_agree=s["val_counts"] + 1)),
    ("no validation tokens", lambda s: _with(s, val_counts=0 * s["val_counts"],
                                             val_agree=0 * s["val_agree"])),
]


@pytest.mark.parametrize("message,corrupt", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_raises_a_clear_error(message, corrupt):
    with pytest.raises(ValueError, match=message):
        compute_measures(corrupt(make_stats(8, 4)))


def test_bad_tile(tmp_path):
    with pytest.raises(ValueError, match="tile"):
        compute_measures(make_stats(8, 4), tile=0)


def test_interference_cv_known_answer():
    """Four unit vectors at 0, 90, 180, 270 degrees plus a fifth at 45: the cosines by hand."""
    angles = np.deg2rad([0, 90, 180, 270, 45])
    mu = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (5, 2)
    M = mu - mu.mean(axis=0)
    U = M / np.linalg.norm(M, axis=1, keepdims=True)
    cos = [U[i] @ U[j] for i in range(5) for j in range(i + 1, 5)]
    stats = make_stats(5, 2, seed=11)
    counts = stats["counts"].double()
    stats["sums"] = torch.tensor(mu) * counts[:, None]
    got = compute_measures(stats)
    assert got["nc2_interference_cv"] == pytest.approx(np.std(cos) / abs(np.mean(cos)), rel=1e-9)
    assert got["nc2_interference_cv"] == pytest.approx(got["nc2_interference_std"]
                                                       / abs(got["nc2_interference_mean"]), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Files and CLI


def write_stats(path, stats):
    meta = {"model": "data/x/models/L1-d8-e1-wd0.1-s0/checkpoint-1", "tokenizer": "tok",
            "vocab_size": str(len(stats["counts"])), "width": "6"}
    stats_file.write_stats(path, stats, meta)  # fills means_hash and lm_head_sha256


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="collect"):
        measure_stats_file(tmp_path / "missing.safetensors")


def test_measure_stats_file_adds_model_metadata(tmp_path):
    stats = make_stats(10, 6, seed=8)
    write_stats(tmp_path / "stats.safetensors", stats)
    result = measure_stats_file(tmp_path / "stats.safetensors")[0]
    assert_measures_close(result, compute_measures(stats), rtol=1e-14)
    assert result["model"].endswith("checkpoint-1")
    assert (result["vocab_size"], result["width"]) == (10, 6) and len(result["means_hash"]) == 64


def test_measure_stats_file_rejects_an_inconsistent_file(tmp_path):
    stats = make_stats(10, 6, seed=8)
    path = stats_file.write_stats(tmp_path / "stats.safetensors", stats, {"model": "m"})
    tensors, meta = stats_file.read_stats(path)
    save_file({**tensors, "sums": tensors["sums"] * 2}, str(path), metadata=meta)  # means changed
    with pytest.raises(ValueError, match="means_hash"):
        measure_stats_file(path)


def test_cli_writes_json_and_per_class_csv(tmp_path):
    stats = make_stats(10, 6, seed=9, empty=(3,))
    write_stats(tmp_path / "stats.safetensors", stats)
    parser = argparse.ArgumentParser()
    stats_cli.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["measure", str(tmp_path / "stats.safetensors"),
                              "--out", str(tmp_path / "m" / "metrics.json"),
                              "--per-class", str(tmp_path / "per_class.csv"), "--tile", "3"])
    assert args.func(args) == 0
    written = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert_measures_close(written, compute_measures(stats), rtol=1e-12)
    assert written["num_classes"] == 9
    table = pd.read_csv(tmp_path / "per_class.csv")
    pd.testing.assert_frame_equal(table, per_class_measures(stats, tile=3), check_dtype=False,
                                  rtol=1e-12)
    assert len(table) == 9 and 3 not in table["token_id"].tolist()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    stats = make_stats(40, 8, seed=10)
    assert_measures_close(compute_measures(stats, device="cuda", tile=7),
                          compute_measures(stats, tile=7), rtol=1e-10)


def test_nc1_pinv_cut_off_is_the_reference_one_and_drops_a_layer_norm_null_direction():
    """Features on a hyperplane (as after a final layer norm) give Sigma_B and Sigma_W one null
    direction at round-off; nc1_pinv must not depend on whether round-off keeps it."""
    from linguistic_collapse.nc import measure, reference
    from linguistic_collapse.nc.classstats import ClassStats

    assert measure.PINV_RTOL == reference.PINV_RTOL
    g = torch.Generator().manual_seed(0)
    V, D, N = 40, 8, 4000
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    x = x - x.mean(1, keepdim=True)  # every row sums to 0: the direction 1 is null
    y = torch.randint(0, V, (N,), generator=g)
    values = []
    for jitter in (0.0, 1e-7):  # along the null direction: eigenvalue ~1e-14 of the largest
        s = ClassStats(num_classes=V, dim=D)
        s.add(x + jitter * torch.randn(N, 1, generator=g, dtype=torch.float64), y)
        values.append(s.measures(which=["nc1_pinv"])["nc1_pinv"])
    assert values[0] == pytest.approx(values[1], rel=1e-6)
