"""linguistic_collapse.tables.claims: the plateau detector, the three populations and the claims table's holds? rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.nc.registry import MEASURES, REGISTRY, band
from linguistic_collapse.tables import analysis, claims, verdicts
from linguistic_collapse.tables.clusters import design_point_ids


def grid_table(seed: int = 0) -> pd.DataFrame:
    """24 runs (some with 2 checkpoints; runs 2k and 2k+1 share a depth) whose measures move with loss in the collapse direction,
    except NC2 norm CV (noise) and NC3 (weak); 4 plateau runs with loss far above the rest."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(24):
        epochs = 2 if i % 3 == 0 else 1
        for ck in range(1, epochs + 1):
            loss = 4.0 + 0.04 * i - 0.1 * ck + 0.02 * rng.standard_normal() + (1.0 if i >= 20 else 0.0)
            rows.append({"run": f"r{i}", "depth": 1 + i // 2, "width": 32, "epochs": epochs, "weight_decay": 0.1,
                         "seed": i, "checkpoint": ck, "n_params": 1000 * (i + 1), "val_loss": loss})
    t = pd.DataFrame(rows)
    loss = t["val_loss"].to_numpy()
    for m in MEASURES:
        sign = REGISTRY[m].expected_sign
        value = sign * (loss - 4) + 0.01 * rng.standard_normal(len(t))
        t[m] = 10**value if REGISTRY[m].transform == "log" else value + 5
    other = np.random.default_rng(seed + 1)  # its own stream: unchanged when measures are added
    t["nc2_norm_cv"] = other.uniform(0.4, 0.6, len(t))
    t["nc3_duality_mean"] = 0.3 + 0.02 * other.standard_normal(len(t)) - 0.005 * (loss - 4)
    return t


def test_plateau_detector_finds_the_separated_cluster_only():
    t = grid_table()
    mask, text = claims.plateau_mask(t)
    assert set(t.loc[mask, "run"]) == {"r20", "r21", "r22", "r23"}
    assert "5 plateau models" in text  # r21 has two checkpoints and "widest gap" in text
    close = t.assign(val_loss=np.linspace(4, 5, len(t)))  # evenly spread: no plateau
    mask, text = claims.plateau_mask(close)
    assert not mask.any() and text.startswith("no plateau")
    many = t.assign(val_loss=np.where(np.arange(len(t)) < len(t) // 2, 3.0, 5.0))  # half high
    assert not claims.plateau_mask(many)[0].any()


def with_replicas(t: pd.DataFrame) -> pd.DataFrame:
    """``t`` (grid runs, data seed 0) plus 3 seed replicas of run r4 whose losses lie far off."""
    base = t[(t["run"] == "r4") & (t["checkpoint"] == t["epochs"])]
    reps = pd.concat([base.assign(seed=s, run=f"r4-s{s}", val_loss=base["val_loss"] + 3.0) for s in (1, 2, 3)])
    return pd.concat([t, reps], ignore_index=True)


def test_populations_are_final_grid_checkpoints_without_replicas():
    t = with_replicas(grid_table().assign(seed=0))
    pops, how = claims.populations(t)
    assert list(pops) == list(claims.POPULATIONS) == [verdicts.PRIMARY, verdicts.SECONDARY]
    primary = pops[verdicts.PRIMARY]
    assert len(primary) == 24 and primary["run"].is_unique  # one model per grid run
    assert (primary["checkpoint"] == primary["epochs"]).all() and (primary["seed"] == 0).all()
    assert set(pops[verdicts.SECONDARY]["run"]) == set(primary["run"]) - {"r20", "r21", "r22", "r23"}
    assert "4 plateau models" in how


def test_claims_long_values_and_verdicts():
    t = grid_table().assign(seed=0)
    long = claims.claims_long(t, n_bootstrap=500, seed=0)
    prim = long[long["population"] == verdicts.PRIMARY].set_index(["claim", "statistic"])
    pop = claims.grid_final_rows(t)
    r2 = prim.xs("R²", level="statistic")
    cdnv = r2.loc["NC1: CDNV: strong relation to loss"]
    x = np.log10(pop["nc1_cdnv"])
    r = np.corrcoef(x, pop["val_loss"])[0, 1]
    assert cdnv["value"] == pytest.approx(r**2) and cdnv["r_value"] == pytest.approx(r)
    assert cdnv["verdict"] == verdicts.band_verdict(cdnv["ci_low"], cdnv["ci_high"], "strong")
    assert cdnv["dr2_230"] == pytest.approx(cdnv["value"] - 0.916)
    assert cdnv["dr2_e1"] == pytest.approx(cdnv["value"] - claims.AUTHORS_BY_EPOCHS["nc1_cdnv"][1][1])
    assert cdnv["authors_r_e3"] == claims.AUTHORS_BY_EPOCHS["nc1_cdnv"][3][0] and not cdnv["sign_differs_e1"]
    assert cdnv["band"] == band(cdnv["value"])
    assert 0 < cdnv["se_low"] < 0.05 and 0 < cdnv["se_high"] < 0.05
    norm = r2.loc["NC2: norm CV: negligible relation to loss"]
    assert norm["ci_low"] < 0.15 and norm["verdict"] != "fails"  # noise: negligible cannot fail
    assert norm["verdict"] == verdicts.band_verdict(norm["ci_low"], norm["ci_high"], "negligible")
    some = r2.loc["NC2: interference CV: some relation to loss"]
    assert some["ci_low"] >= 0.5 and some["verdict"] == "fails"  # tied to loss: more than "some"
    assert some["sign_differs_e1"]  # ours positive by construction, the authors' -0.73
    direction = prim.xs("r", level="statistic").loc["NC4: classifier agreement: more collapse, lower loss"]
    assert direction["value"] < 0 and direction["verdict"] == "holds"
    comp = prim.xs("ΔR²", level="statistic")
    unc3 = comp.loc["uniform duality (UNC3) tracks loss better than self-duality (NC3)"]
    assert unc3["value"] > 0 and unc3["verdict"] == verdicts.side_verdict(unc3["ci_low"], unc3["ci_high"], 1)
    gnc2 = comp.loc["hyperspherical uniformity (GNC2) tracks loss better than a simplex ETF (NC2 ETF error)"]
    xg, xe = np.log10(pop["gnc2_logkernel_var"]), pop["nc2_etf_error"]
    assert gnc2["value"] == pytest.approx(np.corrcoef(xg, pop["val_loss"])[0, 1] ** 2
                                          - np.corrcoef(xe, pop["val_loss"])[0, 1] ** 2)
    assert set(long["population"]) == set(claims.POPULATIONS)
    sizes = pop.groupby(["depth", "width", "epochs"]).size().to_numpy()
    assert (prim["n"] == len(pop)).all() and (prim["n_clusters"] == len(sizes)).all()
    assert prim["n_eff"].iloc[0] == pytest.approx(sizes.sum() ** 2 / (sizes**2).sum())


def test_claims_bootstrap_resamples_design_points():
    """Replicas of one design move together: with one design point per row pair, the interval
    equals that of a bootstrap over the pairs, not over the rows."""
    t = grid_table().assign(seed=0, epochs=1, checkpoint=1).drop_duplicates("run")
    t = t.assign(depth=1, width=lambda d: 32 * (1 + np.arange(len(d)) // 2))  # row pairs
    long = claims.claims_long(t, n_bootstrap=100, seed=3)
    row = long[(long["population"] == verdicts.PRIMARY) & (long["statistic"] == "r")].iloc[0]
    pop = claims.grid_final_rows(t)
    assert row["n_clusters"] == len(pop) // 2
    W = analysis.cluster_bootstrap_weights(design_point_ids(pop), 100, 3)
    boot = analysis.weighted_pearson(np.log10(pop["nc1_cdnv"].to_numpy()), pop["val_loss"].to_numpy(), W)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(analysis.percentile_ci(boot))


def test_claims_table_shape_and_text():
    t = grid_table().assign(seed=0)
    out = claims.claims_table(t, n_bootstrap=200, seed=0)
    p, s = verdicts.PRIMARY, verdicts.SECONDARY
    assert list(out.columns) == [
        "claim", "figure", "statistic", "claimed", "authors' 1-epoch models", "authors' 3-epoch models",
        "authors' 230 models", p, s, f"MC SE of the limits ({p})", f"verdict ({p})", f"verdict ({s})",
        f"r [95 %] ({p})", f"ΔR² vs authors' 1-epoch models ({p}, 90 %)",
        f"ΔR² vs authors' 3-epoch models ({p}, 90 %)", f"ΔR² vs authors' 230 models, reference ({p}, 90 %)",
        "as strong as the authors'",
        f"models ({p} / {s})", f"design points ({p} / {s})", f"n_eff ({p} / {s})"]
    word = r"(holds|fails|inconclusive|n/a|at the edge \((holds|fails|inconclusive) by its limits\))"
    assert out[f"verdict ({p})"].str.fullmatch(word).all() and out[f"verdict ({s})"].str.fullmatch(word).all()
    r2_rows = out[out["statistic"] == "R²"]
    for col in (c for c in out.columns if c.startswith("ΔR² vs")):
        assert r2_rows[col].str.contains(r"\]: (?:equivalent|different|inconclusive|at the edge \(\w+ by its limits\))$").all()
        assert (out.loc[out["statistic"] != "R²", col] == "").all()
    assert r2_rows[f"r [95 %] ({p})"].str.match(r"[+-]\d\.\d\d \[").all()
    low, high = claims.AUTHORS_R2_CI["nc1_cdnv"]
    assert out.loc[1, "authors' 230 models"] == f"0.916 [{low:.3f}, {high:.3f}]"
    assert out.loc[1, "authors' 1-epoch models"] == "R² 0.961, r +0.98 (n 80)"
    assert out[f"MC SE of the limits ({p})"].str.fullmatch(r"±\d\.\d{3} / ±\d\.\d{3}").all()
    assert "10,000" not in out.attrs["rule"] and "200 resamples" in out.attrs["rule"]
    assert "design points" in out.attrs["rule"] and "plateau" in out.attrs["plateau"]


def test_a_verdict_near_an_edge_is_marked(monkeypatch):
    """Force the strength band's lower edge onto the CDNV R² interval's lower limit: the verdict
    is then within 2 MC SEs of an edge and printed "(at the edge)"."""
    t = grid_table().assign(seed=0)
    long = claims.claims_long(t, n_bootstrap=400, seed=0)
    row = long[(long["population"] == verdicts.PRIMARY)
               & (long["claim"] == "NC1: CDNV: strong relation to loss")].iloc[0]
    monkeypatch.setitem(claims.BANDS, "strong", (row["ci_low"] + 0.5 * row["se_low"], 1.0))
    monkeypatch.setitem(claims.BANDS, "clear", (0.5, row["ci_low"] + 0.5 * row["se_low"]))
    out = claims.claims_table(t, n_bootstrap=400, seed=0).set_index("claim")
    assert out.loc["NC1: CDNV: strong relation to loss", f"verdict ({verdicts.PRIMARY})"] == "at the edge (inconclusive by its limits)"


def test_direction_claims_only_where_the_paper_states_strong_or_clear():
    """Equiangularity's "some relationship" and the "negligible" claims state no direction (on
    the authors' own models the interference CV rises as loss falls)."""
    texts = set(claims.claims_long(grid_table().assign(seed=0), n_bootstrap=20, seed=0)["claim"])
    assert "NC2: interference CV: more collapse, lower loss" not in texts
    assert "NC3: duality mean: more collapse, lower loss" not in texts
    assert "UNC3: duality CV: more collapse, lower loss" in texts


def test_claim_findings_record_every_cell_they_quote(tmp_path):
    from linguistic_collapse.tables.findings import Findings, values

    out = claims.claims_table(grid_table().assign(seed=0), n_bootstrap=50, seed=0)
    found = Findings(tmp_path / "findings.md", "04_correlate")
    claims.record_claim_findings(found, out)
    found.save()
    recorded = dict((k, v) for k, v, _ in found.rows)
    row, p = out.iloc[1], verdicts.PRIMARY
    assert recorded[f"{row['claim']}: {p}"] == row[p]
    assert recorded[f"{row['claim']}: verdict ({p})"] == row[f"verdict ({p})"]
    assert recorded[f"{row['claim']}: r [95 %] ({p})"] == row[f"r [95 %] ({p})"]
    col = f"design points ({p} / {verdicts.SECONDARY})"
    assert recorded[col] == row[col]
    assert recorded[f"{row['claim']}: authors' 230 models"] == row["authors' 230 models"]
    assert "0.916" in values(tmp_path / "findings.md")


def pinv_table(quiet: bool) -> pd.DataFrame:
    """grid_table with nc1_pinv's cut-off variants: 1e-6 follows loss like nc1_pinv; 1e-3 is
    like them when ``quiet``, else noise unrelated to loss (its direction then cannot be decided)."""
    t = grid_table().assign(seed=0)
    rng = np.random.default_rng(5)
    t["nc1_pinv_rtol1e6"] = t["nc1_pinv"] * 10 ** (0.01 * rng.standard_normal(len(t)))
    noise = 10 ** rng.standard_normal(len(t))  # unrelated to loss
    t["nc1_pinv_rtol1e3"] = t["nc1_pinv"] * 10 ** (0.01 * rng.standard_normal(len(t))) if quiet else noise
    return t


def test_signs_table_gives_every_measure_r_with_its_interval():
    t = pinv_table(True)
    out = claims.signs_table(t, n_bootstrap=300, seed=1).set_index("measure")
    assert list(out.index) == list(dict.fromkeys([*MEASURES, "nc1_pinv_rtol1e6", "nc1_pinv_rtol1e3"]))
    pop = claims.grid_final_rows(t)
    for m in ("nc1_cdnv", "nc4_agreement", "nc1_pinv_rtol1e3"):
        x = np.log10(pop[m]) if m != "nc4_agreement" else pop[m]
        assert out.loc[m, "r"] == pytest.approx(np.corrcoef(x, pop["val_loss"])[0, 1])
        assert out.loc[m, "r_low"] <= out.loc[m, "r"] <= out.loc[m, "r_high"]
    assert out.loc["nc1_pinv_rtol1e3", "cutoff"] == 1e-3 and out.loc["nc1_cdnv", "direction"] == "holds"
    assert out.loc["nc2_interference_cv", "sign_differs_e1"] and not out.loc["nc1_cdnv", "sign_differs_e3"]
    assert out.attrs["pinv"].endswith("holds under every cut-off (1e-10, 1e-06, 0.001)")


def test_nc1_pinv_direction_depends_on_the_cutoff_or_is_not_stated():
    t = pinv_table(False)
    out = claims.signs_table(t, n_bootstrap=300, seed=1)
    assert claims.PINV_DEPENDS in out.attrs["pinv"]
    missing = claims.signs_table(t.drop(columns=["nc1_pinv_rtol1e6"]), n_bootstrap=50, seed=1)
    assert "nc1_pinv_rtol1e6" not in set(missing["measure"])
    assert missing.attrs["pinv"] == "nc1_pinv's direction not stated: no column for cut-off(s) 1e-06"
    from linguistic_collapse.tables.findings import Findings

    found = Findings("unused.md", "04_correlate")
    claims.record_signs_findings(found, out)
    rec = {k: v for k, v, _ in found.rows}
    assert rec["nc1_pinv direction under the cut-offs"] == out.attrs["pinv"]
    assert "NC2: interference CV [nc2_interference_cv]: sign differs from the authors' 1-epoch r" in rec


def test_cdnv_units_table_explains_the_scale():
    t = grid_table().assign(width=lambda d: np.where(d["seed"] < 12, 32, 128))
    out = claims.cdnv_units_table(t).set_index("column")
    assert out.loc["nc1_cdnv", "fold change"] == pytest.approx(
        t.loc[t.width == 32, "nc1_cdnv"].median() / t.loc[t.width == 128, "nc1_cdnv"].median())
    assert "1/a²" in claims.CDNV_UNITS_NOTE


def test_correlation_findings_quote_the_correlations_table(tmp_path):
    from linguistic_collapse.tables.findings import Findings

    corr = analysis.correlate(grid_table(), n_bootstrap=50, seed=0)
    found = Findings(tmp_path / "findings.md", "04_correlate")
    claims.record_correlation_findings(found, corr)
    recorded = dict((k, v) for k, v, _ in found.rows)
    cdnv = corr.set_index("measure").loc["nc1_cdnv"]
    assert recorded["R² NC1: CDNV"] == f"{cdnv['r2']:.2f} [{cdnv['r2_ci_low']:.2f}, {cdnv['r2_ci_high']:.2f}]"
    assert recorded["authors' R² NC1: CDNV"] == "0.916"
    assert recorded["design-point clusters (all models)"] == str(int(corr["n_clusters"].max()))
