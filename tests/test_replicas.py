"""linguistic_collapse.tables.replicas: Fisher intervals and difference tests, the first principal component, and
Table 1 beside the authors' replicas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.tables import analysis, replicas
from scipy.stats import pearsonr


def test_fisher_ci_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(21)
    y = x + rng.standard_normal(21)
    r = float(np.corrcoef(x, y)[0, 1])
    want = pearsonr(x, y).confidence_interval(0.95)  # scipy: Fisher transform
    np.testing.assert_allclose(replicas.fisher_ci(r, 21), (want.low, want.high), rtol=1e-10)
    assert np.isnan(replicas.fisher_ci(0.5, 3)[0]) and replicas.fisher_ci(1.0, 10) == (1.0, 1.0)


def test_fisher_difference_hand_case():
    # (atanh 0.5 - atanh 0.3) / sqrt(2/47) = 1.16241; two-sided normal p = 0.24507
    z, p = replicas.fisher_diff(0.5, 50, 0.3, 50)
    assert z == pytest.approx(1.16241, abs=1e-5) and p == pytest.approx(0.24507, abs=1e-5)
    assert replicas.fisher_diff(0.3, 21, 0.3, 40) == (0.0, 1.0)
    assert np.isnan(replicas.fisher_diff(0.3, 21, np.nan, 0)[1])


def _table(cols: dict[str, np.ndarray], loss: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"val_loss": loss, **cols})


def test_first_component_known_answers():
    f = np.array([0.0, 1.0, 2.0, 4.0, 7.0])
    loss = np.array([3.0, 2.9, 2.0, 2.2, 1.0])
    one = replicas.first_component(_table({"nc2_norm_cv": 2 * f + 1, "nc4_agreement": 5 - f}, loss),
                                   ["nc2_norm_cv", "nc4_agreement", "nc1_cdnv"])
    assert one["share"] == pytest.approx(1.0) and one["k"] == 2  # one factor, both measures on it
    assert one["r_loss"] == pytest.approx(abs(np.corrcoef(f, loss)[0, 1]))
    assert one["loadings"]["nc2_norm_cv"] == pytest.approx(-one["loadings"]["nc4_agreement"])
    assert np.isnan(one["loadings"]["nc1_cdnv"])  # absent column: left out
    a, b = np.array([1.0, -1.0, 1.0, -1.0]), np.array([1.0, 1.0, -1.0, -1.0])  # orthogonal
    two = replicas.first_component(_table({"nc2_norm_cv": a, "nc4_agreement": b}, np.arange(4.0)),
                                   ["nc2_norm_cv", "nc4_agreement"])
    assert two["share"] == pytest.approx(0.5)


def test_reviewed_table1_adds_intervals_authors_and_pc1():
    rng = np.random.default_rng(1)
    f = rng.standard_normal(21)
    reps = _table({"nc2_norm_cv": f + 0.3 * rng.standard_normal(21),
                   "nc4_agreement": -f + 0.3 * rng.standard_normal(21)}, 2 + 0.1 * f)
    perm = analysis.permutation_test(reps, ["nc2_norm_cv", "nc4_agreement"], n_permutations=99, seed=0, alpha=0.05)
    out = replicas.reviewed_table1(perm, reps, authors_r={"nc4_agreement": (-0.7, 21)},
                                   authors_p={"nc4_agreement": (0.0004, 0.0052)})
    row = out.set_index("measure").loc["nc4_agreement"]
    assert (row["r_ci_low"], row["r_ci_high"]) == pytest.approx(replicas.fisher_ci(row["r"], 21))
    assert (row["diff_z"], row["diff_p"]) == pytest.approx(replicas.fisher_diff(row["r"], 21, -0.7, 21))
    assert row["authors_p_holm"] == 0.0052
    assert np.isnan(out.set_index("measure").loc["nc2_norm_cv", "authors_r"])  # not given: NaN
    assert out["pc1_share"].nunique() == 1 and 0.5 < out["pc1_share"].iloc[0] <= 1
    assert "2 standardised measures" in replicas.pc1_note(out)
    shown = analysis.table1_display(out)
    assert list(shown.columns[-4:]) == ["r 95% CI", "authors r", "difference p", "authors Holm p"]
    assert shown["authors r"].tolist() == ["", "-0.700"]


def test_record_findings_records_interval_authors_and_pc1(tmp_path):
    from linguistic_collapse.tables.findings import Findings, values

    rng = np.random.default_rng(2)
    f = rng.standard_normal(21)
    reps = _table({"nc4_agreement": -f + 0.3 * rng.standard_normal(21)}, 2 + 0.1 * f)
    perm = analysis.permutation_test(reps, ["nc4_agreement"], n_permutations=99, seed=0, alpha=0.05)
    out = replicas.reviewed_table1(perm, reps, authors_r={"nc4_agreement": (-0.7, 21)},
                                   authors_p={"nc4_agreement": (0.0004, 0.0052)})
    book = Findings(tmp_path / "findings.md", "05_permutation")
    replicas.record_findings(book, out, alpha=0.05)
    book.save()
    text = (tmp_path / "findings.md").read_text()
    row = out.iloc[0]
    assert f"{row.r:+.2f} [{row.r_ci_low:+.2f}, {row.r_ci_high:+.2f}]" in text
    assert "authors' Holm p (survives)" in text and "0.0052" in values(tmp_path / "findings.md")
    assert "PC1 r with loss" not in text  # one measure: no component to speak of
    recorded = {k: v for k, v, _ in book.rows}
    assert row.p_holm == pytest.approx(1 / 100)  # r this strong: no permutation reaches it
    assert recorded["NC4: classifier agreement: Holm p"] == "≤ 1.0e-2"  # the floor, as "≤ floor"


def test_reviewed_table1_with_too_few_replicas_stays_nan():
    two = _table({"nc4_agreement": np.array([0.1, 0.2])}, np.array([2.0, 1.9]))
    out = replicas.reviewed_table1(analysis.table1(two, n_permutations=10, seed=0, alpha=0.05), two)
    assert out["r_ci_low"].isna().all() and out["diff_p"].isna().all() and out["pc1_share"].isna().all()
    assert replicas.pc1_note(out) == "" and out["authors_r"].notna().any()  # theirs still shown
