"""linguistic_collapse.tables.analysis against plain re-implementations (scipy, numpy lstsq, loops) and known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.nc.registry import MEASURES, REGISTRY
from linguistic_collapse.tables import analysis
from scipy import stats

# ---------------------------------------------------------------------------------------------
# Correlations


def synthetic_table(n: int = 12, seed: int = 1, noise: float = 0.05) -> pd.DataFrame:
    """Models whose loss falls with size and epochs; measures tied to loss plus noise."""
    rng = np.random.default_rng(seed)
    n_params = 10 ** rng.uniform(4, 7, n)
    epochs = rng.choice([1, 3, 10], n)
    loss = 5 - 0.4 * np.log10(n_params) - 0.05 * epochs + noise * rng.standard_normal(n)
    table = pd.DataFrame({"n_params": n_params, "epochs": epochs, "checkpoint": epochs, "val_loss": loss})
    for k, m in enumerate(MEASURES):
        table[m] = np.exp(loss * (k % 3 + 1) / 3 + 0.3 * rng.standard_normal(n))
    table["nc2_interference_mean"] = 0.1 * loss + 0.2 * rng.standard_normal(n)  # may be negative
    return table


def test_correlate_matches_scipy_and_log_transform():
    table = synthetic_table()
    corr = analysis.correlate(table, n_bootstrap=200, seed=0).set_index("measure")
    assert list(corr.index) == MEASURES
    for m in MEASURES:
        x = table[m].to_numpy()
        if REGISTRY[m].transform == "log":
            x = np.log10(x)
        r = stats.pearsonr(x, table["val_loss"]).statistic
        assert corr.loc[m, "r"] == pytest.approx(r, abs=1e-10)
        assert corr.loc[m, "r2"] == pytest.approx(r * r, abs=1e-10)
        assert corr.loc[m, "n"] == len(table)
        assert corr.loc[m, "spearman"] == pytest.approx(stats.spearmanr(x, table["val_loss"]).statistic)
    assert corr.loc["nc1_cdnv", "transform"] == "log" and corr.loc["nc4_agreement", "transform"] == "linear"


def test_correlate_bootstrap_ci_is_seeded_and_brackets():
    table = synthetic_table()
    a = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=300, seed=3).iloc[0]
    b = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=300, seed=3).iloc[0]
    c = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=300, seed=4).iloc[0]
    assert a["r2_ci_low"] == b["r2_ci_low"] and a["r2_ci_high"] == b["r2_ci_high"]
    assert (a["r2_ci_low"], a["r2_ci_high"]) != (c["r2_ci_low"], c["r2_ci_high"])
    assert 0 <= a["r2_ci_low"] <= a["r2"] <= a["r2_ci_high"] <= 1


def test_cluster_bootstrap_never_splits_a_run_and_matches_a_loop():
    runs = np.array(["a", "a", "a", "b", "c", "c", "d", "e", "e", "e"])
    W = analysis.cluster_bootstrap_weights(runs, n_bootstrap=200, seed=0)
    assert W.shape == (200, 10)
    for run in set(runs):  # every row of a run carries the same weight in every resample
        assert (W[:, runs == run] == W[:, runs == run][:, :1]).all()
    groups = [np.flatnonzero(runs == g) for g in np.unique(runs)]
    assert (W[:, [g[0] for g in groups]].sum(axis=1) == len(groups)).all()  # 5 runs drawn each time
    # the weighted r equals r of the explicitly resampled rows
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(10), rng.standard_normal(10)
    got = analysis.weighted_pearson(x, y, W)
    draws = np.random.default_rng(0).integers(0, 5, size=(200, 5))
    for b in range(20):
        rows = np.concatenate([groups[g] for g in draws[b]])
        xs, ys = x[rows], y[rows]
        want = np.corrcoef(xs, ys)[0, 1] if np.ptp(xs) > 0 else np.nan
        assert got[b] == pytest.approx(want, abs=1e-10, nan_ok=True)


def test_correlate_bootstrap_resamples_runs():
    table = synthetic_table(n=12).assign(run=[f"r{i // 3}" for i in range(12)])
    row = analysis.correlate(table, ["nc4_agreement"], n_bootstrap=300, seed=2).iloc[0]
    x, y = table["nc4_agreement"].to_numpy(), table["val_loss"].to_numpy()
    boot = analysis.weighted_pearson(x, y, analysis.cluster_bootstrap_weights(table["run"], 300, 2))
    assert (row["r2_ci_low"], row["r2_ci_high"]) == pytest.approx(tuple(np.percentile(boot**2, [2.5, 97.5])))
    assert (row["r_ci_low"], row["r_ci_high"]) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    assert row["n_runs"] == 4


def test_partial_correlation_against_lstsq_residuals():
    table = synthetic_table(n=15, seed=2)
    row = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=10, seed=0).iloc[0]
    x, y = np.log10(table["nc1_cdnv"].to_numpy()), table["val_loss"].to_numpy()
    Z = np.column_stack([np.ones(len(y)), np.log10(table["n_params"]), table["checkpoint"]])  # (n, 3)
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
    corr = analysis.correlate(table, ["nc1_cdnv", "nc4_agreement"], n_bootstrap=10, seed=0)
    assert corr["r"].isna().all() and corr["partial_r"].isna().all()
    assert (corr["note"] == "too few models (n=2)").all()
    table = synthetic_table(n=6)
    table.loc[[0, 1], "nc1_cdnv"] = [0.0, -1.0]
    row = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=10, seed=0).iloc[0]
    assert row["n"] == 4 and "dropped 2 non-positive" in row["note"]
    assert np.isfinite(row["r"]) and math.isnan(row["partial_r"])  # 4 < 2 controls + 3
    assert "too few models for partial" in row["note"]


def test_correlate_drops_constant_controls():
    table = synthetic_table(n=8).assign(checkpoint=1)
    row = analysis.correlate(table, ["nc1_cdnv"], n_bootstrap=10, seed=0).iloc[0]
    assert np.isfinite(row["partial_r"]) and "constant controls dropped: checkpoint" in row["note"]


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
    row = analysis.permutation_test(replica_table(x, y), ["nc4_agreement"], n_permutations=500, seed=7, alpha=0.05).iloc[0]
    r_obs = stats.pearsonr(x, y).statistic
    hits = 0
    for perm in analysis.permutation_matrix(9, 500, seed=7):
        hits += abs(stats.pearsonr(x, y[perm]).statistic) >= abs(r_obs) - 1e-12
    assert row["r"] == pytest.approx(r_obs) and row["r2"] == pytest.approx(r_obs**2)
    assert row["p"] == (hits + 1) / 501  # the observed labelling counts: p = (b + 1) / (m + 1)
    assert row["p_holm"] == row["p"]  # one measure: nothing to adjust
    assert row["significant"] == ((hits + 1) / 501 < 0.05)
    assert row["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)


def test_permutation_strong_and_independent_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(21)
    strong = analysis.permutation_test(replica_table(x, 2 * x + 0.3 * rng.standard_normal(21)),
                                       ["nc4_agreement"], n_permutations=10_000, seed=0, alpha=0.05).iloc[0]
    assert strong["p"] < 0.01 and strong["significant"]
    indep = analysis.permutation_test(replica_table(x, rng.standard_normal(21)),
                                      ["nc4_agreement"], n_permutations=10_000, seed=0, alpha=0.05).iloc[0]
    assert indep["p"] > 0.05 and not indep["significant"]


def test_permutation_uses_log_scale_for_log_measures():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(6), rng.standard_normal(6)
    row = analysis.permutation_test(replica_table(x, y), ["nc1_cdnv"], n_permutations=100, seed=0, alpha=0.05).iloc[0]
    assert row["r"] == pytest.approx(stats.pearsonr(x / np.log(10), y).statistic)


def test_permutation_too_few_replicas():
    with pytest.raises(ValueError, match="at least 3 seed-only replicas, got 2; add seeds to grid.replicas"):
        analysis.permutation_test(replica_table([1.0, 2.0], [3.0, 1.0]), n_permutations=10, seed=0, alpha=0.05)


def test_table1_with_too_few_replicas_says_so_and_draws_a_note():
    import matplotlib

    matplotlib.use("Agg")
    from linguistic_collapse.figures.table1 import table1_figure
    from linguistic_collapse.tables.analysis import table1

    two = pd.DataFrame({"val_loss": [1.0, 2.0], **{m: [0.1, 0.2] for m in MEASURES}})
    out = table1(two, n_permutations=10, seed=0, alpha=0.05)
    assert out["r"].isna().all() and out["note"].str.contains("n=2").all()
    fig = table1_figure(out, alpha=0.05)
    assert "too few seed-only replicas" in fig.axes[0].texts[0].get_text()




def test_permutation_p_is_never_zero():
    x = np.arange(12.0)
    row = analysis.permutation_test(replica_table(x, 3 * x), ["nc4_agreement"], n_permutations=999, seed=0, alpha=0.05).iloc[0]
    assert row["p"] == 1 / 1000  # b = 0: p = 1 / (m + 1)
    assert analysis.format_p(row["p"], 999) == "≤ 1.0e-3"  # the floor 1/1000, "≤ floor"
    assert analysis.format_p(1 / 10_001, 10_000) == "≤ 1.0e-4"  # 9.999e-5 rounded up, never down
    assert analysis.format_p(1 / 1_501, 1_500) == "≤ 6.7e-4"  # 6.662e-4 rounded up
    assert analysis.format_p(2 / 10_001, 10_000) == "0.0002"
    assert analysis.format_p(0.0123, 999) == "0.012"


def test_holm_against_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then running maximum
    want = np.array([0.03, 0.06, 0.06, 0.02, np.nan])
    np.testing.assert_allclose(analysis.holm(p), want)


def test_table1_holm_column_and_display():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(21)
    table = replica_table(x, 2 * x + 0.5 * rng.standard_normal(21))
    out = analysis.permutation_test(table, ["nc4_agreement", "nc1_cdnv"], n_permutations=200, seed=0, alpha=0.05)
    np.testing.assert_allclose(out["p_holm"], analysis.holm(out["p"]))
    shown = analysis.table1_display(out)
    assert list(shown.columns) == ["measure", "n", "r", "R²", "Spearman ρ", "p", "Holm p"]
    assert shown["measure"][0] == "NC4: classifier agreement" and shown["p"][0] == "≤ 5.0e-3"
    assert "11 correlated measures" in analysis.MULTIPLICITY_NOTE.format(k=11)


def test_correlate_bootstrap_resamples_design_points():
    """With depth, width and epochs present, clusters are design points (replicas together)."""
    table = synthetic_table(n=12).assign(run=[f"r{i}" for i in range(12)], depth=1,
                                         width=[32 * (1 + i // 4) for i in range(12)], epochs=1)
    row = analysis.correlate(table, ["nc4_agreement"], n_bootstrap=300, seed=2).iloc[0]
    x, y = table["nc4_agreement"].to_numpy(), table["val_loss"].to_numpy()
    boot = analysis.weighted_pearson(x, y, analysis.cluster_bootstrap_weights(table["width"], 300, 2))
    assert (row["r_ci_low"], row["r_ci_high"]) == pytest.approx(tuple(np.percentile(boot, [2.5, 97.5])))
    assert (row["n_runs"], row["n_clusters"], row["n_eff"]) == (12, 3, pytest.approx(3.0))
