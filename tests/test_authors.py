"""linguistic_collapse.tables.authors: the authors' measurement CSVs (synthetic files in their format) into our schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.tables import authors, results

LATER = ["model", "n_params", "val_acc", "val_loss", "perplex", "cdnv", "norms_mean", "norms_var",
         "etf_error", "interfere_mean", "interfere_var", "log_kern_mean", "log_kern_var", "dual_error",
         "simdot_mean", "simdot_var", "simcos_mean", "simcos_var", "dists_mean", "dists_var", "hits",
         "misses", "norms_log_mean", "norms_log_var"]


def later_file(path, models):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({c: rng.uniform(0.1, 2.0, len(models)) for c in LATER[1:]})
    df.insert(0, "model", models)
    df["n_params"] = [10_000 * (i + 1) for i in range(len(models))]
    df["hits"], df["misses"] = 30.0, 10.0
    df["interfere_mean"], df["interfere_var"] = 55.0, 900.0  # raw dot products: not our cosines
    df.to_csv(path, index=False)
    return df


def may_file(path, models):
    df = pd.DataFrame({"model": models, "n_params": [10_000 * (i + 1) for i in range(len(models))],
                       "val_acc": 0.5, "val_loss": 2.0, "cdnv": 9.0,
                       "interfere_mean": -0.02, "interfere_std": 0.1})
    df.to_csv(path, index=False)
    return df


def test_model_names():
    ck = authors.parse_model_name("02x0768_01d07@0")
    assert str(ck) == "L2-d768-e1-wd0.0005-s8-ck1"  # replica 07 is seed 8 (grid seed 0 = no SS)
    assert str(authors.parse_model_name("12x1024_10L@5")) == "L12-d1024-e10-wd0.1-s0-ck6"
    with pytest.raises(ValueError, match="LLxDDDD_EEW"):
        authors.parse_model_name("2x768-1d@0")


def test_import_maps_merges_and_writes_our_schema(tmp_path):
    models = ["01x0064_01d@0", "02x0768_01d00@0", "04x0128_10L@5"]
    later = later_file(tmp_path / "lc-later.csv", models)
    may_file(tmp_path / "lc-may.csv", models[:2])
    out = tmp_path / "authors.csv"
    table = authors.import_authors([tmp_path / "lc-later.csv", tmp_path / "lc-may.csv"], out)
    assert list(table.columns) == results.SPEC_COLUMNS + results.RESULT_COLUMNS + authors.imported_measures()
    assert authors.imported_measures()[:len(MEASURES)] == MEASURES
    assert {"nc2_etf_error", "nc3_duality_error"} <= set(authors.imported_measures())
    row = table.set_index("name").loc["L1-d64-e1-wd0.0005-s0-ck1"]
    src = later.set_index("model").loc["01x0064_01d@0"]
    assert row["nc1_cdnv"] == pytest.approx(src["cdnv"])  # first file listed wins
    assert row["nc2_norm_cv"] == pytest.approx(np.sqrt(src["norms_var"]) / src["norms_mean"])
    assert row["nc2_lognorm_cv"] == pytest.approx(np.sqrt(src["norms_log_var"]) / src["norms_log_mean"])
    assert row["gnc2_logkernel_var"] == pytest.approx(src["log_kern_var"])
    assert row["nc3_duality_mean"] == pytest.approx(src["simcos_mean"])
    assert row["unc3_duality_cv"] == pytest.approx(np.sqrt(src["simcos_var"]) / src["simcos_mean"])
    assert row["nc4_agreement"] == pytest.approx(0.75)
    assert row["nc2_etf_error"] == pytest.approx(src["etf_error"])  # as logged
    assert row["nc3_duality_error"] == pytest.approx(src["dual_error"])
    assert row["nc2_interference_cv"] == pytest.approx(0.1 / 0.02)  # cosines from the May file
    assert np.isnan(row["nc1_cdnv_galanti"])  # no file has it: empty
    third = table.set_index("name").loc["L4-d128-e10-wd0.1-s0-ck6"]
    assert np.isnan(third["nc2_interference_mean"])  # only in the later file: dot products, not mapped
    assert table.attrs["sources"]["nc1_cdnv_galanti"].startswith("empty")
    assert table.attrs["sources"]["nc3_duality_error"] == "dual_error"
    back = results.load_table(out)  # notebooks 04/05 read it like our own table
    assert len(back) == 3 and back["seed"].tolist() == [0, 1, 0]


def test_import_errors_and_cli(tmp_path, capsys):
    later_file(tmp_path / "a.csv", ["01x0064_01d@0", "bad-name"])
    with pytest.raises(UserError, match="a.csv.*bad-name"):
        authors.import_authors([tmp_path / "a.csv"])
    with pytest.raises(UserError, match="no such file"):
        authors.import_authors([tmp_path / "missing.csv"])
    later_file(tmp_path / "b.csv", ["01x0064_01d@0"])
    assert authors.import_authors_cli([str(tmp_path / "b.csv"), "--out", str(tmp_path / "o.csv")]) == 0
    assert "1 models" in capsys.readouterr().out and (tmp_path / "o.csv").is_file()
