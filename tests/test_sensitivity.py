"""Sample-size sensitivity tables (linguistic_collapse.tables.sensitivity) from files laid out as the pipeline writes
them; the collection itself is tested end to end in tests/test_pipeline.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import Layout, atomic_write_json
from linguistic_collapse.core.provenance import sha256_file
from linguistic_collapse.figures.sensitivity import sensitivity_figure
from linguistic_collapse.nc.classstats import ClassStats
from linguistic_collapse.nc.measure import measure_stats
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.nc.stats_file import read_stats
from linguistic_collapse.nc.subset import restrict_classes
from linguistic_collapse.pipeline import fixed_k
from linguistic_collapse.tables import sensitivity as sensitivity_module
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.sensitivity import (
    changes,
    fixed_k_table,
    limits_table,
    min_models,
    record_findings,
    sd_factor,
    sensitivity_table,
    stability,
)

FRACTIONS, DRAWS = (0.25, 0.5, 1.0), 2
V, D = 12, 4
CK = ModelName.parse("L1-d32-e1-wd0.0005-s0-ck1")


def _profile(tmp_path, cks):
    sens = SimpleNamespace(checkpoints=lambda: cks, fractions=FRACTIONS,
                           draws_of=lambda f: range(DRAWS if f < 1 else 1))
    return SimpleNamespace(out_path=tmp_path, sensitivity=sens)


def _stats(labels: np.ndarray, seed: int, W: torch.Tensor) -> ClassStats:
    """Both passes' statistics of random features with the given labels (N,)."""
    g = torch.Generator().manual_seed(seed)
    stats = ClassStats(num_classes=V, dim=D)
    y = torch.from_numpy(labels.astype(np.int64))
    stats.add(torch.randn(len(labels), D, generator=g, dtype=torch.float64), y)
    stats.add_validation(torch.randn(len(labels), D, generator=g, dtype=torch.float64), y, W)
    return stats


def _write(tmp_path, ck, fraction, draw, labels, value):
    layout = Layout(tmp_path)
    path = layout.stats(ck, fraction, draw)
    path.parent.mkdir(parents=True, exist_ok=True)
    W = torch.randn(V, D, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    _stats(labels, seed=draw + int(100 * fraction), W=W).save(path, "tiny", W)
    atomic_write_json(layout.metrics(ck, fraction, draw), {m: value for m in MEASURES})
    return path


def _grid(sd_dex: float) -> pd.DataFrame:
    """Three models whose log measures lie at -sd, 0, +sd dex (between-model sd = sd_dex)."""
    return pd.DataFrame({m: 10.0 ** (np.array([-1, 0, 1]) * sd_dex) for m in MEASURES})


def test_table_counts_changes_and_stability(tmp_path):
    rng = np.random.default_rng(0)
    # log measures: the value is 10^x, so the change on the dex scale is exactly x
    values = {(0.25, 0): 10**0.5, (0.25, 1): 10**0.3, (0.5, 0): 10**0.02, (0.5, 1): 10**0.06,
              (1.0, 0): 1.0}
    labels = {}
    for (f, d), v in values.items():
        labels[f, d] = rng.integers(0, V - 2 if f < 1 else V, 60)  # (60,) small samples miss classes
        _write(tmp_path, CK, f, d, labels[f, d], v)
    table = sensitivity_table(_profile(tmp_path, [CK]))
    assert list(zip(table["fraction"], table["draw"], strict=True)) == list(values)
    for row in table.to_dict("records"):
        counts = np.bincount(labels[row["fraction"], row["draw"]], minlength=V)
        seen = counts[counts > 0]
        assert row["num_classes"] == len(seen) and row["median_class_count"] == np.median(seen)
        assert row["frac_singletons"] == pytest.approx(np.mean(seen == 1))
        assert row["train_tokens"] == len(labels[row["fraction"], row["draw"]])
    assert Layout(tmp_path).stats(CK, 1.0) == Layout(tmp_path).stats(CK)  # the main statistics
    grid = _grid(0.5)  # between-model sd 0.5 dex
    ch = changes(table, grid).set_index(["fraction", "measure"])
    assert ch.loc[(0.25, "nc1_cdnv"), "change_mean"] == pytest.approx(0.4)
    assert ch.loc[(0.25, "nc1_cdnv"), "change_sd"] == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert ch.loc[(0.5, "nc1_cdnv"), "between_sd"] == pytest.approx(0.5)
    assert ch.loc[(0.5, "nc1_cdnv"), "ratio"] == pytest.approx(0.04 / 0.5)
    summary = stability(table, grid).set_index(["measure", "fraction"])
    assert summary.loc[("nc1_cdnv", 0.5), "models"] == 1  # one model: no spread, no verdict
    assert summary.loc[("nc1_cdnv", 0.5), "shift_mean"] == pytest.approx(0.04)
    assert not summary.loc[("nc1_cdnv", 0.5), "stable"]
    sensitivity_figure(table, grid, MEASURES[:2], ncols=2)


def _shift_table(shifts: dict[str, float]) -> pd.DataFrame:
    """A sensitivity table of models whose log measures move by exactly ``shifts`` dex at 1/2
    (two draws at +-0.01 around it) and stay at 1 in the full pass."""
    rows = []
    for ck, shift in shifts.items():
        rows.append({"checkpoint": ck, "fraction": 1.0, "draw": 0, "num_classes": 10,
                     **{m: 1.0 for m in MEASURES}})
        for draw, jitter in enumerate((-0.01, 0.01)):
            rows.append({"checkpoint": ck, "fraction": 0.5, "draw": draw, "num_classes": 9,
                         **{m: 10.0 ** (shift + jitter) for m in MEASURES}})
    return pd.DataFrame(rows)


def test_stability_judges_the_spread_of_shifts_by_hand():
    """The issue's CDNV shifts -0.170, -0.157, -0.137 dex in three models: sd 0.016623; the 95 %
    upper limit with 2 df uses chi²_{0.05,2} = -2 ln 0.95 (chi² with 2 df is exponential),
    factor sqrt(2 / 0.102587) = 4.41540, limit 0.073397 dex."""
    table = _shift_table({"a": -0.170, "b": -0.157, "c": -0.137})
    shifts = np.array([-0.170, -0.157, -0.137])
    sd = np.sqrt(((shifts - shifts.mean()) ** 2).sum() / 2)
    factor = np.sqrt(2 / (-2 * np.log(0.95)))
    assert sd == pytest.approx(0.016623, abs=1e-6) and factor == pytest.approx(4.41540, abs=1e-5)
    assert sd_factor(3) == pytest.approx(factor, rel=1e-9)
    row = stability(table, _grid(0.667)).set_index("measure").loc["nc1_cdnv"]
    assert row["models"] == 3 and row["fraction"] == 0.5
    assert row["shift_mean"] == pytest.approx(shifts.mean(), abs=1e-9)  # reported, not judged
    assert row["shift_sd"] == pytest.approx(sd, abs=1e-9)
    assert row["shift_sd_ucl"] == pytest.approx(sd * factor, abs=1e-9)
    assert row["between_sd"] == pytest.approx(0.667) and row["limit"] == pytest.approx(0.0667)
    assert not row["stable"]  # 0.0734 > 0.0667
    assert stability(table, _grid(0.75)).set_index("measure").loc["nc1_cdnv", "stable"]  # 0.0734 <= 0.075
    # four models would do: factor sqrt(3 / chi²_{0.05,3}) = 2.9199, 0.0485 <= 0.0667
    assert row["min_models"] == 4 and sd * sd_factor(4) <= 0.0667 < sd * sd_factor(3)
    # a shift shared by every model, however large, is stable
    shared = stability(_shift_table({"a": -0.9, "b": -0.9, "c": -0.9}), _grid(0.1)).set_index("measure")
    assert shared.loc["nc1_cdnv", "stable"] and shared.loc["nc1_cdnv", "shift_sd"] == pytest.approx(0, abs=1e-12)


def test_min_models_bounds():
    assert min_models(0.0, 0.1) == 2
    assert np.isnan(min_models(0.1, 0.1)) and np.isnan(min_models(0.2, 0.1))
    n = min_models(0.09, 0.1)  # the factor falls slowly towards 1: many models
    assert 0.09 * sd_factor(int(n)) <= 0.1 < 0.09 * sd_factor(int(n) - 1)


def test_limits_table_is_the_preregistered_one():
    """docs/preregistration.md, section Sens: factor 15.95, 4.42, 2.92, 2.37, 2.09 for n = 2-6."""
    t = limits_table((2, 3, 4, 5, 6)).set_index("models")
    assert list(t["factor"].round(2)) == [15.95, 4.42, 2.92, 2.37, 2.09]
    assert t.loc[6, "largest_stable_share"] == pytest.approx(0.10 / t.loc[6, "factor"])


def _fixed_k_samples(tmp_path, seed: int) -> tuple[dict, dict]:
    """Stats files of every sample of CK from random labels: (paths, labels) by (fraction, draw)."""
    rng = np.random.default_rng(seed)
    paths, labels = {}, {}
    for f in FRACTIONS:
        for d in range(DRAWS if f < 1 else 1):
            labels[f, d] = rng.integers(0, V, 40)  # (40,)
            paths[f, d] = _write(tmp_path, CK, f, d, labels[f, d], 1.0)
    return paths, labels


def test_fixed_k_uses_the_classes_of_every_sample(tmp_path):
    """Each sample is measured on the classes seen in all samples of its run: K is one number,
    and the measures equal those of the statistics restricted by hand; the table reads the
    rows the stages stored."""
    paths, labels = _fixed_k_samples(tmp_path, 1)
    common = np.logical_and.reduce([np.bincount(y, minlength=V) > 0 for y in labels.values()])
    keep = fixed_k.common_classes(paths.values())
    assert torch.equal(keep, torch.from_numpy(common)) and common.sum() < V
    rows = [fixed_k.fixed_k_row(CK, f, d, read_stats(p)[0], keep) for (f, d), p in paths.items()]
    hashes = {fixed_k.sample_key(f, d): sha256_file(p) for (f, d), p in paths.items()}
    fixed_k.save_rows(Layout(tmp_path).fixed_k_metrics(CK), hashes, rows)
    table = fixed_k_table(_profile(tmp_path, [CK]))
    assert (table["num_classes"] == common.sum()).all()
    row = table[(table["fraction"] == 0.5) & (table["draw"] == 1)].iloc[0]
    want = measure_stats(restrict_classes(read_stats(paths[0.5, 1])[0], torch.from_numpy(common)))[0]
    for m, v in want.items():
        if m == "undefined":
            continue
        assert row[m] == pytest.approx(v, rel=1e-12, nan_ok=True)


def test_fixed_k_rows_are_current_only_for_their_stats_and_measures(tmp_path, monkeypatch):
    """Stored rows are reused only for stats files of the recorded sha256 and the current
    measure version; the table refuses rows of other samples or measures, naming the fix."""
    paths, _ = _fixed_k_samples(tmp_path, 2)
    store = Layout(tmp_path).fixed_k_metrics(CK)
    hashes = {fixed_k.sample_key(f, d): sha256_file(p) for (f, d), p in paths.items()}
    fixed_k.save_rows(store, hashes, [{"checkpoint": str(CK)}])
    assert fixed_k.stored_rows(store, hashes) == [{"checkpoint": str(CK)}]
    assert fixed_k.stored_rows(store, {**hashes, "0.5/1": "0" * 64}) is None
    fewer = {k: v for k, v in hashes.items() if k != "0.25/1"}
    fixed_k.save_rows(store, fewer, [])
    with pytest.raises(UserError, match="sensitivity_all"):
        fixed_k_table(_profile(tmp_path, [CK]))
    fixed_k.save_rows(store, hashes, [])
    monkeypatch.setattr(fixed_k, "MEASURE_VERSION", "changed")
    assert fixed_k.stored_rows(store, hashes) is None
    monkeypatch.setattr(sensitivity_module, "MEASURE_VERSION", "changed")
    with pytest.raises(UserError, match="sensitivity_all"):
        fixed_k_table(_profile(tmp_path, [CK]))


def test_missing_files_name_the_fix(tmp_path):
    # the function that makes them, by its module path (not the pre-rename pipeline.pipeline)
    with pytest.raises(UserError, match=r"linguistic_collapse\.pipeline\.jobs\.sensitivity_all"):
        sensitivity_table(_profile(tmp_path, [CK]))
    with pytest.raises(UserError, match=r"linguistic_collapse\.pipeline\.jobs\.sensitivity_all"):
        fixed_k_table(_profile(tmp_path, [CK]))


def test_findings_record_the_stability_numbers(tmp_path):
    summary = pd.DataFrame([{"measure": "nc1_cdnv", "fraction": f, "shift_mean": -0.246 * f,
                             "shift_sd": 0.02, "shift_sd_ucl": 0.0883, "between_sd": 0.67,
                             "stable": False, "min_models": 5.0} for f in (0.25, 0.5)])
    table = pd.DataFrame({"num_classes": [1629, 1801, 1700]})
    findings = Findings(tmp_path / "findings.md", "03_measure")
    record_findings(findings, summary, table, "s.csv", "t.csv")
    got = {k: (v, s) for k, v, s in findings.rows}
    assert got["sensitivity nc1_cdnv shared shift"] == ("-0.123", "s.csv: row nc1_cdnv at fraction 0.5, shift_mean")
    assert got["sensitivity nc1_cdnv shift sd upper limit"][0] == "0.088"
    assert got["sensitivity nc1_cdnv minimum models"][0] == "5"
    assert got["sensitivity nc1_cdnv between-model sd"][0] == "0.670"
    assert got["sensitivity nc1_cdnv stable"][0] == "no"
    assert got["sensitivity K min"] == ("1,629", "t.csv: num_classes, min") and got["sensitivity K max"][0] == "1,801"


def test_stability_rule_states_the_needed_spread():
    """6 models: the observed spread must be at most 0.10 / 2.09 = 0.048 of the between-model sd
    (the pre-registration's table)."""
    text = sensitivity_module.stability_rule(6, 42)
    assert "6 models' shifts" in text and "42 primary models" in text and "0.048 x" in text
