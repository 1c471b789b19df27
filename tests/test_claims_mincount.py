"""The min-count robustness row: the metrics' ``min_count`` section as results columns, and R²
on all classes beside R² on classes with >= min_count samples (tolerant of older metrics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.core.paths import atomic_write_json, read_json
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.tables import analysis, results, robustness
from linguistic_collapse.tables.clusters import design_point_ids

from tests.test_results import write_fake_out_dir


def test_results_table_gets_min_count_columns_where_metrics_have_them(tmp_path):
    names = write_fake_out_dir(tmp_path)
    older = results.build_results_table(tmp_path)
    assert not [c for c in older.columns if "min_count" in c]  # no section: no columns
    path = tmp_path / "metrics" / f"{names[0]}.json"
    metrics = read_json(path)
    atomic_write_json(path, {**metrics, "min_count": {"min_count": 20, "num_classes": 40,
                                                      "nc1_cdnv": 0.5, "nc3_duality_mean": None}})
    table = results.build_results_table(tmp_path)
    row = table[table["name"] == str(names[0])].iloc[0]
    assert (row["min_count"], row["num_classes@min_count"], row["nc1_cdnv@min_count"]) == (20, 40, 0.5)
    assert np.isnan(row["nc3_duality_mean@min_count"])  # null: undefined
    assert table.loc[table["name"] != str(names[0]), "nc1_cdnv@min_count"].isna().all()
    assert list(table.columns[: len(older.columns)]) == list(older.columns)


def test_min_count_table_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    n = 20
    t = pd.DataFrame({"run": [f"r{i}" for i in range(n)], "depth": 1 + np.arange(n) % 4,
                      "width": 32, "epochs": 1, "val_loss": rng.uniform(3, 5, n)})
    t["nc1_cdnv"] = 10 ** (t["val_loss"] + 0.1 * rng.standard_normal(n))
    t["nc1_cdnv@min_count"] = 10 ** (t["val_loss"] + 0.5 * rng.standard_normal(n))
    t["num_classes@min_count"] = rng.integers(30, 40, n)
    t["min_count"] = 20.0
    out = robustness.min_count_table(t, MEASURES, n_bootstrap=200, seed=1)
    assert list(out["measure"]) == ["nc1_cdnv"]  # only measures with the column
    row = out.iloc[0]
    y = t["val_loss"].to_numpy()
    for col, key in (("nc1_cdnv", "R² all classes"), ("nc1_cdnv@min_count", "R² ≥ min_count")):
        x = np.log10(t[col].to_numpy())
        assert row[key] == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)
    boot = analysis.bootstrap_r(np.log10(t["nc1_cdnv@min_count"].to_numpy()), y, design_point_ids(t), 200, 1)
    assert (row["low@min_count"], row["high@min_count"]) == pytest.approx(analysis.percentile_ci(boot**2))
    assert row["R² ≥ min_count"] < row["R² all classes"] and row["min_count"] == 20
    assert row["classes kept (min-max)"] == f"{t['num_classes@min_count'].min()}–{t['num_classes@min_count'].max()}"


def test_min_count_table_says_when_metrics_predate_it():
    out = robustness.min_count_table(pd.DataFrame({"val_loss": [1.0, 2.0], "nc1_cdnv": [1.0, 2.0]}), n_bootstrap=10, seed=0)
    assert out.empty and out.attrs["note"] == robustness.NO_MIN_COUNT


def test_min_count_findings(tmp_path):
    from linguistic_collapse.tables.findings import Findings

    found = Findings(tmp_path / "f.md", "04_correlate")
    robustness.record_findings(found, robustness.min_count_table(pd.DataFrame({"val_loss": [1.0]}), n_bootstrap=10, seed=0))
    assert found.rows[0][1] == "not available" and robustness.NO_MIN_COUNT in found.rows[0][2]


def test_min_count_table_says_why_nc1_pinv_is_missing_and_reads_its_cutoffs():
    """nc1_pinv@min_count is empty in every metrics file (its pooled scatter cannot be
    restricted): the row says so instead of a silent n = 0; the cut-off variants are rows too,
    read on nc1_pinv's log scale, and a missing variant column is simply skipped."""
    rng = np.random.default_rng(2)
    n = 16
    t = pd.DataFrame({"run": [f"r{i}" for i in range(n)], "depth": 1 + np.arange(n) % 4,
                      "width": 32 * (1 + np.arange(n) // 4), "epochs": 1, "val_loss": rng.uniform(3, 5, n)})
    t["nc1_pinv"] = 10 ** (t["val_loss"] + 0.1 * rng.standard_normal(n))
    t["nc1_pinv@min_count"] = np.nan
    t["nc1_pinv_rtol1e3"] = 10 ** (t["val_loss"] + 0.3 * rng.standard_normal(n))
    t["min_count"] = 20.0
    out = robustness.min_count_table(t, ["nc1_pinv", "nc1_cdnv"], n_bootstrap=100, seed=0).set_index("measure")
    assert list(out.index) == ["nc1_pinv", "nc1_pinv_rtol1e3"]  # no nc1_cdnv column: skipped
    assert out.loc["nc1_pinv", "n"] == 0 and "pooled" in out.loc["nc1_pinv", "note"]
    assert out.loc["nc1_pinv", "n all classes"] == n
    x = np.log10(t["nc1_pinv_rtol1e3"].to_numpy())
    assert out.loc["nc1_pinv_rtol1e3", "R² all classes"] == pytest.approx(np.corrcoef(x, t["val_loss"])[0, 1] ** 2)
    assert "pooled" in out.loc["nc1_pinv_rtol1e3", "note"]
    from linguistic_collapse.tables.findings import Findings

    found = Findings("unused.md", "04_correlate")
    robustness.record_findings(found, out.reset_index())
    rec = {k: v for k, v, _ in found.rows}
    assert "pooled" in rec["NC1: Tr(Σ_W Σ_B⁺)/K: R² ≥ min_count"]
