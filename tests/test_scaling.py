"""linguistic_collapse.tables.scaling: width and training steps, the exact sign test against a
hand computation, Holm over the pre-registered tests and the three-way verdict."""

from __future__ import annotations

from math import comb

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.nc.registry import MEASURES, REGISTRY
from linguistic_collapse.tables import scaling
from linguistic_collapse.tables.analysis import holm
from linguistic_collapse.tables.findings import Findings


def grid(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """widths 32..128 x depths 1-3 x epochs 1, 3: every measure collapses with width and
    training (moves its collapse way by 1 per unit of width/32 + epochs), plus noise."""
    rng = np.random.default_rng(seed)
    rows = [{"depth": d, "width": w, "epochs": e} for d in (1, 2, 3) for w in (32, 48, 64, 96, 128) for e in (1, 3)]
    t = pd.DataFrame(rows)
    progress = t["width"] / 32 + t["epochs"]
    for m in MEASURES:
        v = -REGISTRY[m].expected_sign * progress + noise * rng.standard_normal(len(t))
        t[m] = 10.0**v if REGISTRY[m].transform == "log" else v
    return t


def test_steps_are_consecutive_cells_within_the_fixed_columns():
    t = grid()
    width = scaling.steps(t, "nc1_cdnv", "width")
    assert len(width) == 3 * 2 * 4  # (depth, epochs) x 4 consecutive pairs of 5 widths
    assert set(zip(width["from"], width["to"], strict=True)) == {(32, 48), (48, 64), (64, 96), (96, 128)}
    assert (width["change"] == 1).all()  # every step collapses
    training = scaling.steps(t, "nc4_agreement", "training")
    assert len(training) == 15 and set(training["from"]) == {1} and set(training["to"]) == {3}
    assert (training["change"] == 1).all()  # agreement rises: collapse is "higher"
    flat = t.assign(nc1_cdnv=1.0)
    assert (scaling.steps(flat, "nc1_cdnv", "width")["change"] == 0).all()  # ties


def test_twins_in_one_cell_are_averaged_on_the_analysis_scale():
    t = pd.DataFrame({"depth": 1, "width": [32, 32, 64], "epochs": 1, "nc1_cdnv": [10.0, 1000.0, 50.0]})
    s = scaling.steps(t, "nc1_cdnv", "width")
    assert s["before"].iloc[0] == pytest.approx(2.0)  # mean of log10 10 and log10 1000
    assert s["change"].iloc[0] == 1  # log10 50 = 1.7 < 2: lower CDNV improves


def test_sign_test_matches_the_binomial_sum_by_hand():
    """7 of 9 improving: P(X >= 7) = (C(9,7) + C(9,8) + C(9,9)) / 2^9 = 46/512."""
    p_up, p_down = scaling.sign_test(7, 2)
    assert p_up == pytest.approx(46 / 512)
    assert p_down == pytest.approx(sum(comb(9, j) for j in range(8)) / 512)
    assert scaling.sign_test(0, 0) != scaling.sign_test(0, 0)  # NaNs


def test_table_holm_over_the_pre_registered_tests_and_verdicts():
    t = grid()
    t["gnc2_logkernel_var"] = 10.0 ** (REGISTRY["gnc2_logkernel_var"].expected_sign * (t["width"] / 32 + t["epochs"]))
    t["unc3_duality_cv"] = np.random.default_rng(3).standard_normal(len(t))  # noise
    out = scaling.scaling_table(t, exploratory=["nc2_norm_cv", "not_a_column"])
    pre = out[out["role"] == "pre-registered"]
    assert list(pre["measure"]) == [m for m in scaling.MEASURES for _ in scaling.AXES]
    np.testing.assert_allclose(pre["holm_improve"], holm(pre["p_improve"]))
    cdnv = pre.set_index(["measure", "axis"]).loc[("nc1_cdnv", "width")]
    assert (cdnv["improving"], cdnv["worsening"], cdnv["share_improving"]) == (24, 0, 1.0)
    assert cdnv["p_improve"] == pytest.approx(0.5**24) and cdnv["verdict"] == "holds"
    gnc2 = pre.set_index(["measure", "axis"]).loc[("gnc2_logkernel_var", "training")]
    assert gnc2["improving"] == 0 and gnc2["verdict"] == "fails"  # moves away from collapse
    assert set(out.loc[out["role"] == "exploratory", "measure"]) == {"nc2_norm_cv"}
    assert (out.loc[out["role"] == "exploratory", "verdict"] == "exploratory").all()
    few = scaling.scaling_table(t[t["depth"] == 1].iloc[:4])  # 1 width step per epochs: p = 0.5
    assert set(few["verdict"]) <= {"inconclusive", "n/a"}


def test_verdict_rule():
    assert scaling.scaling_verdict(0.01, 1.0) == "holds"
    assert scaling.scaling_verdict(1.0, 0.049) == "fails"
    assert scaling.scaling_verdict(0.05, 0.05) == "inconclusive"
    assert scaling.scaling_verdict(np.nan, np.nan) == "n/a"


def test_findings_quote_the_table(tmp_path):
    out = scaling.scaling_table(grid(noise=0.5))
    found = Findings(tmp_path / "findings.md", "04_correlate")
    scaling.record_findings(found, out)
    rec = {k: v for k, v, _ in found.rows}
    row = out.iloc[0]
    key = f"scaling {row['label']}, {row['axis']} steps"
    assert rec[f"{key}: improving / untied"] == f"{row['improving']} / {row['improving'] + row['worsening']}"
    assert rec[f"{key}: verdict"] == row["verdict"]
