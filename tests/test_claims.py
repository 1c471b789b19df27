"""linguistic_collapse.tables.claims: the plateau detector, the two populations and the claims table's holds? rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.nc.registry import MEASURES, REGISTRY, band
from linguistic_collapse.tables import analysis, claims, verdicts
from linguistic_collapse.tables.clusters import design_point_ids


def grid_table(seed: int = 0) -> pd.DataFrame:
    """24 runs (some with 2 checkpoints; runs 2k and 2k+1 share a depth) whose measures move with loss in the collapse direction,
    except NC2 norm CV (noise) and NC3 (weak); 4 plateau runs with loss far above the rest. Every
    run has the grid's seed 0 (the primary population takes each run's final checkpoint)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(24):
        epochs = 2 if i % 3 == 0 else 1
        for ck in range(1, epochs + 1):
            loss = 4.0 + 0.04 * i - 0.1 * ck + 0.02 * rng.standard_normal() + (1.0 if i >= 20 else 0.0)
            rows.append({"run": f"r{i}", "depth": 1 + i // 2, "width": 32, "epochs": epochs, "weight_decay": 0.1,
                         "seed": 0, "checkpoint": ck, "n_params": 1000 * (i + 1), "val_loss": loss})
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


def final(t: pd.DataFrame) -> pd.DataFrame:
    return t[t["checkpoint"] == t["epochs"]]


def test_populations_are_the_grid_final_checkpoints_without_replicas():
    t = grid_table()
    replicas = final(t)[final(t)["run"] == "r4"].assign(seed=[7], run="r4-s7")  # a seed replica
    pops, _ = claims.populations(pd.concat([t, replicas], ignore_index=True))
    assert list(pops) == list(claims.POPULATIONS) and claims.POPULATIONS[0] == verdicts.PRIMARY
    primary = pops[verdicts.PRIMARY]
    assert sorted(primary["run"]) == sorted(final(t)["run"])  # one model per run, no replica
    assert (primary["checkpoint"] == primary["epochs"]).all()
    plateau = pops["grid final, no plateau"]
    assert set(primary["run"]) - set(plateau["run"]) == {"r20", "r21", "r22", "r23"}


def test_claims_long_values_and_verdicts():
    t = grid_table()
    long = claims.claims_long(t, n_bootstrap=200, seed=0)
    allpop = long[long["population"] == verdicts.PRIMARY].set_index(["claim", "statistic"])
    t = final(t)
    r2 = allpop.xs("R²", level="statistic")
    cdnv = r2.loc["NC1: CDNV: strong relation to loss"]
    x = np.log10(t["nc1_cdnv"])
    assert cdnv["value"] == pytest.approx(np.corrcoef(x, t["val_loss"])[0, 1] ** 2)
    assert cdnv["verdict"] == verdicts.band_verdict(cdnv["ci_low"], cdnv["ci_high"], "strong")
    assert cdnv["dr2"] == pytest.approx(cdnv["value"] - 0.916)
    assert cdnv["band"] == band(cdnv["value"])
    norm = r2.loc["NC2: norm CV: negligible relation to loss"]
    assert norm["value"] < 0.15 and norm["verdict"] in ("holds", "inconclusive")  # noise: never "fails"
    assert norm["verdict"] == verdicts.band_verdict(norm["ci_low"], norm["ci_high"], "negligible")
    some = r2.loc["NC2: interference CV: some relation to loss"]
    assert some["ci_low"] >= 0.5 and some["verdict"] == "fails"  # tied to loss: more than "some"
    direction = allpop.xs("r", level="statistic").loc["NC4: classifier agreement: more collapse, lower loss"]
    assert direction["value"] < 0 and direction["verdict"] == "holds"
    comp = allpop.xs("ΔR²", level="statistic")
    unc3 = comp.loc["uniform duality (UNC3) tracks loss better than self-duality (NC3)"]
    assert unc3["value"] > 0 and unc3["verdict"] == verdicts.side_verdict(unc3["ci_low"], unc3["ci_high"], 1)
    assert set(long["population"]) == set(claims.POPULATIONS)
    # design points: depth x width x training length; runs 2k, 2k+1 share one when epochs agree
    sizes = t.groupby(["depth", "width", "epochs"]).size().to_numpy()
    assert (allpop["n"] == len(t)).all() and (allpop["n_clusters"] == len(sizes)).all()
    assert allpop["n_eff"].iloc[0] == pytest.approx(sizes.sum() ** 2 / (sizes**2).sum())
    assert len(sizes) < t["run"].nunique()


def test_claims_bootstrap_resamples_design_points():
    """Replicas of one design move together: with one design point per row pair, the interval
    equals that of a bootstrap over the pairs, not over the rows."""
    t = final(grid_table()).assign(depth=1, epochs=1, checkpoint=1, width=lambda d: 32 * (1 + np.arange(len(d)) // 2))  # row pairs
    long = claims.claims_long(t, n_bootstrap=100, seed=3)
    row = long[(long["population"] == verdicts.PRIMARY) & (long["statistic"] == "r")].iloc[0]
    assert row["n_clusters"] == len(t) // 2
    pairs = design_point_ids(t)
    W = analysis.cluster_bootstrap_weights(pairs, 100, 3)
    boot = analysis.weighted_pearson(np.log10(t["nc1_cdnv"].to_numpy()), t["val_loss"].to_numpy(), W)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(analysis.percentile_ci(boot))


def test_claims_table_shape_and_text():
    t = grid_table()
    out = claims.claims_table(t, n_bootstrap=100)
    assert list(out.columns) == [
        "claim", "figure", "statistic", "claimed", "authors' 230 models", "authors' 1-epoch models",
        "authors' 2-epoch models", "grid final", "grid final, no plateau", "verdict (grid final, primary)",
        "verdicts (grid final, no plateau)", "ΔR² vs authors' 230 (grid final, 90 %)",
        "models (grid final / grid final, no plateau)", "clusters (grid final / grid final, no plateau)",
        "n_eff (grid final / grid final, no plateau)"]
    word = r"(holds|fails|inconclusive|n/a)"
    assert out["verdict (grid final, primary)"].str.fullmatch(word).all()
    assert out["verdicts (grid final, no plateau)"].str.fullmatch(word).all()
    r2_rows = out[out["statistic"] == "R²"]
    assert r2_rows["ΔR² vs authors' 230 (grid final, 90 %)"].str.contains(
        r"\]: (?:equivalent|different|inconclusive)$").all()
    assert (out.loc[out["statistic"] != "R²", "ΔR² vs authors' 230 (grid final, 90 %)"] == "").all()
    low, high = claims.AUTHORS_R2_CI["nc1_cdnv"]
    assert out.loc[1, "authors' 230 models"] == f"0.916 [{low:.3f}, {high:.3f}]"
    assert not out["grid final"].str.startswith("r ").any()  # cells hold numbers only
    assert "design points" in out.attrs["rule"] and "plateau" in out.attrs["plateau"]


def test_claims_table_sets_the_authors_same_length_models_beside(monkeypatch):
    monkeypatch.setitem(claims.AUTHORS_BY_EPOCHS, "nc2_norm_cv", {1: (-0.118, 0.014, 80)})
    out = claims.claims_table(grid_table(), n_bootstrap=20).set_index("claim")
    row = out.loc["NC2: norm CV: negligible relation to loss"]
    assert row["authors' 1-epoch models"] == "R² 0.014 (n 80)"
    assert row["authors' 2-epoch models"] == "n/a"  # tolerated: not known


def test_cdnv_units_table_explains_the_scale():
    t = grid_table().assign(width=lambda d: np.where(d["run"].str[1:].astype(int) < 12, 32, 128))
    out = claims.cdnv_units_table(t).set_index("column")
    assert out.loc["nc1_cdnv", "fold change"] == pytest.approx(
        t.loc[t.width == 32, "nc1_cdnv"].median() / t.loc[t.width == 128, "nc1_cdnv"].median())
    assert "1/a²" in claims.CDNV_UNITS_NOTE


def test_direction_claims_only_where_the_paper_states_strong_or_clear():
    """Equiangularity's "some relationship" and the "negligible" claims state no direction (on
    the authors' own models the interference CV rises as loss falls)."""
    texts = set(claims.claims_long(grid_table(), n_bootstrap=20, seed=0)["claim"])
    assert "NC2: interference CV: more collapse, lower loss" not in texts
    assert "NC3: duality mean: more collapse, lower loss" not in texts
    assert "UNC3: duality CV: more collapse, lower loss" in texts


def test_claim_findings_record_every_cell_they_quote(tmp_path):
    from linguistic_collapse.tables.findings import Findings, values

    out = claims.claims_table(grid_table(), n_bootstrap=50)
    found = Findings(tmp_path / "findings.md", "04_correlate")
    claims.add_claim_findings(found, out)
    found.save()
    recorded = dict((k, v) for k, v, _ in found.rows)
    row = out.iloc[1]
    assert recorded[f"{row['claim']}: grid final"] == row["grid final"]
    assert recorded[f"{row['claim']}: verdict (grid final, primary)"] == row["verdict (grid final, primary)"]
    clusters = "clusters (grid final / grid final, no plateau)"
    assert recorded[clusters] == row[clusters]
    assert recorded[f"{row['claim']}: authors' 230 models"] == row["authors' 230 models"]  # like for like
    assert "0.916" in values(tmp_path / "findings.md")


def test_correlation_findings_quote_the_correlations_table(tmp_path):
    from linguistic_collapse.tables.findings import Findings

    corr = analysis.correlate(grid_table(), n_bootstrap=50)
    found = Findings(tmp_path / "findings.md", "04_correlate")
    claims.add_correlation_findings(found, corr)
    recorded = dict((k, v) for k, v, _ in found.rows)
    cdnv = corr.set_index("measure").loc["nc1_cdnv"]
    assert recorded["R² NC1: CDNV"] == f"{cdnv['r2']:.2f} [{cdnv['r2_ci_low']:.2f}, {cdnv['r2_ci_high']:.2f}]"
    assert recorded["authors' R² NC1: CDNV"] == "0.916"
    assert recorded["design-point clusters (all models)"] == str(int(corr["n_clusters"].max()))
