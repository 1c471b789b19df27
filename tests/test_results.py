"""linguistic_collapse.tables.results: files -> tables, row selections and display rounding, on fake producer outputs."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import atomic_write_json, read_json
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.tables import analysis, results

# ---------------------------------------------------------------------------------------------
# Fake producer outputs

SPECS = [  # (depth, width, epochs, wd, seed, n_params, {epoch: val_loss})
    (1, 32, 1, 0.0005, 0, 50_000, {1: 3.10}),
    (2, 32, 1, 0.0005, 0, 70_000, {1: 2.90}),
    (1, 64, 1, 0.0005, 0, 120_000, {1: 2.70}),
    (2, 64, 3, 0.1, 0, 160_000, {1: 2.80, 2: 2.50, 3: 2.40}),
    (2, 64, 1, 0.0005, 1, 160_000, {1: 2.62}),
]


def fake_measures(loss: float, i: int) -> dict[str, float]:
    """Measures loosely tied to the loss, with i-dependent wobble (all positive)."""
    wobble = 1 + 0.1 * math.sin(3 * i)
    values = {m: (k + 1) * 0.01 * loss**2 * wobble for k, m in enumerate(MEASURES)}
    values["nc4_agreement"] = 1 / loss
    return values


def write_fake_out_dir(out_dir) -> list[ModelName]:
    names = []
    for i, (depth, width, epochs, wd, seed, n_params, losses) in enumerate(SPECS):
        run = ModelName(depth, width, epochs, wd, seed)
        cks = [{"epoch": e, "val_loss": v, "val_acc": 0.5 - v / 10, "val_ppl": math.exp(v)} for e, v in losses.items()]
        atomic_write_json(out_dir / "models" / str(run) / "results.json",
                          {"spec": run.as_dict(), "n_params": n_params, "checkpoints": cks})
        for e, loss in losses.items():
            ck = run.at(e)
            atomic_write_json(out_dir / "metrics" / f"{ck}.json",
                              {**fake_measures(loss, i + e), "num_classes": 100 + i, "model": str(ck)})
            names.append(ck)
    return names


@pytest.fixture
def out_dir(tmp_path):
    write_fake_out_dir(tmp_path)
    return tmp_path


def test_results_table_columns_and_values(out_dir):
    table = results.build_results_table(out_dir)
    assert list(table.columns) == results.SPEC_COLUMNS + results.RESULT_COLUMNS + MEASURES
    assert len(table) == 7
    row = table[table["name"] == "L2-d64-e3-wd0.1-s0-ck2"].iloc[0]
    assert row["val_loss"] == pytest.approx(2.50)
    assert row["val_acc"] == pytest.approx(0.25)
    assert row["checkpoint"] == 2 and row["epochs"] == 3 and row["weight_decay"] == 0.1
    assert row["log_n_params"] == pytest.approx(math.log10(160_000))
    metrics = read_json(out_dir / "metrics" / "L2-d64-e3-wd0.1-s0-ck2.json")
    for m in MEASURES:
        assert row[m] == pytest.approx(metrics[m])
    assert list(table["depth"]) == sorted(table["depth"])


def test_results_table_given_checkpoints_and_bare_run(out_dir):
    table = results.build_results_table(out_dir, [ModelName.parse("L2-d64-e3-wd0.1-s0"),
                                                   ModelName.parse("L1-d32-e1-wd0.0005-s0-ck1")])
    assert sorted(table["name"]) == ["L1-d32-e1-wd0.0005-s0-ck1", "L2-d64-e3-wd0.1-s0-ck3"]


def test_results_table_missing_files_are_listed(out_dir):
    wanted = [ModelName.parse("L1-d32-e1-wd0.0005-s0-ck1"), ModelName.parse("L4-d32-e1-wd0.0005-s0-ck1")]
    with pytest.raises(FileNotFoundError, match="L4-d32-e1-wd0.0005-s0") as err:
        results.build_results_table(out_dir, wanted)
    assert "results.json" in str(err.value) and "metrics" in str(err.value)
    with pytest.raises(FileNotFoundError, match="metrics"):
        results.build_results_table(out_dir / "nowhere")


def test_results_table_missing_measure(out_dir):
    path = out_dir / "metrics" / "L1-d32-e1-wd0.0005-s0-ck1.json"
    metrics = read_json(path)
    del metrics["nc4_agreement"]
    atomic_write_json(path, metrics)
    with pytest.raises(ValueError, match="nc4_agreement"):
        results.build_results_table(out_dir)


def test_results_table_refuses_metrics_of_other_weights(out_dir):
    """A checkpoint retrained after it was measured: its val_loss must not meet old measures."""
    run = ModelName(1, 32, 1, 0.0005, 0)
    results_path = out_dir / "models" / str(run) / "results.json"
    record = read_json(results_path)
    record["checkpoints"][0]["weights_sha256"] = "new"
    atomic_write_json(results_path, record)
    results.build_results_table(out_dir)  # metrics without a weights hash: nothing to compare
    metrics_path = out_dir / "metrics" / f"{run.at(1)}.json"
    atomic_write_json(metrics_path, {**read_json(metrics_path), "weights_sha256": "old"})
    with pytest.raises(ValueError, match="measured from other weights"):
        results.build_results_table(out_dir)
    atomic_write_json(metrics_path, {**read_json(metrics_path), "weights_sha256": "new"})
    assert len(results.build_results_table(out_dir)) == 7


def test_save_table_roundtrip(out_dir, tmp_path):
    table = results.build_results_table(out_dir)
    path = results.save_table(table, tmp_path / "runs" / "results.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(table.columns)
    np.testing.assert_allclose(back["nc1_cdnv"], table["nc1_cdnv"])


def test_replica_rows(out_dir):
    table = results.build_results_table(out_dir)
    spec = {"depth": 2, "width": 64, "epochs": 1, "weight_decay": 5e-4, "seeds": [0, 1, 2]}
    reps = results.replica_rows(table, spec)
    assert list(reps["name"]) == ["L2-d64-e1-wd0.0005-s1-ck1"]  # seed 0 of this variant absent
    spec = argparse.Namespace(depth=2, width=64, epochs=3, weight_decay=0.1, seeds=None)
    assert list(results.replica_rows(table, spec)["checkpoint"]) == [3]  # final checkpoint only
    with pytest.raises(ValueError, match="weight_decay"):
        results.replica_rows(table, {"depth": 2, "width": 64, "epochs": 1})


def test_scaling_table_long_format(out_dir):
    table = results.build_results_table(out_dir)
    long = results.scaling_table(table, ["nc1_cdnv", "nc4_agreement"])
    assert len(long) == 2 * len(table)
    assert {"width", "depth", "epochs_trained", "weight_decay", "measure", "value"} <= set(long.columns)
    one = long[(long["name"] == table["name"][0]) & (long["measure"] == "nc4_agreement")]
    assert one["value"].item() == table["nc4_agreement"][0]


def test_summary_numbers_rounding():
    table = pd.DataFrame({"val_loss": [2.123456, 3.0, 1.0], "nc1_cdnv": [1.23456e-5, 2e-5, np.nan]})
    out = results.summary_numbers(table, ["nc1_cdnv"]).set_index("quantity")
    assert out.loc["val_loss", "median"] == 2.123 and out.loc["val_loss", "n"] == 3
    assert out.loc["nc1_cdnv", "min"] == 1.235e-5 and out.loc["nc1_cdnv", "n"] == 2


def test_cli_analyze(out_dir, tmp_path):
    parser = argparse.ArgumentParser()
    analysis.register_cli(parser.add_subparsers())
    dest = tmp_path / "runs"
    args = parser.parse_args(["analyze", "--out-dir", str(out_dir), "--dest", str(dest),
                              "--n-bootstrap", "20", "--replicas", "L1-d32-e1-wd0.0005-s0"])
    with pytest.raises(ValueError, match="got 1"):  # only one replica of that run exists
        args.func(args)
    assert not dest.exists()
    args = parser.parse_args(["analyze", "--out-dir", str(out_dir), "--dest", str(dest), "--n-bootstrap", "20"])
    assert args.func(args) == 0
    assert len(pd.read_csv(dest / "results.csv")) == 7
    assert list(pd.read_csv(dest / "correlations.csv")["measure"]) == MEASURES


def test_load_run_results(out_dir, tmp_path):
    runs = results.load_run_results(out_dir)
    assert sorted(runs) == sorted(str(ModelName(*s[:5])) for s in SPECS)
    assert runs["L2-d64-e3-wd0.1-s0"]["n_params"] == 160_000
    with pytest.raises(FileNotFoundError, match="train first"):
        results.load_run_results(tmp_path / "empty")


def test_replica_rows_include_the_grid_seed():
    table = pd.DataFrame({"depth": 1, "width": 8, "epochs": 1, "weight_decay": 5e-4, "checkpoint": 1,
                          "seed": [0, 1, 2, 3, 9]})
    spec = {"depth": 1, "width": 8, "epochs": 1, "weight_decay": 5e-4, "seeds": [1, 2, 3]}
    assert list(results.replica_rows(table, spec)["seed"]) == [1, 2, 3]
    assert list(results.replica_rows(table, spec, main_seed=0)["seed"]) == [0, 1, 2, 3]
