"""Sample-size sensitivity tables (linguistic_collapse.tables.sensitivity) from files laid out as the pipeline writes
them; the collection itself is tested end to end in tests/test_pipeline.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import Layout, atomic_write_json
from linguistic_collapse.lm.runs import RunName
from linguistic_collapse.nc.classstats import ClassStats
from linguistic_collapse.nc.measure import measure_stats
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.nc.stats_file import read_stats
from linguistic_collapse.nc.subset import restrict_classes
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.sensitivity import (
    STABLE_SHARE,
    add_findings,
    changes,
    fixed_k_table,
    sensitivity_figure,
    sensitivity_table,
    stability,
)

FRACTIONS, DRAWS = (0.25, 0.5, 1.0), 2
V, D = 12, 4
CK = RunName.parse("L1-d32-e1-wd0.0005-s0-ck1")


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
    summary = stability(table, grid).set_index("measure")
    assert summary.loc["nc1_cdnv", "half_change_mean"] == pytest.approx(0.04)
    assert summary.loc["nc1_cdnv", "stable"]  # 0.08 < STABLE_SHARE
    assert not stability(table, _grid(0.04 / STABLE_SHARE / 2)).set_index("measure").loc[
        "nc1_cdnv", "stable"]  # the same change against half the spread: ratio 0.2
    sensitivity_figure(table, grid, MEASURES[:2], ncols=2)


def test_fixed_k_uses_the_classes_of_every_sample(tmp_path):
    """Each sample is measured on the classes seen in all samples of its run: K is one number,
    and the measures equal those of the statistics restricted by hand."""
    rng = np.random.default_rng(1)
    paths, labels = {}, {}
    for f in FRACTIONS:
        for d in range(DRAWS if f < 1 else 1):
            labels[f, d] = rng.integers(0, V, 40)  # (40,)
            paths[f, d] = _write(tmp_path, CK, f, d, labels[f, d], 1.0)
    common = np.logical_and.reduce([np.bincount(y, minlength=V) > 0 for y in labels.values()])
    table = fixed_k_table(_profile(tmp_path, [CK]))
    assert (table["num_classes"] == common.sum()).all() and common.sum() < V
    row = table[(table["fraction"] == 0.5) & (table["draw"] == 1)].iloc[0]
    want = measure_stats(restrict_classes(read_stats(paths[0.5, 1])[0], torch.from_numpy(common)))[0]
    for m, v in want.items():
        if m == "undefined":
            continue
        assert row[m] == pytest.approx(v, rel=1e-12, nan_ok=True)


def test_missing_files_name_the_fix(tmp_path):
    with pytest.raises(UserError, match="sensitivity_all"):
        sensitivity_table(_profile(tmp_path, [CK]))
    with pytest.raises(UserError, match="sensitivity_all"):
        fixed_k_table(_profile(tmp_path, [CK]))


def test_findings_record_the_stability_numbers(tmp_path):
    summary = pd.DataFrame([{"measure": "nc1_cdnv", "half_change_mean": 0.123, "half_change_sd": 0.02,
                             "between_sd": 0.67, "stable": False}])
    table = pd.DataFrame({"num_classes": [1629, 1801, 1700]})
    findings = Findings(tmp_path / "findings.md", "03_measure")
    add_findings(findings, summary, table, "s.csv", "t.csv")
    got = {k: (v, s) for k, v, s in findings.rows}
    assert got["sensitivity nc1_cdnv half change mean"] == ("+0.123", "s.csv: row nc1_cdnv, half_change_mean")
    assert got["sensitivity nc1_cdnv between-model sd"][0] == "0.670"
    assert got["sensitivity nc1_cdnv stable"][0] == "no"
    assert got["sensitivity K min"] == ("1,629", "t.csv: num_classes, min") and got["sensitivity K max"][0] == "1,801"
