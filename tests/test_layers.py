"""Collapse through depth (linguistic_collapse.pipeline.layers): residual streams, their statistics in the same passes,
their measures and tables, against plain computations (Hugging Face hidden states, one-hot
sums over all features at once, linguistic_collapse.nc.reference)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.figures.depth import depth_figure
from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
from linguistic_collapse.lm.head import final_features
from linguistic_collapse.lm.residual import residual_features
from linguistic_collapse.nc import reference
from linguistic_collapse.nc.accumulate import accumulate_moments, accumulate_moments_shared
from linguistic_collapse.nc.measure import measure_stats
from linguistic_collapse.nc.merge import merge_stats
from linguistic_collapse.nc.registry import GEOMETRY
from linguistic_collapse.nc.stats_file import (
    STATS_KEYS,
    load_stats,
    load_stats_metadata,
    read_layers,
    read_stats,
)
from linguistic_collapse.pipeline import collect, collect_cli, layers
from linguistic_collapse.pipeline.collect import collect_model_stats, collect_pass
from linguistic_collapse.tables import depth
from numerics import assert_roundoff_close
from test_accumulate import plain_two_pass, realistic_features  # tests/ is on sys.path

V, D, T, L = 50, 16, 16, 2
N_TRAIN, N_VAL = 12, 6


@pytest.fixture(scope="module")
def model():
    return build_model(gpt_neo_config(L, D, V, T), seed=0).eval()


@pytest.fixture(scope="module")
def blocks():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 40, (N_TRAIN, T)).astype(np.int32),
            rng.integers(0, 45, (N_VAL, T)).astype(np.int32))


def _hidden(model, blocks: np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Hugging Face's hidden states (L + 1 of (B, T, D)) and the next-token labels (N,)."""
    ids = torch.from_numpy(blocks.astype(np.int64))
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
    return out.hidden_states, ids[:, 1:].reshape(-1)


def _flat(h: torch.Tensor) -> torch.Tensor:
    return h[:, :-1].reshape(-1, h.shape[-1]).double()


# ---------------------------------------------------------------------------------------------
# Residual streams and the shared accumulation


def test_residual_streams_are_the_hidden_states_before_the_final_norm(model, blocks):
    ids = torch.from_numpy(blocks[0].astype(np.int64))
    hidden, _ = _hidden(model, blocks[0])
    with torch.no_grad():
        top, streams = residual_features(model, ids, (0, 1, 2))
        assert torch.equal(top, final_features(model, ids))
        for i in range(L):  # inputs of the blocks: HF's hidden_states[i]
            torch.testing.assert_close(streams[i], hidden[i], rtol=0, atol=0)
        # index L: the last block's output; the final norm of it is the LM head's input
        torch.testing.assert_close(model.transformer.ln_f(streams[L]), top)
        assert not torch.allclose(streams[L], top)
        _, only = residual_features(model, ids, (2,))
        assert torch.equal(only[0], streams[2])


def test_shared_accumulation_equals_separate_calls():
    x1, y = realistic_features(0.0)
    x2 = x1.flip(1) * 3 + 1
    sep = [(torch.zeros(V, dtype=torch.long), torch.zeros(V, D, dtype=torch.float64),
            torch.zeros(V, dtype=torch.float64)) for _ in range(2)]
    shared = (torch.zeros(V, dtype=torch.long), [torch.zeros(V, D, dtype=torch.float64)
                                                  for _ in range(2)],
              [torch.zeros(V, dtype=torch.float64) for _ in range(2)])
    for a in range(0, len(y), 64):
        for x, acc in zip((x1, x2), sep, strict=True):
            accumulate_moments(x[a:a + 64], y[a:a + 64], *acc)
        accumulate_moments_shared([x1[a:a + 64], x2[a:a + 64]], y[a:a + 64], *shared)
    for j, acc in enumerate(sep):
        assert torch.equal(shared[0], acc[0])
        assert torch.equal(shared[1][j], acc[1]) and torch.equal(shared[2][j], acc[2])


# ---------------------------------------------------------------------------------------------
# Collection


def _run(model, blocks, out, **kw):
    return collect_model_stats(model, *blocks, out, progress=False, batch_size=5, **kw)


def test_layer_statistics_match_plain_computation(model, blocks, tmp_path):
    top_only = load_stats(_run(model, blocks, tmp_path / "top.safetensors"))
    path = _run(model, blocks, tmp_path / "all.safetensors", layers="all")
    tensors, meta = read_stats(path)
    assert meta["layers"] == "0,1,2" and meta["n_layer"] == str(L)
    for key in STATS_KEYS:  # the top statistics do not change
        assert_roundoff_close(tensors[key], top_only[key], key)
    hidden, y = _hidden(model, blocks[0])
    streams = [*hidden[:L], None]
    with torch.no_grad():
        streams[L] = residual_features(model, torch.from_numpy(blocks[0].astype(np.int64)),
                                       (L,))[1][0]
    for i, h in enumerate(streams):
        counts, sums, sq_dev = plain_two_pass(_flat(h), y, V)
        assert torch.equal(tensors["counts"], counts)
        torch.testing.assert_close(tensors[f"layer{i}.sums"], sums, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(tensors[f"layer{i}.sq_dev"], sq_dev, rtol=1e-6, atol=1e-9)


def test_without_layers_the_file_is_unchanged(model, blocks, tmp_path):
    tensors, meta = read_stats(_run(model, blocks, tmp_path / "s.safetensors", layers=None))
    assert set(tensors) == set(STATS_KEYS)
    assert "layers" not in meta and "n_layer" not in meta


def test_layer_subset_shards_and_resume(model, blocks, tmp_path):
    whole = load_stats(_run(model, blocks, tmp_path / "whole.safetensors", layers=[2, 0]))
    assert {k for k in whole if k.startswith("layer")} == {
        "layer0.sums", "layer0.sq_dev", "layer2.sums", "layer2.sq_dev"}
    parts = [collect_model_stats(model, blocks[0], None, tmp_path / f"p{i}.safetensors",
                                 passes=(1,), shard=(i, 3), layers=(0, 2), progress=False)
             for i in range(3)]
    stage = merge_stats(parts, tmp_path / "stage.safetensors")
    merged = load_stats(collect_model_stats(model, None, blocks[1], stage, passes=(2,),
                                            base=stage, progress=False))
    assert merged.keys() == whole.keys()
    for key in whole:
        torch.testing.assert_close(merged[key], whole[key], rtol=1e-12, atol=1e-12)
    out = tmp_path / "killed.safetensors"
    kw = {"batch_size": 2, "checkpoint_every": 2, "progress": False, "layers": "all"}
    with pytest.raises(collect.PassInterrupted):
        collect_pass(model, blocks[0], 1, out, stop_after_batches=3, **kw)
    resumed = load_stats(collect_pass(model, blocks[0], 1, out, **kw))
    clean = load_stats(collect_pass(model, blocks[0], 1, tmp_path / "clean.safetensors", **kw))
    for key in clean:
        assert torch.equal(resumed[key], clean[key]), key


def test_other_layers_in_an_existing_file_refused(model, blocks, tmp_path):
    out = _run(model, blocks, tmp_path / "s.safetensors", layers=(1,))
    with pytest.raises(UserError, match="layers 1"):
        _run(model, blocks, out, layers="all")


def test_layer_choice():
    assert layers.resolve_layers("all", 4) == (0, 1, 2, 3, 4)
    assert layers.resolve_layers([4, 0, 4], 4) == (0, 4)
    assert layers.resolve_layers(None, 4) == ()
    assert layers.parse_layers_arg("0,2") == (0, 2) and layers.parse_layers_arg("all") == "all"
    with pytest.raises(UserError, match="outside"):
        layers.resolve_layers([5], 4)
    with pytest.raises(UserError, match="--layers"):
        layers.parse_layers_arg("top")


def test_cli_layers_flag(model, blocks, tmp_path):
    np.save(tmp_path / "train.npy", blocks[0])
    out = tmp_path / "s.safetensors"
    parser = argparse.ArgumentParser()
    collect_cli.register_cli(parser.add_subparsers(required=True))
    args = parser.parse_args(["collect", "m", "--train-blocks", str(tmp_path / "train.npy"),
                              "--out", str(out), "--pass", "1", "--layers", "0,2"])
    assert args.layers == (0, 2)
    collect_model_stats(model, blocks[0], None, out, passes=args.passes, layers=args.layers,
                        progress=False)
    assert load_stats_metadata(out)["layers"] == "0,2"


# ---------------------------------------------------------------------------------------------
# Measures


def test_layer_measures_match_reference(model, blocks, tmp_path):
    path = _run(model, blocks, tmp_path / "s.safetensors", layers="all")
    tensors, meta = read_stats(path)
    section = layers.layers_section(tensors, meta)["layers"]
    assert list(section) == ["0", "1", "2"]
    for i in range(L + 1):
        stats = {"counts": tensors["counts"], "sums": tensors[f"layer{i}.sums"],
                 "sq_dev": tensors[f"layer{i}.sq_dev"]}
        # the reference needs a head and validation counts; only GEOMETRY is compared
        want = reference.measures({**stats, "lm_head": tensors["lm_head"],
                                   "val_counts": tensors["val_counts"],
                                   "val_agree": tensors["val_agree"]})
        got = measure_stats(stats, GEOMETRY)[0]
        assert set(got) == {*GEOMETRY, "num_classes"}
        assert got["num_classes"] == int((tensors["counts"] > 0).sum())
        for m in GEOMETRY:
            assert got[m] == pytest.approx(want[m], rel=1e-9), (i, m)
            assert section[str(i)][m] == got[m]
    assert layers.layers_section(*read_stats(_run(model, blocks, tmp_path / "t.safetensors"))) == {}


@pytest.mark.parametrize("tamper, match", [
    (lambda t, m: t.pop("layer1.sq_dev"), "lacks tensors"),
    (lambda t, m: t.__setitem__("layer0.sums", t["layer0.sums"].float().half()), "float16"),
    (lambda t, m: t.__setitem__("layer2.sq_dev", t["layer2.sq_dev"][:-1]), "do not fit"),
    (lambda t, m: t.__setitem__("layer0.sums", t["layer0.sums"][:-1]), "do not fit"),
    (lambda t, m: t["sums"].__setitem__((0, 0), t["sums"][0, 0] + 1.0), "means_hash"),
    (lambda t, m: m.__setitem__("format_version", "2"), "stats format"),
])
def test_layers_reader_refuses_a_tampered_file(model, blocks, tmp_path, tamper, match):
    """The per-layer reader is the verified read: a file whose layer tensors are missing or of
    another dtype or shape, whose means do not match their hash, or of another format version,
    is refused with one line before any layer is measured."""
    from safetensors.torch import save_file

    path = _run(model, blocks, tmp_path / "s.safetensors", layers="all")
    tensors, meta = read_stats(path)
    tamper(tensors, meta)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    with pytest.raises(UserError, match=match) as err:
        list(read_layers(path))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=match):
        read_stats(path)  # the whole-file reader agrees


# ---------------------------------------------------------------------------------------------
# Tables, summary and figure


def _metrics(values: dict[int, float], n_layer: int, top: float) -> dict:
    section = {str(i): {**{m: v for m in GEOMETRY}, "num_classes": 9} for i, v in values.items()}
    return {**{m: top for m in GEOMETRY}, "num_classes": 9, "n_layer": str(n_layer),
            "layers": section}


def _write(out_dir, ck: ModelName, metrics: dict) -> None:
    path = out_dir / "metrics" / f"{ck}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))


def test_table_summary_and_figure(tmp_path):
    a = ModelName(2, 32, 1, 0.1, 0).at(1)
    b = ModelName(2, 64, 1, 0.1, 0).at(1)
    c = ModelName(1, 64, 1, 0.1, 0).at(1)
    _write(tmp_path, a, _metrics({0: 3.0, 1: 2.0, 2: 1.5}, 2, 1.0))  # falls, largest 0->1
    _write(tmp_path, b, _metrics({0: 1.0, 1: 3.0, 2: 2.0}, 2, 1.0))  # not monotone, 0->1
    _write(tmp_path, c, {**_metrics({}, 1, 1.0), "layers": {}})  # measured without layers
    table = depth.layers_table(tmp_path, [a, b, c])
    assert len(table) == 2 * 4 and set(table["name"]) == {str(a), str(b)}
    res = table[table["site"] == "residual"]
    assert sorted(res["relative_depth"].unique()) == [0.0, 0.5, 1.0]
    head = table[table["site"] == "head_input"]
    assert (head["layer"] == 2).all() and (head["nc2_norm_cv"] == 1.0).all()
    summary = depth.depth_summary(table).set_index("measure")
    row = summary.loc["nc2_norm_cv"]  # linear scale
    assert row["models"] == 2 and row["monotone"] == 0.5 and row["falling"] == 0.5
    assert row["largest_step"] == "0->1" and row["largest_step_share"] == 1.0
    assert row["largest_step_rel_depth"] == 0.5
    assert summary.loc["nc1_cdnv", "largest_step"] == "0->1"  # log10: 3 -> 2 beats 2 -> 1.5
    assert "50% of 2 models" in depth.describe_depth(depth.depth_summary(table))
    assert depth.depth_summary(table, min_blocks=3)["models"].eq(0).all()
    fig = depth_figure(table)
    assert len(fig.axes) == len(GEOMETRY)
    empty = depth.layers_table(tmp_path, [c])
    assert empty.empty and list(empty.columns) == list(table.columns)
    assert depth.depth_summary(empty)["models"].eq(0).all()
    assert "collect.layers" in depth.describe_depth(depth.depth_summary(empty))
    depth_figure(empty)
    with pytest.raises(FileNotFoundError):
        depth.layers_table(tmp_path, [ModelName(4, 64, 1, 0.1, 0).at(1)])


def test_profile_key_and_checkpoint_layers():
    from linguistic_collapse.core.profiles import load_profile

    smoke = load_profile("smoke")
    data = smoke.as_dict()
    for spec, want in (("all", (0, 1, 2)), ([0, 2], (0, 2)), (None, ())):
        data["collect"]["layers"] = spec
        prof = type(smoke).from_dict(data)
        ck = ModelName(2, 16, 1, 0.0005, 0).at(1)
        assert layers.profile_layers(prof, ck) == want
        assert layers.profile_layers(prof, ck, fraction=0.5) == ()
    data["collect"]["layers"] = "top"
    with pytest.raises(UserError, match="collect.layers"):
        type(smoke).from_dict(data)
    assert isinstance(pd.DataFrame(), pd.DataFrame)


def test_pipeline_collects_and_measures_layers_when_the_profile_asks(tmp_path, tiny_profile):
    from linguistic_collapse.core.paths import Layout, read_json
    from linguistic_collapse.core.profiles import Profile
    from linguistic_collapse.pipeline.jobs import is_collected, run_local

    p = tiny_profile(tmp_path, collect={"layers": None})
    (ck,) = p.checkpoints()
    run_local(p, progress=False)
    top = read_json(Layout(p.out_path).metrics(ck))
    assert "layers" not in top
    d = p.as_dict()
    d["collect"]["layers"] = "all"
    deep = Profile.from_dict(d)
    assert not is_collected(deep, ck)
    run_local(deep, progress=False)
    metrics = read_json(Layout(p.out_path).metrics(ck))
    assert list(metrics["layers"]) == ["0", "1"] and set(metrics["layers"]["1"]) >= set(GEOMETRY)
    for key in ("nc1_cdnv", "nc2_interference_cv", "nc3_duality_mean", "nc4_agreement"):
        assert metrics[key] == top[key], key  # the top numbers do not change
    assert is_collected(p, ck)  # a file with more layers serves a profile asking fewer
    table = depth.layers_table(p.out_path, [ck])
    assert list(table["layer"]) == [0, 1, 1] and list(table["site"]) == [
        "residual", "residual", "head_input"]


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gpt_neox", "opt"])
def test_residual_streams_of_other_architectures(arch):
    """The block inputs equal Hugging Face's hidden states on tiny random models of the other
    families linguistic_collapse.lm.head supports (found by their block lists)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    sizes = {"gpt2": dict(n_layer=3, n_embd=32, n_head=2, n_positions=16, bos_token_id=0,
                          eos_token_id=0),
             "llama": dict(num_hidden_layers=3, hidden_size=32, intermediate_size=64,
                           num_attention_heads=2, num_key_value_heads=2),
             "gpt_neox": dict(num_hidden_layers=3, hidden_size=32, intermediate_size=64,
                              num_attention_heads=2),
             "opt": dict(num_hidden_layers=3, hidden_size=32, ffn_dim=64, num_attention_heads=2,
                         word_embed_proj_dim=32)}[arch]
    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch, vocab_size=60, **sizes)).eval()
    ids = torch.randint(0, 60, (2, 10))
    with torch.no_grad():
        hidden = m(input_ids=ids, output_hidden_states=True).hidden_states
        top, streams = residual_features(m, ids, (0, 1, 2, 3))
        assert torch.equal(top, final_features(m, ids))
    for i in range(3):
        assert torch.equal(streams[i], hidden[i]), i
    assert streams[3].shape == hidden[3].shape


def _stream(name: str, values: list[float], head: dict[str, float]) -> pd.DataFrame:
    """One model's residual stream (one value per index, every measure) and its head input."""
    n = len(values) - 1
    rows = [{"name": name, "n_layer": n, "layer": i, "site": "residual", "width": 32,
             "relative_depth": i / n, **{m: v for m in GEOMETRY}} for i, v in enumerate(values)]
    rows.append({"name": name, "n_layer": n, "layer": n, "site": "head_input", "width": 32,
                 "relative_depth": 1.0, **{m: values[-1] for m in GEOMETRY}, **head})
    return pd.DataFrame(rows)


def test_headline_counts_ratios_and_text_on_known_streams():
    table = pd.concat([
        _stream("falls", [4.0, 2.0, 1.0], {"nc1_cdnv": 0.02, "nc1_cdnv_galanti": 1.0}),
        _stream("rises", [1.0, 2.0, 4.0], {"nc1_cdnv": 0.16, "nc1_cdnv_galanti": 4.4}),
        _stream("bumps", [1.0, 3.0, 2.0], {"nc1_cdnv": 0.08, "nc1_cdnv_galanti": 2.0}),
    ], ignore_index=True)
    summary = depth.depth_summary(table)
    assert summary["measure"].iloc[0] == depth.HEADLINE  # the scale-free CDNV first
    row = summary.set_index("measure").loc[depth.HEADLINE]
    assert (row["models"], row["n_falling"], row["n_rising"]) == (3, 1, 1)
    assert depth.not_monotone(table) == ["bumps"]
    ratios = depth.head_vs_residual(table).set_index("name")
    assert ratios.loc["falls", "nc1_cdnv_ratio"] == pytest.approx(0.02)
    assert ratios.loc["rises", "nc1_cdnv_galanti_ratio"] == pytest.approx(1.1)
    rs = depth.ratio_summary(depth.head_vs_residual(table)).set_index("measure")
    assert rs.loc["nc1_cdnv", "median_ratio"] == pytest.approx(0.04)  # 0.02, 0.04, 0.04
    assert rs.loc["nc1_cdnv", "fold_lower"] == pytest.approx(25.0)
    assert rs.loc["nc1_cdnv_galanti", "median_ratio"] == pytest.approx(1.0)
    text = depth.describe_depth(summary, rs.reset_index(), depth.not_monotone(table))
    assert text.startswith("Headline: NC1: CDNV (Galanti)")
    assert "falls monotonically through the residual stream in 1 of 3 models" in text
    assert "not monotone: bumps" in text and "fourth power" in text


def test_depth_figure_uses_symlog_for_signed_cvs_and_log_for_positive_ones():
    table = pd.concat([_stream("a", [1.0, 2.0, 600.0], {}), _stream("b", [1.0, 2.0, 3.0], {})],
                      ignore_index=True)
    table.loc[0, "nc2_lognorm_cv"] = -13.0
    fig = depth_figure(table)
    by_title = {ax.get_title().split("\n")[0].split(" (")[0]: ax for ax in fig.axes}
    assert by_title["NC2: log-norm CV"].get_yscale() == "symlog"
    assert by_title["NC2: interference CV"].get_yscale() == "log"
    assert by_title["NC2: norm CV"].get_yscale() == "linear"
    assert fig.axes[0].get_title() == "NC1: CDNV (Galanti)\nfalls all the way: L2 0/2"


def test_depth_figure_draws_one_summary_per_depth_and_counts_falls():
    """Per depth L, one median line (not one line per model) and a count of monotone falls."""
    table = pd.concat([_stream("a", [4.0, 2.0, 1.0], {}), _stream("b", [1.0, 3.0, 2.0], {}),
                       _stream("c", [5.0, 4.0, 3.0, 2.0, 1.0], {}), _stream("d", [4.0, 3.0, 2.0, 1.0, 2.0], {})],
                      ignore_index=True)
    fig = depth_figure(table, ["nc1_cdnv_galanti"])
    ax = fig.axes[0]
    assert ax.get_title().endswith("falls all the way: L2 1/2, L4 1/2")
    medians = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
    assert len(medians) == 2  # one per depth, 4 models
    assert list(medians[0].get_ydata()) == [2.5, 2.5, 1.5]  # the median of a and b per index
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["depth L = 2 (2 models)", "depth L = 4 (2 models)"]


def _layer(means: np.ndarray, counts: list[int], var: list[float], scale: float = 1.0) -> dict:
    """A residual stream's accumulators from class means (K, D), counts and within-class
    variances, every feature multiplied by ``scale``; a class with count 0 has no samples."""
    c = torch.tensor(counts, dtype=torch.int64)
    sums = torch.tensor(means, dtype=torch.float64) * scale * c[:, None]
    sq_dev = torch.tensor(var, dtype=torch.float64) * scale**2 * c
    return {"counts": c, "sums": sums, "sq_dev": sq_dev}


def test_growth_by_hand(tmp_path, monkeypatch):
    """Three classes seen, means (1,0), (0,2), (3,4), variances 1, 0, 3 (a fourth unseen):
    mean norm (1 + 2 + 5)/3; the distances sqrt 5, sqrt 20, sqrt 13 give an RMS of sqrt(38/3);
    within sd sqrt(4/3). The last stream is the first multiplied by 10: every growth 1 dex, the
    paper's CDNV (1/s²) -2 dex, all of it growth (share 1, 0 dex at a fixed distance)."""
    means = np.array([[1.0, 0.0], [0.0, 2.0], [9.0, 9.0], [3.0, 4.0]])
    streams = [_layer(means, [2, 1, 0, 3], [1.0, 0.0, 0.0, 3.0], scale) for scale in (1.0, 10.0)]
    monkeypatch.setattr(depth, "read_layers", lambda path: iter(enumerate(streams)))
    name = "L1-d32-e1-wd0.0005-s0-ck1"
    layers = pd.DataFrame([{"name": name, "site": "residual", "layer": i, "n_layer": 1, "depth": 1,
                            "width": 32, "epochs": 1, "nc1_cdnv": cdnv, "nc1_cdnv_galanti": 0.5}
                           for i, cdnv in enumerate((1.0, 0.01))])
    growth = depth.growth_table(tmp_path, layers)
    first = growth.iloc[0]
    assert first["mean_norm"] == pytest.approx(8 / 3)
    assert first["mean_distance"] == pytest.approx(np.sqrt(38 / 3))
    assert first["within_sd"] == pytest.approx(np.sqrt(4 / 3))
    summary = depth.growth_summary(growth).iloc[0]
    for col in ("d_norm", "d_distance", "d_within"):
        assert summary[col] == pytest.approx(1.0)
    assert summary["d_cdnv"] == pytest.approx(-2.0) and summary["d_galanti"] == pytest.approx(0.0)
    assert summary["d_cdnv_rescaled"] == pytest.approx(0.0, abs=1e-12)
    assert summary["distance_share"] == pytest.approx(1.0)
    per_depth = depth.by_depth(layers, depth.growth_summary(growth))
    row = per_depth.iloc[0]
    assert (row["models"], row["n_galanti_falls"], row["n_cdnv_falls"], row["n_growth_most"]) == (1, 0, 1, 1)
    assert np.isnan(row["n_galanti_monotone_fall"])  # one block: trivially monotone, not counted
    assert "more than half of that fall in 1 of them" in depth.describe_growth(depth.growth_summary(growth), per_depth)


def test_depth_record_findings(tmp_path):
    from linguistic_collapse.tables.findings import Findings

    table = pd.concat([
        _stream("falls", [4.0, 2.0, 1.0], {"nc1_cdnv": 0.02, "nc1_cdnv_galanti": 1.0}),
        _stream("bumps", [1.0, 3.0, 2.0], {"nc1_cdnv": 0.08, "nc1_cdnv_galanti": 2.0}),
    ], ignore_index=True)
    f = Findings(tmp_path / "findings.md", "07_layers")
    depth.record_findings(f, depth.depth_summary(table),
                          depth.ratio_summary(depth.head_vs_residual(table)),
                          depth.not_monotone(table))
    text = f.markdown()
    assert "| NC1: CDNV (Galanti): falls monotonically through depth (models) | 1 |" in text
    assert "models not monotone through depth | bumps |" in text
    assert "| NC1: CDNV: head input / last residual stream (median ratio) | 0.03 |" in text
