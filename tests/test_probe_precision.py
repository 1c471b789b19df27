"""Probe set, precision and integrity of statistics: a half-precision checkpoint is measured in
float32, and every tensor of a stats file is verified on every verified read. Each case failed
before the behaviour it names was built (README, "What is checked")."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.lm.loading import load_causal_lm
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.nc.measure import measure_stats_file
from linguistic_collapse.pipeline.collect import collect_model_stats
from linguistic_collapse.pipeline.freshness import stale_reasons
from linguistic_collapse.pipeline.layers import layers_section
from safetensors.torch import load_file, save_file

V, D, T = 40, 16, 12


@pytest.fixture(scope="module")
def blocks():
    rng = np.random.default_rng(3)
    return (rng.integers(0, V, (10, T)).astype(np.int32),
            rng.integers(0, V, (5, T)).astype(np.int32))


def _checkpoints(root, dtype):
    """One tiny model whose weights are exactly representable in ``dtype``, saved twice: stored
    in ``dtype`` and stored in float32 (the same numbers)."""
    model = build_model(gpt_neo_config(2, D, V, T), seed=4).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).float())  # the rounded weights, in float32
    as_fp32, as_half = root / "fp32", root / str(dtype).removeprefix("torch.")
    model.save_pretrained(as_fp32)
    model.to(dtype).save_pretrained(as_half)
    return as_fp32, as_half


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_checkpoint_is_measured_in_float32(tmp_path, blocks, dtype):
    as_fp32, as_half = _checkpoints(tmp_path, dtype)
    assert load_file(str(as_half / "model.safetensors"))["transformer.wte.weight"].dtype == dtype
    assert all(p.dtype == torch.float32 for p in load_causal_lm(as_half).parameters())
    measures = {}
    for folder in (as_fp32, as_half):
        out = collect_model_stats(folder, *blocks, tmp_path / folder.name / "stats.safetensors",
                                  batch_size=4, progress=False)
        assert sf.load_stats_metadata(out)["pass1_compute_dtype"] == "float32"
        measures[folder.name] = measure_stats_file(out, progress=False)[0]
    ref, got = measures["fp32"], measures[as_half.name]
    names = [k for k, v in ref.items() if isinstance(v, float) and math.isfinite(v)]
    assert "nc1_pinv" in names and "cdnv" in str(names)
    for name in names:
        assert got[name] == pytest.approx(ref[name], rel=1e-6, abs=1e-12), name


# --- every tensor hashed ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def stats_with_layers(tmp_path_factory, blocks):
    model = build_model(gpt_neo_config(2, D, V, T), seed=5).eval()
    out = tmp_path_factory.mktemp("hashed") / "stats.safetensors"
    return collect_model_stats(model, *blocks, out, batch_size=4, progress=False, layers="all")


def _altered(src, dst, key, change):
    """A copy of ``src`` with tensor ``key`` changed by ``change`` and every other byte of the
    header (its hashes included) kept."""
    tensors, meta = load_file(str(src)), sf.load_stats_metadata(src)
    tensors[key] = change(tensors[key])
    save_file(tensors, str(dst), metadata=meta)
    return dst


CHANGES = {
    "sq_dev": lambda t: t * 100,  # CDNV 100 times too large
    "sw": lambda t: torch.full_like(t, math.nan),  # nc1_pinv NaN
    "val_counts": torch.zeros_like,  # NC4 silently dropped
    "val_agree": lambda t: t + 1,
    "layer1.sums": lambda t: t * 2,
    "layer2.sq_dev": lambda t: t + 1,
}


@pytest.mark.parametrize("key", CHANGES)
def test_every_tensor_of_a_stats_file_is_verified(stats_with_layers, tmp_path, key):
    bad = _altered(stats_with_layers, tmp_path / "bad.safetensors", key, CHANGES[key])
    line = rf"bad\.safetensors: tensor '{key}' does not match its recorded sha256"
    if not key.startswith("layer"):
        with pytest.raises(UserError, match=line):
            measure_stats_file(bad, progress=False)
    with pytest.raises(UserError, match=line):
        sf.read_stats(bad)
    with pytest.raises(UserError, match=line):
        list(sf.read_layers(bad))


def test_layer_measures_read_verified_layers(stats_with_layers, tmp_path):
    bad = _altered(stats_with_layers, tmp_path / "bad.safetensors", "layer0.sq_dev",
                   lambda t: t * 3)
    with pytest.raises(UserError, match=r"tensor 'layer0\.sq_dev' does not match"):
        layers_section(*sf.read_stats(bad))


def test_a_shard_of_pass_one_is_verified_before_merging(stats_with_layers, tmp_path):
    from linguistic_collapse.nc.classstats import ClassStats

    tensors, meta = sf.read_stats(stats_with_layers)
    pass1 = {k: v for k, v in tensors.items() if k in (*sf.pass1_keys(meta), "lm_head")}
    meta1 = {k: v for k, v in meta.items() if not k.startswith("pass2_")}
    good = sf.write_stats(tmp_path / "p1.safetensors", pass1, meta1)
    ClassStats.load(good)  # pass 1 alone, verified
    bad = _altered(good, tmp_path / "bad.safetensors", "sq_dev", lambda t: t * 100)
    with pytest.raises(UserError, match=r"tensor 'sq_dev' does not match"):
        ClassStats.load(bad)


def test_an_older_stats_format_is_refused_naming_the_fix(stats_with_layers, tmp_path):
    tensors, meta = load_file(str(stats_with_layers)), sf.load_stats_metadata(stats_with_layers)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**{k: v for k, v in meta.items()
                                              if k != "tensors_sha256"}, "format_version": "3"})
    with pytest.raises(UserError, match=r"old\.safetensors has stats format '3'.*collect it "
                                        r"again.*make paper"):
        measure_stats_file(old, progress=False)
    assert "make paper" in stale_reasons(old)[0]


def test_shards_computed_in_other_precisions_are_not_merged(tmp_path, blocks):
    from linguistic_collapse.nc.merge import merge_stats
    from linguistic_collapse.pipeline.collect import collect_pass

    model = build_model(gpt_neo_config(1, D, V, T), seed=6).eval()
    parts = [collect_pass(model, blocks[0], 1, tmp_path / f"s{i}.safetensors", shard=(i, 2),
                          progress=False) for i in range(2)]
    tensors, meta = load_file(str(parts[1])), sf.load_stats_metadata(parts[1])
    sf.write_stats(parts[1], tensors, {**meta, "pass1_compute_dtype": "float16"})
    with pytest.raises(UserError, match=r"pass1_compute_dtype 'float16' differs from 'float32'"):
        merge_stats(parts, tmp_path / "merged.safetensors")
