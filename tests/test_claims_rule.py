"""The claims' decision rule: strength bands, three-way verdicts on constructed intervals, the
equivalence test against the authors, design-point clusters and the copy of the rule in docs/reference.md."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.nc.registry import BANDS, band
from linguistic_collapse.tables import claims, verdicts
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


def test_equivalence_known_answers(monkeypatch):
    """With a near-exact authors' value the ΔR² interval is ours shifted by their value."""
    monkeypatch.setitem(verdicts.AUTHORS_R2_CI, "nc1_cdnv", (0.9, 0.9 + 1e-9))
    ours = np.linspace(0.85, 0.95, 1001)  # 90 % interval [0.855, 0.945]
    out = verdicts.equivalence(0.90, ours, "nc1_cdnv", 0.9)
    assert out["dr2"] == pytest.approx(0.0)
    assert (out["dr2_low"], out["dr2_high"]) == pytest.approx((-0.045, 0.045), abs=1e-6)
    assert out["equivalence"] == "equivalent"
    assert verdicts.equivalence(0.6, ours - 0.3, "nc1_cdnv", 0.9)["equivalence"] == "different"
    wide = np.linspace(0.6, 1.0, 1001)
    assert verdicts.equivalence(0.8, wide, "nc1_cdnv", 0.9)["equivalence"] == "inconclusive"
    assert verdicts.equivalence(0.9, ours, "nc1_cdnv", None)["equivalence"] == "n/a"


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


def test_cpu_grid_has_18_design_points():
    path = Path(__file__).resolve().parents[1] / "runs" / "cpu" / "results.csv"
    if not path.is_file():
        pytest.skip("runs/cpu/results.csv not committed in this checkout")
    table = pd.read_csv(path)
    counts = cluster_counts(design_point_ids(table))
    assert (counts["n"], counts["n_clusters"]) == (74, 18)


def _squash(text: str) -> str:
    """Markdown text as one line: quote markers and line breaks gone, spaces single."""
    return re.sub(r"\s+", " ", re.sub(r"(?m)^> ?", "", text)).strip()


def test_readme_states_the_codes_rule():
    reference = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text(encoding="utf-8")
    rule = verdicts.rule_text(len(claims._claims()), claims.POPULATIONS)
    assert _squash(rule) in _squash(reference), \
        "docs/reference.md's decision rule differs from linguistic_collapse.tables.verdicts.rule_text"
    assert claims.POPULATIONS[0] == verdicts.PRIMARY
