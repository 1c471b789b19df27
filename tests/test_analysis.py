"""lib.analysis against plain re-implementations (scipy, numpy lstsq, loops) and known cases."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lib import analysis
from lib.analysis import MEASURES
from lib.model import RunName
from lib.paths import atomic_write_json, read_json

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


def write_fake_out_dir(out_dir) -> list[RunName]:
    names = []
    for i, (depth, width, epochs, wd, seed, n_params, losses) in enumerate(SPECS):
        run = RunName(depth, width, epochs, wd, seed)
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
    table = analysis.build_results_table(out_dir)
    assert list(table.columns) == analysis.SPEC_COLUMNS + analysis.RESULT_COLUMNS + MEASURES
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
    table = analysis.build_results_table(out_dir, [RunName.parse("L2-d64-e3-wd0.1-s0"),
                                                   RunName.parse("L1-d32-e1-wd0.0005-s0-ck1")])
    assert sorted(table["name"]) == ["L1-d32-e1-wd0.0005-s0-ck1", "L2-d64-e3-wd0.1-s0-ck3"]


def test_results_table_missing_files_are_listed(out_dir):
    wanted = [RunName.parse("L1-d32-e1-wd0.0005-s0-ck1"), RunName.parse("L4-d32-e1-wd0.0005-s0-ck1")]
    with pytest.raises(FileNotFoundError, match="L4-d32-e1-wd0.0005-s0") as err:
        analysis.build_results_table(out_dir, wanted)
    assert "results.json" in str(err.value) and "metrics" in str(err.value)
    with pytest.raises(FileNotFoundError, match="metrics"):
        analysis.build_results_table(out_dir / "nowhere")


def test_results_table_missing_measure(out_dir):
    path = out_dir / "metrics" / "L1-d32-e1-wd0.0005-s0-ck1.json"
    metrics = read_json(path)
    del metrics["nc4_agreement"]
    atomic_write_json(path, metrics)
    with pytest.raises(ValueError, match="nc4_agreement"):
        analysis.build_results_table(out_dir)


def test_save_table_roundtrip(out_dir, tmp_path):
    table = analysis.build_results_table(out_dir)
    path = analysis.save_table(table, tmp_path / "runs" / "results.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == list(table.columns)
    np.testing.assert_allclose(back["nc1_cdnv"], table["nc1_cdnv"])


# ---------------------------------------------------------------------------------------------
# Correlations


def synthetic_table(n: int = 12, seed: int = 1, noise: float = 0.05) -> pd.DataFrame:
    """Models whose loss falls with size and epochs; measures tied to loss plus noise."""
    rng = np.random.default_rng(seed)
    n_params = 10 ** rng.uniform(4, 7, n)
    epochs = rng.choice([1, 3, 10], n)
    loss = 5 - 0.4 * np.log10(n_params) - 0.05 * epochs + noise * rng.standard_normal(n)
    table = pd.DataFrame({"n_params": n_params, "epochs": epochs, "val_loss": loss})
    for k, m in enumerate(MEASURES):
        table[m] = np.exp(loss * (k % 3 + 1) / 3 + 0.3 * rng.standard_normal(n))
    table["nc2_interference_mean"] = 0.1 * loss + 0.2 * rng.standard_normal(n)  # may be negative
    return table


def test_correlate_matches_scipy_and_log_transform():
    table = synthetic_table()
    corr = analysis.correlate(table, n_bootstrap=200).set_index("measure")
    assert list(corr.index) == MEASURES
    for m in MEASURES:
        x = table[m].to_numpy()
        if analysis.MEASURE_INFO[m].transform == "log":
            x = np.log10(x)
        r = stats.pearsonr(x, table["val_loss"]).statistic
        assert corr.loc[m, "r"] == pytest.approx(r, abs=1e-10)
        assert corr.loc[m, "r2"] == pytest.approx(r * r, abs=1e-10)
        assert corr.loc[m, "n"] == len(table)
    assert corr.loc["nc1_cdnv", "transform"] == "log" and corr.loc["nc4_agreement", "transform"] == "linear"


def test_correlate_bootstrap_ci_is_seeded_and_brackets():
    table = synthetic_table()
    a = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=300, seed=3).iloc[0]
    b = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=300, seed=3).iloc[0]
    c = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=300, seed=4).iloc[0]
    assert a["r2_ci_low"] == b["r2_ci_low"] and a["r2_ci_high"] == b["r2_ci_high"]
    assert (a["r2_ci_low"], a["r2_ci_high"]) != (c["r2_ci_low"], c["r2_ci_high"])
    assert 0 <= a["r2_ci_low"] <= a["r2"] <= a["r2_ci_high"] <= 1


def test_bootstrap_ci_against_loop():
    x, y = np.arange(8.0), np.array([1.0, 3, 2, 5, 4, 6, 8, 7])
    low, high = analysis.bootstrap_r2_ci(x, y, n_bootstrap=100, seed=0)
    idx = np.random.default_rng(0).integers(0, 8, size=(100, 8))
    r2 = []
    for row in idx:
        xs, ys = x[row], y[row]
        if np.ptp(xs) > 0 and np.ptp(ys) > 0:
            r2.append(np.corrcoef(xs, ys)[0, 1] ** 2)
    assert (low, high) == pytest.approx(tuple(np.percentile(r2, [2.5, 97.5])))


def test_partial_correlation_against_lstsq_residuals():
    table = synthetic_table(n=15, seed=2)
    row = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=10).iloc[0]
    x, y = np.log10(table["nc1_cdnv"].to_numpy()), table["val_loss"].to_numpy()
    Z = np.column_stack([np.ones(len(y)), np.log10(table["n_params"]), table["epochs"]])  # (n, 3)
    resid = lambda v: v - Z @ np.linalg.lstsq(Z, v, rcond=None)[0]  # noqa: E731
    assert row["partial_r"] == pytest.approx(np.corrcoef(resid(x), resid(y))[0, 1], abs=1e-10)
    # p of x's coefficient in y ~ Z + x, by the textbook t-test
    X = np.column_stack([Z, x])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - X.shape[1]
    s2 = np.sum((y - X @ beta) ** 2) / dof
    se = np.sqrt(s2 * np.linalg.inv(X.T @ X)[-1, -1])
    p = 2 * stats.t.sf(abs(beta[-1] / se), dof)
    assert row["partial_p"] == pytest.approx(p, rel=1e-8)
    assert row["note"] == ""


def test_correlate_too_few_models_and_nonpositive():
    table = synthetic_table(n=2)
    corr = analysis.correlate(table, ["nc1_cdnv", "nc4_agreement"], n_bootstrap=10)
    assert corr["r"].isna().all() and corr["partial_r"].isna().all()
    assert (corr["note"] == "too few models (n=2)").all()
    table = synthetic_table(n=6)
    table.loc[[0, 1], "nc1_cdnv"] = [0.0, -1.0]
    row = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=10).iloc[0]
    assert row["n"] == 4 and "dropped 2 non-positive" in row["note"]
    assert np.isfinite(row["r"]) and math.isnan(row["partial_r"])  # 4 < 2 controls + 3
    assert "too few models for partial" in row["note"]


def test_correlate_drops_constant_controls():
    table = synthetic_table(n=8).assign(epochs=1)
    row = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=10).iloc[0]
    assert np.isfinite(row["partial_r"]) and "constant controls dropped: epochs" in row["note"]


# ---------------------------------------------------------------------------------------------
# Permutation test


def replica_table(x, y) -> pd.DataFrame:
    return pd.DataFrame({"val_loss": y, "nc4_agreement": x, "nc1_cdnv": np.exp(x)})


def test_permutation_matrix_rows_are_permutations():
    perms = analysis.permutation_matrix(7, 50, seed=0)
    assert perms.shape == (50, 7)
    assert (np.sort(perms, axis=1) == np.arange(7)).all()
    assert (perms == analysis.permutation_matrix(7, 50, seed=0)).all()


def test_permutation_p_matches_slow_loop():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(9)
    y = 0.4 * x + rng.standard_normal(9)
    row = analysis.permutation_test(replica_table(x, y), ["nc4_agreement"], n_permutations=500, seed=7).iloc[0]
    r_obs = stats.pearsonr(x, y).statistic
    hits = 0
    for perm in analysis.permutation_matrix(9, 500, seed=7):
        hits += abs(stats.pearsonr(x, y[perm]).statistic) >= abs(r_obs) - 1e-12
    assert row["r"] == pytest.approx(r_obs) and row["r2"] == pytest.approx(r_obs**2)
    assert row["p"] == hits / 500
    assert row["significant"] == (hits / 500 < 0.05)


def test_permutation_strong_and_independent_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(21)
    strong = analysis.permutation_test(replica_table(x, 2 * x + 0.3 * rng.standard_normal(21)),
                                       ["nc4_agreement"], n_permutations=10_000).iloc[0]
    assert strong["p"] < 0.01 and strong["significant"]
    indep = analysis.permutation_test(replica_table(x, rng.standard_normal(21)),
                                      ["nc4_agreement"], n_permutations=10_000).iloc[0]
    assert indep["p"] > 0.05 and not indep["significant"]


def test_permutation_uses_log_scale_for_log_measures():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(6), rng.standard_normal(6)
    row = analysis.permutation_test(replica_table(x, y), ["nc1_cdnv"], n_permutations=100).iloc[0]
    assert row["r"] == pytest.approx(stats.pearsonr(x / np.log(10), y).statistic)


def test_permutation_too_few_replicas():
    with pytest.raises(ValueError, match="at least 3 seed-only replicas, got 2; add seeds to grid.replicas"):
        analysis.permutation_test(replica_table([1.0, 2.0], [3.0, 1.0]))


def test_replica_rows(out_dir):
    table = analysis.build_results_table(out_dir)
    spec = {"depth": 2, "width": 64, "epochs": 1, "weight_decay": 5e-4, "seeds": [0, 1, 2]}
    reps = analysis.replica_rows(table, spec)
    assert list(reps["name"]) == ["L2-d64-e1-wd0.0005-s1-ck1"]  # seed 0 of this variant absent
    spec = argparse.Namespace(depth=2, width=64, epochs=3, weight_decay=0.1, seeds=None)
    assert list(analysis.replica_rows(table, spec)["checkpoint"]) == [3]  # final checkpoint only
    with pytest.raises(ValueError, match="weight_decay"):
        analysis.replica_rows(table, {"depth": 2, "width": 64, "epochs": 1})


def test_scaling_table_long_format(out_dir):
    table = analysis.build_results_table(out_dir)
    long = analysis.scaling_table(table, ["nc1_cdnv", "nc4_agreement"])
    assert len(long) == 2 * len(table)
    assert {"width", "depth", "epochs_trained", "weight_decay", "measure", "value"} <= set(long.columns)
    one = long[(long["name"] == table["name"][0]) & (long["measure"] == "nc4_agreement")]
    assert one["value"].item() == table["nc4_agreement"][0]


# ---------------------------------------------------------------------------------------------
# Tokens


class FakeTokenizer:
    """Byte-level-BPE-like decode: a leading 'Ġ' marks a space."""

    vocab = {0: "ĠLily", 1: "Ġthe", 2: "Tom", 3: ".", 4: "ĠTimmy", 5: "Ġlily", 6: "Ġmaxwell"}

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids).replace("Ġ", " ")


def per_class_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "token_id": [0, 1, 2, 3, 4, 5, 6],
        "count": [50, 400, 30, 300, 20, 5, 15],
        "sigma2": np.ones(7),
        "norm": np.ones(7),
        "duality": np.ones(7),
        "variability": [0.1, 2.0, 0.2, 1.5, 0.3, 0.05, 1.0],
        "interference": [0.01, 0.2, 0.02, 0.3, 0.03, 0.0, 0.1],
    })


def test_token_table_decodes_and_frequencies():
    tokens = analysis.token_table(per_class_frame(), FakeTokenizer())
    assert list(tokens["token"]) == ["Lily", "the", "Tom", ".", "Timmy", "lily", "maxwell"]
    assert tokens["frequency"].sum() == pytest.approx(1.0)
    assert tokens["frequency"][1] == pytest.approx(400 / 820)
    with pytest.raises(ValueError, match="variability"):
        analysis.token_table(per_class_frame().drop(columns="variability"), FakeTokenizer())


def test_first_name_table():
    tokens = analysis.token_table(per_class_frame(), FakeTokenizer())
    table = analysis.first_name_table(tokens, names=["lily", "tom", "timmy", "max"])
    names = table[table["kind"] == "first name"]
    assert list(names["token"]) == ["Lily", "Tom", "Timmy", "lily"]  # by count; 'maxwell' is not 'max'
    avg = table.set_index("token").loc["average token"]
    assert avg["variability"] == pytest.approx(np.mean([0.1, 2.0, 0.2, 1.5, 0.3, 0.05, 1.0]))
    assert avg["count"] == pytest.approx(820 / 7)
    weighted = table.set_index("token").loc["average token (count-weighted)"]
    w = np.array([50, 400, 30, 300, 20, 5, 15])
    assert weighted["interference"] == pytest.approx(np.dot(w, [0.01, 0.2, 0.02, 0.3, 0.03, 0.0, 0.1]) / w.sum())


def test_first_names_file():
    names = analysis.load_first_names()
    assert 150 <= len(names) <= 300
    assert {"lily", "tom", "timmy", "sarah"} <= names
    assert all(n == n.lower() and n.isalpha() for n in names)


def test_most_and_least_collapsed():
    tokens = analysis.token_table(per_class_frame(), FakeTokenizer())
    out = analysis.most_and_least_collapsed(tokens, k=2, min_count=10)
    assert list(out["token"]) == ["Lily", "Tom", "the", "."]
    assert list(out["group"]) == ["most collapsed"] * 2 + ["least collapsed"] * 2


def test_nearest_classes_against_loop():
    rng = np.random.default_rng(0)
    counts = np.array([3, 0, 5, 2, 4, 1])
    sums = rng.standard_normal((6, 4)) * counts[:, None]
    out = analysis.nearest_classes({"counts": counts, "sums": sums}, token_id=2, k=3)
    present = [c for c in range(6) if counts[c] > 0]
    mu = {c: sums[c] / counts[c] for c in present}
    mu_g = np.mean([mu[c] for c in present], axis=0)
    m = {c: mu[c] - mu_g for c in present}
    cos = {c: m[c] @ m[2] / (np.linalg.norm(m[c]) * np.linalg.norm(m[2])) for c in present if c != 2}
    best = sorted(cos, key=cos.get, reverse=True)[:3]
    assert list(out["token_id"]) == best
    np.testing.assert_allclose(out["cosine"], [cos[c] for c in best])
    means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.nan)
    assert list(analysis.nearest_classes(means, 2, k=3)["token_id"]) == best
    torch = pytest.importorskip("torch")  # stats files load as torch tensors
    stats = {"counts": torch.tensor(counts), "sums": torch.tensor(sums)}
    assert list(analysis.nearest_classes(stats, 2, k=3)["token_id"]) == best
    with pytest.raises(ValueError, match="token 1 is not a class"):
        analysis.nearest_classes({"counts": counts, "sums": sums}, token_id=1)


# ---------------------------------------------------------------------------------------------
# Summary and CLI


def test_summary_numbers_rounding():
    table = pd.DataFrame({"val_loss": [2.123456, 3.0, 1.0], "nc1_cdnv": [1.23456e-5, 2e-5, np.nan]})
    out = analysis.summary_numbers(table, ["nc1_cdnv"]).set_index("quantity")
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
    runs = analysis.load_run_results(out_dir)
    assert sorted(runs) == sorted(str(RunName(*s[:5])) for s in SPECS)
    assert runs["L2-d64-e3-wd0.1-s0"]["n_params"] == 160_000
    with pytest.raises(FileNotFoundError, match="train first"):
        analysis.load_run_results(tmp_path / "empty")


def test_table1_with_too_few_replicas_says_so_and_draws_a_note():
    import matplotlib

    matplotlib.use("Agg")
    from lib.analysis import MEASURES, table1
    from lib.plots import permutation_figure

    two = pd.DataFrame({"val_loss": [1.0, 2.0], **{m: [0.1, 0.2] for m in MEASURES}})
    out = table1(two, n_permutations=10)
    assert out["r"].isna().all() and out["note"].str.contains("n=2").all()
    fig = permutation_figure(out)
    assert "too few seed-only replicas" in fig.axes[0].texts[0].get_text()


def test_replica_rows_include_the_grid_seed():
    table = pd.DataFrame({"depth": 1, "width": 8, "epochs": 1, "weight_decay": 5e-4, "checkpoint": 1,
                          "seed": [0, 1, 2, 3, 9]})
    spec = {"depth": 1, "width": 8, "epochs": 1, "weight_decay": 5e-4, "seeds": [1, 2, 3]}
    assert list(analysis.replica_rows(table, spec)["seed"]) == [1, 2, 3]
    assert list(analysis.replica_rows(table, spec, main_seed=0)["seed"]) == [0, 1, 2, 3]


def test_paper_claims_verdicts():
    corr = pd.DataFrame({"measure": ["nc1_cdnv", "nc2_norm_cv", "nc3_duality_mean"], "r2": [0.8, 0.6, 0.05]})
    out = analysis.paper_claims(corr).set_index("measure")["here"]
    assert out["nc1_cdnv"] == "holds"  # strong, R^2 0.8
    assert out["nc2_norm_cv"] == "does not hold"  # negligible claimed, R^2 0.6
    assert out["nc3_duality_mean"] == "holds"  # negligible, R^2 0.05
    assert out["nc4_agreement"] == "undetermined"  # no row
