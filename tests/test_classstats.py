"""linguistic_collapse.nc.ClassStats: the public core contract, against the plain definitions and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.lm.head import final_features, lm_head_weight
from linguistic_collapse.nc import ClassStats, nc1_measures, nc3_measures, reference
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.nc.stats_file import read_stats
from linguistic_collapse.pipeline.collect import collect_model_stats
from numerics import ROUNDOFF64

V, D = 12, 5
GEOMETRY_ONLY = [m for m in MEASURES if m.startswith(("nc1", "nc2", "gnc2"))]  # with sw


def _batches(seed: int, n: int = 3, size: int = 40):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, D, generator=g) + 3.0, torch.randint(0, V, (size,), generator=g))
            for _ in range(n)]


def _filled(seed: int = 0) -> ClassStats:
    stats = ClassStats(num_classes=V, dim=D)
    for x, y in _batches(seed):
        stats.add(x, y)
    return stats


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def test_measures_without_classifier_are_the_geometry_and_match_the_definitions():
    stats = _filled()
    got = stats.measures()
    assert list(got) == GEOMETRY_ONLY
    ref = reference.measures({**stats.tensors, "lm_head": torch.ones(V, D),
                              "val_counts": torch.ones(V), "val_agree": torch.ones(V)})
    assert max(_rel(got[k], ref[k]) for k in got) < 1e-10
    assert nc1_measures(stats.tensors["counts"], stats.means(), stats.tensors["sq_dev"],
                        stats.tensors["sw"]) == pytest.approx(
        {k: got[k] for k in got if k.startswith("nc1")}, rel=ROUNDOFF64["rtol"])


def test_every_measure_after_both_passes_and_which_selects():
    stats = _filled()
    W = torch.randn(V, D, generator=torch.Generator().manual_seed(5))
    for x, y in _batches(1, n=2):
        stats.add_validation(x, y, W)
    got = stats.measures()  # W defaults to pass 2's
    assert list(got) == MEASURES
    ref = reference.measures({**stats.tensors, "lm_head": W})
    assert max(_rel(got[k], ref[k]) for k in got) < 1e-10
    assert stats.measures(which=["nc4_agreement", "nc1_cdnv"]) == pytest.approx({
        "nc1_cdnv": got["nc1_cdnv"], "nc4_agreement": got["nc4_agreement"]}, rel=ROUNDOFF64["rtol"])
    assert nc3_measures(stats.tensors["counts"], stats.means(), W)["nc3_duality_mean"] == pytest.approx(
        got["nc3_duality_mean"], rel=1e-12)


def test_missing_prerequisites_raise_one_line_naming_them():
    stats = _filled()
    with pytest.raises(UserError, match="need the classifier W"):
        stats.measures(which=["nc3_duality_mean"])
    with pytest.raises(UserError, match="needs pass 2"):
        stats.measures(torch.randn(V, D), which=["nc4_agreement"])
    with pytest.raises(ValueError, match="unknown measure"):
        stats.measures(which=["nc9"])
    with pytest.raises(UserError, match=r"must be \(N, 5\)"):
        stats.add(torch.randn(4, D + 1), torch.zeros(4, dtype=torch.long))


def test_add_after_validation_is_refused_and_the_means_stay_frozen():
    stats = _filled()
    means = stats.means().clone()
    W = torch.randn(V, D)
    stats.add_validation(*_batches(1, n=1)[0], W)
    with pytest.raises(UserError, match="frozen"):
        stats.add(*_batches(2, n=1)[0])
    assert torch.equal(stats.means(), means)
    with pytest.raises(UserError, match="another classifier"):
        stats.add_validation(*_batches(3, n=1)[0], W + 1)


def test_save_and_load_round_trip_verified(tmp_path):
    stats = _filled()
    W = torch.randn(V, D)
    stats.add_validation(*_batches(1, n=1)[0], W)
    path = stats.save(tmp_path / "stats.safetensors", model="toy")
    tensors, meta = read_stats(path)  # the pipeline's verified read accepts it
    assert meta["model"] == "toy" and meta["pass1_tokens"] == "120" and meta["means_hash"]
    back = ClassStats.load(path)
    assert back.measures() == stats.measures()
    # a pass-1 file loads too, and is still open for more training features
    p1 = _filled().save(tmp_path / "p1.safetensors", model="toy")
    more = ClassStats.load(p1)
    more.add(*_batches(7, n=1)[0])
    # a tampered file is refused
    tensors["sums"][0, 0] += 1.0
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "bad.safetensors"),
              metadata=meta)
    with pytest.raises(UserError, match="means_hash"):
        ClassStats.load(tmp_path / "bad.safetensors")


def test_pooled_scatter_is_the_two_pass_scatter_and_survives_save_and_load(tmp_path):
    batches = _batches(2, n=5, size=7)
    stats = ClassStats(V, D)
    for x, y in batches:
        stats.add(x, y)
    x = torch.cat([b[0] for b in batches]).double()
    y = torch.cat([b[1] for b in batches])
    dev = x - stats.means()[y]  # (N, D) about the final means
    torch.testing.assert_close(stats.tensors["sw"], dev.T @ dev, rtol=1e-9, atol=1e-12)
    assert float(stats.tensors["sw"].trace()) == pytest.approx(float(stats.tensors["sq_dev"].sum()),
                                                               rel=1e-12)
    back = ClassStats.load(stats.save(tmp_path / "p1.safetensors", model="toy"))
    assert torch.equal(back.tensors["sw"], stats.tensors["sw"])
    no_sw = ClassStats.from_tensors({k: v for k, v in stats.tensors.items() if k != "sw"})
    assert "sw" not in no_sw.tensors and "sw" not in no_sw.merge(stats).tensors


def test_merge_of_shards_equals_one_pass():
    batches = _batches(0, n=4)
    whole, a, b = (ClassStats(V, D) for _ in range(3))
    for i, (x, y) in enumerate(batches):
        whole.add(x, y)
        (a if i < 2 else b).add(x, y)
    merged = a.merge(b)
    for k in ("counts", "sums", "sq_dev", "sw"):
        torch.testing.assert_close(merged.tensors[k], whole.tensors[k], rtol=1e-12, atol=1e-12)
    assert merged.tokens[1] == whole.tokens[1]
    W = torch.randn(V, D)
    v1, v2 = ClassStats.merge(whole, ClassStats(V, D)), whole.merge(ClassStats(V, D))
    v1.add_validation(*batches[0], W)
    v2.add_validation(*batches[1], W)
    both = v1.merge(v2)
    assert int(both.tensors["val_counts"].sum()) == 2 * len(batches[0][1])
    with pytest.raises(UserError, match="share their train means"):
        v1.merge(a)


def test_classstats_equals_the_pipelines_stats_file(tmp_path):
    """The same features through ClassStats and through linguistic_collapse.pipeline.collect give the same file."""
    T, Vm, Dm = 12, 30, 8
    model = build_model(gpt_neo_config(1, Dm, Vm, T), seed=0).eval()
    rng = np.random.default_rng(0)
    train, val = rng.integers(0, Vm, (6, T)), rng.integers(0, Vm, (4, T))
    out = collect_model_stats(model, train, val, tmp_path / "stats.safetensors", batch_size=2,
                              progress=False)
    file_tensors, _ = read_stats(out)
    W = lm_head_weight(model).detach()
    stats = ClassStats(Vm, Dm)
    with torch.inference_mode():
        for split, add in ((train, stats.add), (val, lambda x, y: stats.add_validation(x, y, W))):
            for a in range(0, len(split), 2):
                ids = torch.from_numpy(split[a:a + 2].astype(np.int64))
                x = final_features(model, ids)[:, :-1].reshape(-1, Dm)
                add(x, ids[:, 1:].reshape(-1))
    for k in ("counts", "val_counts", "val_agree"):
        assert torch.equal(stats.tensors[k], file_tensors[k])
    for k in ("sums", "sq_dev", "sw"):
        torch.testing.assert_close(stats.tensors[k], file_tensors[k], rtol=1e-12, atol=0)
    assert torch.equal(W.float(), file_tensors["lm_head"])
    assert float(file_tensors["sw"].trace()) == pytest.approx(float(file_tensors["sq_dev"].sum()),
                                                              rel=1e-12)


def test_the_core_imports_only_errors_and_provenance_from_lib():
    import ast
    from pathlib import Path

    import linguistic_collapse.nc

    allowed = {"linguistic_collapse.core.errors", "linguistic_collapse.core.provenance",
               "linguistic_collapse.core.paths"}  # paths: ClassStats.save's --out rule
    for path in Path(linguistic_collapse.nc.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("linguistic_collapse") and not name.startswith("linguistic_collapse.nc"):
                    assert name in allowed, f"{path.name} imports {name}"
