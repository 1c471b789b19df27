"""Probe set, bad input: each case a hostile but fair user tried, and what now happens.

Every test here failed before the behaviour it names was built (see docs/checks.md, "The probe set").
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from checkout import PROFILES_DIR, REPO_ROOT
from linguistic_collapse import __main__ as cli
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.profiles import Profile, load_profile
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.nc.measure import measure_stats, measure_stats_file
from linguistic_collapse.series import paper
from linguistic_collapse.tables import authors, results
from stats_helpers import random_stats

SMOKE = (PROFILES_DIR / "smoke.yaml").read_text(encoding="utf-8")


def _profile_copy(tmp_path, **replace: str):
    """smoke.yaml with text replacements, written to tmp_path/v.yaml."""
    text = SMOKE
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "v.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _write(path, tensors):
    return sf.write_stats(path, tensors, {"model": "m", "vocab_size": str(len(tensors["counts"])),
                                          "width": str(tensors["sums"].shape[1])})


# --- profiles ---------------------------------------------------------------------------------


def test_profile_given_as_a_path_is_the_profile_the_notebooks_run(tmp_path, monkeypatch):
    path = _profile_copy(tmp_path, **{"name: smoke": "name: vprobe",
                                      "out_dir: data/smoke": f"out_dir: {tmp_path / 'data'}",
                                      "n_permutations: ": "n_permutations: 17  # was "})
    seen = {}

    def fake_execute(notebook, output, params):
        seen[notebook.stem] = dict(params)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("{}")

    monkeypatch.setattr(paper, "execute_stage", fake_execute)
    paper.run_paper(str(path), stages=("05_permutation",))
    cfg = paper.notebook_setup(seen["05_permutation"]["profile"], style=False)
    assert cfg.profile.analysis.n_permutations == 17 and cfg.profile.name == "vprobe"


def test_profile_file_named_like_a_shipped_one_is_run_as_given(tmp_path):
    path = _profile_copy(tmp_path, **{"n_permutations: ": "n_permutations: 17  # was "})
    given = paper.notebook_profile(path, load_profile(path).name)
    assert given != "smoke" and load_profile(given).analysis.n_permutations == 17
    assert paper.notebook_profile(PROFILES_DIR / "smoke.yaml", "smoke") == "smoke"


def test_yaml_duplicate_key_is_refused_with_file_line_and_key(tmp_path):
    path = _profile_copy(tmp_path, **{"  lr: 1.0e-3": "  lr: 5.0\n  lr: 1.0e-3"})
    lines = path.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("  lr: 1.0e-3"))
    with pytest.raises(UserError, match=rf"v\.yaml:{line}: duplicate key 'lr'"):
        load_profile(path)


@pytest.mark.parametrize("section,key,value", [
    ("training", "batch_size", True),  # bool -> int
    ("training", "lr", "0.001"),  # str -> float
    ("analysis", "n_bootstrap", 10.0),  # float -> int
    ("grid", "widths", [True]),
])
def test_profile_numbers_are_not_coerced(section, key, value):
    data = load_profile("smoke").as_dict()
    data[section][key] = value
    with pytest.raises(UserError, match=rf"{section}\.{key}"):
        Profile.from_dict(data)


def test_profile_ints_stay_fine_for_float_fields():
    data = load_profile("smoke").as_dict()
    data["training"]["max_grad_norm"] = 1
    assert Profile.from_dict(data).training.max_grad_norm == 1.0


# --- results tables ---------------------------------------------------------------------------


def test_results_table_with_duplicate_models_is_refused(tmp_path):
    table = pd.read_csv(REPO_ROOT / "runs" / "smoke" / "results.csv")
    doubled = tmp_path / "doubled.csv"
    pd.concat([table, table]).to_csv(doubled, index=False)
    with pytest.raises(UserError, match=r"doubled\.csv lists .* more than once"):
        results.load_table(doubled)


# --- statistics files -------------------------------------------------------------------------


@pytest.mark.parametrize("key,change", [
    ("counts", lambda t: t.double() * 0.5),
    ("counts", lambda t: t > 0),
    ("val_agree", lambda t: t.double()),
    ("sums", lambda t: t.to(torch.int64)),
])
def test_stats_dtypes_are_checked(tmp_path, key, change):
    tensors = random_stats()
    tensors[key] = change(tensors[key])
    path = _write(tmp_path / "stats.safetensors", tensors)  # valid hashes, wrong dtype
    with pytest.raises(UserError, match=rf"stats\.safetensors: {key} is .*expected"):
        measure_stats_file(path, progress=False)
    with pytest.raises(ValueError, match=f"{key} is"):
        measure_stats(tensors)[0]


def test_coincident_class_means_give_nan_with_a_reason():
    tensors = random_stats()
    tensors["sums"][1] = tensors["sums"][0] / tensors["counts"][0] * tensors["counts"][1]
    got = measure_stats(tensors)[0]
    assert math.isnan(got["nc1_cdnv"]) and "identical means" in got["undefined"]["nc1_cdnv"]
    assert math.isnan(got["gnc2_logkernel_mean"]) and "gnc2_logkernel_mean" in got["undefined"]
    assert math.isfinite(got["nc4_agreement"]) and "nc4_agreement" not in got["undefined"]


def test_class_mean_at_the_global_mean_gives_nan_with_a_reason():
    a, b = torch.tensor([1.0, 2.0, 0.5, 0.0], dtype=torch.float64), torch.tensor([0.0, -1.0, 3.0, 1.0], dtype=torch.float64)
    means = torch.stack([torch.zeros(4, dtype=torch.float64), a, -a, b, -b])  # class 0 at the centre
    tensors = {**random_stats(K=5), "counts": torch.ones(5, dtype=torch.int64), "sums": means,
               "sq_dev": torch.zeros(5, dtype=torch.float64)}
    got = measure_stats(tensors)[0]
    assert math.isnan(got["nc2_lognorm_cv"]) and math.isnan(got["nc2_interference_mean"])
    assert "token(s) [0] equals the global mean" in got["undefined"]["nc2_lognorm_cv"]
    assert set(got["undefined"]) == {k for k, v in got.items() if isinstance(v, float) and math.isnan(v)}


# --- import-authors ---------------------------------------------------------------------------


def _authors_csv(path, model="01x0064_01d@0", n_params="10000", val_loss="2.0"):
    path.write_text(f"model,n_params,val_acc,val_loss,cdnv\n{model},{n_params},0.5,{val_loss},1.0\n")
    return path


@pytest.mark.parametrize("kwargs,match", [
    ({"model": "00x0064_01d@0"}, "at least 1"),  # depth 0
    ({"model": "01x0000_01d@0"}, "at least 1"),  # width 0
    ({"model": "1" * 400 + "x0064_01d@0"}, "not an authors' model name"),  # was OverflowError
    ({"val_loss": "-1.5"}, "val_loss -1.5 must be a finite loss"),
    ({"val_loss": "inf"}, "val_loss inf must be a finite loss"),
    ({"n_params": "0"}, "n_params 0 must be a positive whole number"),
    ({"n_params": "10000.7"}, "n_params 10000.7 must be a positive whole number"),
])
def test_import_authors_refuses_impossible_values(tmp_path, kwargs, match):
    path = _authors_csv(tmp_path / "lc.csv", **kwargs)
    with pytest.raises(UserError, match=rf"lc\.csv line 2.*{match}"):
        authors.import_authors([path])


def test_import_authors_header_only_file_is_one_line(tmp_path):
    path = tmp_path / "lc.csv"
    path.write_text("model,n_params,val_acc,val_loss,cdnv\n")
    with pytest.raises(UserError, match="header but no rows"):
        authors.import_authors([path])


# --- command line -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-5"])
def test_analyze_bootstrap_count_must_be_positive(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["analyze", "--out-dir", str(tmp_path), "--dest", str(tmp_path),
                  "--n-bootstrap", value])
    assert exit_.value.code == 2
    assert "--n-bootstrap: must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("value, message", [("0", "must lie in (0, 1], got 0.0"), ("1.5", "must lie in (0, 1]"),
                                            ("nan", "must lie in (0, 1]"), ("x", "'x' is not a number")])
def test_analyze_alpha_must_be_a_level(tmp_path, capsys, value, message):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["analyze", "--out-dir", str(tmp_path), "--dest", str(tmp_path), "--alpha", value])
    assert exit_.value.code == 2
    assert f"--alpha: {message}" in capsys.readouterr().err


def _shard(path, i, n, x, y, V=5, D=3):
    counts = torch.bincount(y, minlength=V)
    sums = torch.zeros(V, D, dtype=torch.float64).index_add_(0, y, x)
    mu = sums / counts.clamp(min=1)[:, None]
    sq = torch.zeros(V, dtype=torch.float64).index_add_(0, y, ((x - mu[y]) ** 2).sum(1))
    sw = (x - mu[y]).T @ (x - mu[y])  # (D, D)
    meta = {"model": "m", "vocab_size": str(V), "width": str(D), "pass1_blocks": "1",
            "pass1_tokens": str(len(y)), "pass1_shard": f"{i}/{n}", "pass1_split_sha": "s"}
    return sf.write_stats(path, {"counts": counts, "sums": sums, "sq_dev": sq, "sw": sw,
                                 "lm_head": torch.ones(V, D)}, meta)


def test_merge_stats_paths_are_relative_to_the_callers_directory(tmp_path, monkeypatch, capsys):
    g = torch.Generator().manual_seed(0)
    y, x = torch.randint(0, 5, (20,), generator=g), torch.randn(20, 3, generator=g, dtype=torch.float64)
    _shard(tmp_path / "p0.safetensors", 0, 2, x[:10], y[:10])
    _shard(tmp_path / "p1.safetensors", 1, 2, x[10:], y[10:])
    monkeypatch.chdir(tmp_path)
    assert cli.main(["merge-stats", "m.safetensors", "p0.safetensors", "p1.safetensors"]) == 0, \
        capsys.readouterr().err
    assert (tmp_path / "m.safetensors").is_file() and not (REPO_ROOT / "m.safetensors").exists()
    assert json.loads(json.dumps(sf.load_stats_metadata(tmp_path / "m.safetensors")))["pass1_tokens"] == "20"
