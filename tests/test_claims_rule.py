"""The claims' decision rule: strength bands, three-way verdicts on constructed intervals, the
equivalence test against the authors, design-point clusters and the copy of the rule in docs/reference.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.nc.registry import BANDS, band
from linguistic_collapse.tables import analysis, claims, verdicts
from linguistic_collapse.tables.clusters import cluster_counts, design_point_ids, kish_n_eff


def test_band_edges_belong_to_the_band_above():
    assert [band(v) for v in (0.0, 0.1499, 0.15, 0.4999, 0.5, 0.7999, 0.8, 1.0)] == [
        "negligible", "negligible", "some", "some", "clear", "clear", "strong", "strong"]
    assert list(BANDS) == ["negligible", "some", "clear", "strong"]
    with pytest.raises(ValueError, match="R²"):
        band(1.2)


@pytest.mark.parametrize(("low", "high", "claim", "want"), [
    (0.82, 0.95, "strong", "holds"), (0.80, 1.00, "strong", "holds"),  # edges inside
    (0.79, 0.95, "strong", "inconclusive"), (0.20, 0.79, "strong", "fails"),
    (0.00, 0.14, "negligible", "holds"), (0.00, 0.15, "negligible", "inconclusive"),
    (0.15, 0.60, "negligible", "fails"),
    (0.50, 0.79, "clear", "holds"), (0.81, 0.90, "clear", "fails"), (0.10, 0.49, "clear", "fails"),
    (0.45, 0.60, "clear", "inconclusive"), (np.nan, 0.5, "clear", "n/a"),
])
def test_band_verdict(low, high, claim, want):
    assert verdicts.band_verdict(low, high, claim) == want


def test_a_wider_interval_cannot_turn_a_failing_claim_into_holds():
    """The old rule ("the interval reaches the authors' value") rewarded imprecision."""
    assert verdicts.band_verdict(0.78, 0.89, "strong") == "inconclusive"
    assert verdicts.band_verdict(0.60, 0.95, "strong") == "inconclusive"
    assert verdicts.band_verdict(0.81, 0.89, "strong") == "holds"


@pytest.mark.parametrize(("low", "high", "sign", "want"), [
    (0.1, 0.9, 1, "holds"), (-0.9, -0.1, 1, "fails"), (-0.1, 0.9, 1, "inconclusive"),
    (-0.9, -0.1, -1, "holds"), (0.1, 0.9, -1, "fails"), (-0.9, 0.0, -1, "inconclusive"),
])
def test_side_verdict(low, high, sign, want):
    assert verdicts.side_verdict(low, high, sign) == want


@pytest.mark.parametrize(("low", "high", "want"), [
    (-0.09, 0.09, "equivalent"), (-0.11, 0.05, "inconclusive"), (0.11, 0.30, "different"),
    (-0.40, -0.12, "different"), (-0.2, 0.2, "inconclusive"), (0.05, 0.12, "inconclusive"),
])
def test_equivalence_verdict(low, high, want):
    assert verdicts.equivalence_verdict(low, high, margin=0.10) == want


def test_authors_draws_follow_their_interval():
    """Normal around their value with sd = 95 % width / 3.92: the draws' own 95 % interval is
    theirs (centred on the point), and the same seed gives the same draws."""
    lo, hi = verdicts.AUTHORS_R2_CI["nc1_cdnv"]
    d = verdicts.authors_r2_draws("nc1_cdnv", 0.911, 200_000)
    assert d.mean() == pytest.approx(0.911, abs=1e-3)
    assert np.percentile(d, 97.5) - np.percentile(d, 2.5) == pytest.approx(hi - lo, rel=0.02)
    assert (d[:10] == verdicts.authors_r2_draws("nc1_cdnv", 0.911, 200_000)[:10]).all()
    assert verdicts.authors_r2_draws("not_a_measure", 0.5, 10) is None


def test_r2_sd_matches_simulated_samples():
    """The delta-method sd of r² agrees with the sd over many bivariate-normal samples."""
    rng = np.random.default_rng(0)
    rho, n = 0.8, 200
    cov = [[1, rho], [rho, 1]]
    r2 = [np.corrcoef(*rng.multivariate_normal([0, 0], cov, n).T)[0, 1] ** 2 for _ in range(3000)]
    assert np.std(r2) == pytest.approx(verdicts.r2_sd(rho, n), rel=0.1)


def test_authors_epochs_draws_use_their_design_points(monkeypatch):
    monkeypatch.setattr(verdicts, "AUTHORS_R2_QUANTILES", {})  # their files not available
    d, how = verdicts.authors_epochs_draws("nc1_cdnv", 0.98, 0.961, 1, 100_000)
    want = verdicts.r2_sd(0.98, verdicts.AUTHORS_DESIGN_N_EFF[1])
    assert d.mean() == pytest.approx(0.961, abs=1e-3) and d.std() == pytest.approx(want, rel=0.02)
    assert how == verdicts.AUTHORS_NORMAL
    other, _ = verdicts.authors_epochs_draws("nc1_cdnv", 0.98, 0.961, 3, 100_000)
    assert other.std() < d.std()  # 30 design points at 3 epochs against n_eff 10.7 at 1 epoch
    assert verdicts.authors_epochs_draws("nc1_cdnv", np.nan, np.nan, 1, 10) == (None, "")
    assert verdicts.authors_epochs_draws("nc1_cdnv", 0.9, 0.81, 7, 10) == (None, "")  # no such length


def test_authors_epochs_draws_sample_their_stored_bootstrap(monkeypatch):
    """With their design-point bootstrap stored as quantiles, the draws follow it: a uniform
    distribution on [0.7, 0.9] stored as 101 quantiles comes back as one."""
    q = tuple(np.linspace(0.7, 0.9, 101))
    monkeypatch.setattr(verdicts, "AUTHORS_R2_QUANTILES", {"nc1_cdnv": {1: q}})
    d, how = verdicts.authors_epochs_draws("nc1_cdnv", 0.98, 0.961, 1, 100_000)
    assert how == verdicts.AUTHORS_BOOTSTRAP and d.min() >= 0.7 and d.max() <= 0.9
    assert np.percentile(d, [5, 50, 95]) == pytest.approx([0.71, 0.8, 0.89], abs=2e-3)


def test_difference_known_answers():
    """Against (almost) constant draws of theirs the ΔR² interval is ours shifted by their value."""
    ours = np.linspace(0.85, 0.95, 1001)  # 90 % interval [0.855, 0.945]
    theirs = np.full(1001, 0.9)
    out = verdicts.difference(0.90, ours, 0.9, theirs)
    assert out["dr2"] == pytest.approx(0.0)
    assert (out["dr2_low"], out["dr2_high"]) == pytest.approx((-0.045, 0.045), abs=1e-6)
    assert out["equivalence"] == "equivalent" and not out["equivalence_edge"]
    assert verdicts.difference(0.6, ours - 0.3, 0.9, theirs)["equivalence"] == "different"
    wide = np.linspace(0.6, 1.0, 1001)
    assert verdicts.difference(0.8, wide, 0.9, theirs)["equivalence"] == "inconclusive"
    assert verdicts.difference(0.9, ours, None, None)["equivalence"] == "n/a"


@pytest.mark.parametrize(("low", "high", "se", "want"), [
    (0.81, 0.95, 0.001, False), (0.801, 0.95, 0.001, True), (0.799, 0.95, 0.001, True),
    (0.70, 0.95, 0.01, False), (np.nan, 0.9, 0.01, False),
])
def test_at_edge_for_a_strength_claim(low, high, se, want):
    verdict = lambda lo, hi: verdicts.band_verdict(lo, hi, "strong")  # noqa: E731
    assert verdicts.at_edge(verdict, low, high, se, se) is want


def test_mc_se_of_a_limit_matches_repeated_bootstraps():
    """The binomial-formula SE of a percentile-interval limit, from one bootstrap, agrees with
    the spread of that limit over bootstraps with different seeds."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(42)
    y = 0.8 * x + 0.6 * rng.standard_normal(42)
    clusters = np.arange(42)
    lows, ses = [], []
    for seed in range(60):
        boot = analysis.bootstrap_r(x, y, clusters, 2000, seed) ** 2
        lo, _, se_lo, _ = analysis.percentile_ci_se(boot)
        lows.append(lo)
        ses.append(se_lo)
    assert np.median(ses) == pytest.approx(np.std(lows, ddof=1), rel=0.3)
    assert analysis.quantile_mc_se(np.arange(10_001.0), 0.5) == pytest.approx(50, abs=1)


def test_design_points_hold_replicas_twins_and_checkpoints():
    t = pd.DataFrame({
        "run": ["a", "b", "c", "c", "d", "e"],
        "depth": [1, 1, 1, 1, 1, 2], "width": [64, 64, 64, 64, 64, 64],
        "epochs": [1, 1, 3, 3, 3, 1], "weight_decay": [5e-4, 5e-4, 5e-4, 5e-4, 0.1, 5e-4],
        "seed": [0, 1, 0, 0, 0, 0], "checkpoint": [1, 1, 2, 3, 3, 1]})
    ids = design_point_ids(t)
    assert ids[0] == ids[1]  # seed replicas
    assert ids[2] == ids[3] == ids[4]  # checkpoints of one run and its weight-decay twin
    assert ids[0] != ids[2] and ids[0] != ids[5]  # other training length, other depth
    assert cluster_counts(ids) == {"n": 6, "n_clusters": 3, "n_eff": pytest.approx(36 / 14)}
    assert kish_n_eff(["x", "y", "z"]) == 3.0 and kish_n_eff([]) == 0.0
    assert len(set(design_point_ids(t.drop(columns=["depth"])))) == 5  # fallback: one per run


def test_cpu_primary_population_is_one_model_per_design_point():
    """The committed cpu run: 42 design points, one model each in the primary population, so
    Kish's n_eff is 42 (the pre-registration asks for >= 40 points and n_eff >= 35)."""
    path = Path(__file__).resolve().parents[1] / "runs" / "cpu" / "results.csv"
    if not path.is_file():
        pytest.skip("runs/cpu/results.csv not committed in this checkout")
    table = pd.read_csv(path)
    primary = claims.grid_final_rows(table)
    counts = cluster_counts(design_point_ids(primary))
    assert (counts["n"], counts["n_clusters"]) == (42, 42) and counts["n_eff"] >= 35
    assert len(table) == 62  # + 20 seed replicas, for Table 1 only


def test_rule_text_states_the_constants():
    rule = verdicts.rule_text(len(claims._claims()), 10_000)
    assert "10,000 resamples" in rule and f"±{verdicts.EQUIVALENCE_MARGIN:.2f}" in rule
    assert f"within {verdicts.MC_EDGE_SE:g} Monte-Carlo standard errors" in rule
    assert claims.POPULATIONS[0] == verdicts.PRIMARY


def _squash(text: str) -> str:
    """Markdown text as one line: quote markers and line breaks gone, spaces single."""
    return re.sub(r"\s+", " ", re.sub(r"(?m)^> ?", "", text)).strip()


def test_readme_states_the_codes_rule():
    """docs/reference.md quotes the rule of the profile the README reports (cpu: B from its analysis section)."""
    reference = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text(encoding="utf-8")
    from linguistic_collapse.core.profiles import load_profile

    rule = verdicts.rule_text(len(claims._claims()), load_profile("cpu").analysis.n_bootstrap)
    assert _squash(rule) in _squash(reference), \
        "docs/reference.md's decision rule differs from linguistic_collapse.tables.verdicts.rule_text"
    assert claims.POPULATIONS[0] == verdicts.PRIMARY


def test_as_strong_summary_only_where_both_like_for_like_verdicts_agree():
    both = pd.Series({"equivalence_e1": "different", "equivalence_edge_e1": False,
                      "equivalence_e3": "different", "equivalence_edge_e3": False})
    assert claims._as_strong(both) == "different"
    split = both.copy()
    split["equivalence_e3"] = "inconclusive"
    assert claims._as_strong(split) == "1-epoch: different; 3-epoch: inconclusive"
    split["equivalence_e3"], split["equivalence_edge_e3"] = "different", True
    assert claims._as_strong(split) == "1-epoch: different; 3-epoch: at the edge (different by its limits)"

