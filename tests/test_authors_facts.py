"""scripts/authors_facts.py and linguistic_collapse.tables.authors_stats on a small synthetic file in the
authors' format whose answers are known exactly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.tables import analysis, authors_stats

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "authors_facts.py"


def synthetic(path: Path) -> pd.DataFrame:
    """21 seed replicas of 02x0768_01d (1 epoch), two more 1-epoch runs and two 3-epoch runs
    (3 checkpoints each). log10 cdnv = loss exactly; etf_error = 2 loss + 1 on 1-epoch runs and
    5 - loss on 3-epoch runs; dual_error random."""
    rng = np.random.default_rng(0)
    models = (["02x0768_01d@0"] + [f"02x0768_01d{i:02d}@0" for i in range(20)]
              + ["01x0064_01d@0", "04x0128_01L@0"]
              + [f"{a}_03d@{k}" for a in ("01x0064", "02x0128") for k in range(3)])
    loss = rng.uniform(1.5, 4.0, len(models))
    three = np.array(["_03d@" in m for m in models])
    df = pd.DataFrame({"model": models, "n_params": 1000, "val_loss": loss, "cdnv": 10.0**loss,
                       "etf_error": np.where(three, 5 - loss, 2 * loss + 1),
                       "dual_error": rng.uniform(1.0, 1.5, len(models))})
    df.to_csv(path, index=False)
    return df


def test_facts_have_the_known_answers(tmp_path):
    df = synthetic(tmp_path / "lc.csv")
    facts = authors_stats.authors_facts([tmp_path / "lc.csv"], n_bootstrap=50, n_permutations=99)
    assert facts["n_models"] == 29 and facts["n_runs"] == 25  # a run's 3 checkpoints are one run
    assert set(facts["AUTHORS_R2_CI"]) == {"nc1_cdnv", "nc2_etf_error", "nc3_duality_error"}
    assert facts["AUTHORS_R2_CI"]["nc1_cdnv"] == pytest.approx((1.0, 1.0))  # exact line on log scale
    by = facts["AUTHORS_BY_EPOCHS"]["nc2_etf_error"]
    assert by[1] == pytest.approx((1.0, 1.0, 23)) and by[3] == pytest.approx((-1.0, 1.0, 6))
    assert by[10][2] == 0 and np.isnan(by[10][0])  # no 10-epoch runs here
    reps = df.iloc[:21]
    r = np.corrcoef(reps["dual_error"], reps["val_loss"])[0, 1]
    assert facts["AUTHORS_REPLICAS"]["nc3_duality_error"] == pytest.approx((r, 21))
    p, p_holm = facts["AUTHORS_REPLICA_P"]["nc1_cdnv"]
    assert p == pytest.approx(1 / 100)  # |r| = 1: no permutation reaches it
    ps = [facts["AUTHORS_REPLICA_P"][m][0] for m in facts["AUTHORS_REPLICAS"]]
    holms = [facts["AUTHORS_REPLICA_P"][m][1] for m in facts["AUTHORS_REPLICAS"]]
    np.testing.assert_allclose(holms, analysis.holm(ps))


def test_script_prints_the_dicts_as_python(tmp_path, capsys):
    synthetic(tmp_path / "lc.csv")
    spec = importlib.util.spec_from_file_location("authors_facts_script", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path / "lc.csv"), "--n-bootstrap", "20", "--n-permutations", "99"]) == 0
    namespace: dict = {}
    exec(capsys.readouterr().out, namespace)  # the printed text is the module's source
    assert namespace["AUTHORS_BY_EPOCHS"]["nc2_etf_error"][3] == (-1.0, 1.0, 6)
    assert namespace["AUTHORS_R2_CI"]["nc1_cdnv"] == (1.0, 1.0)
    assert namespace["AUTHORS_REPLICAS"]["nc1_cdnv"] == (1.0, 21)
    assert script.main([str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_stored_facts_agree_with_the_registry_and_themselves():
    from linguistic_collapse.nc.registry import REGISTRY
    from linguistic_collapse.tables import authors_facts as facts

    for m, (lo, hi) in facts.AUTHORS_R2_CI.items():
        point = REGISTRY[m].authors_r2 if m in REGISTRY else None
        assert lo < hi and (point is None or lo <= point <= hi), m
    for m, by in facts.AUTHORS_BY_EPOCHS.items():
        assert sum(n for _, _, n in by.values()) == 230, m  # 80 + 30 + 120 models
        assert all(abs(r * r - r2) < 0.002 for r, r2, _ in by.values()), m  # rounded to 3 places
    assert set(facts.AUTHORS_REPLICAS) == set(facts.AUTHORS_REPLICA_P)
    assert all(n == 21 for _, n in facts.AUTHORS_REPLICAS.values())
    np.testing.assert_allclose([ph for _, ph in facts.AUTHORS_REPLICA_P.values()],
                               analysis.holm([p for p, _ in facts.AUTHORS_REPLICA_P.values()]), rtol=0.1)


def test_design_n_eff_counts_their_design_points(tmp_path):
    """1 epoch: one design point of 21 replicas and two of one model; 3 epochs: two design
    points of 3 checkpoints each; no 10-epoch models (n_eff 0)."""
    synthetic(tmp_path / "lc.csv")
    facts = authors_stats.authors_facts([tmp_path / "lc.csv"], n_bootstrap=20, n_permutations=99)
    n_eff = facts["AUTHORS_DESIGN_N_EFF"]
    assert n_eff[1] == pytest.approx(23**2 / (21**2 + 1 + 1))
    assert n_eff[3] == pytest.approx(2.0) and n_eff[10] == 0.0
    namespace: dict = {}
    exec(authors_stats.format_facts(facts), namespace)
    assert namespace["AUTHORS_DESIGN_N_EFF"][1] == pytest.approx(n_eff[1], abs=1e-3)


def test_design_quantiles_resample_their_design_points(tmp_path):
    """3-epoch etf_error is an exact line of loss on both runs: R² = 1 in every resample that
    holds both runs (and NaN when one run is drawn twice, dropped); cdnv likewise on 1 epoch."""
    synthetic(tmp_path / "lc.csv")
    table = authors_stats.import_authors([tmp_path / "lc.csv"])
    q = authors_stats.r2_design_quantiles(table, ["nc2_etf_error", "nc3_duality_error"], n_bootstrap=500)
    assert len(q["nc2_etf_error"][3]) == authors_stats.QUANTILES
    assert q["nc2_etf_error"][3] == pytest.approx((1.0,) * authors_stats.QUANTILES)
    x = table.loc[table["epochs"] == 1, "nc3_duality_error"].to_numpy()
    y = table.loc[table["epochs"] == 1, "val_loss"].to_numpy()
    from linguistic_collapse.tables.clusters import design_point_ids

    ids = design_point_ids(table[table["epochs"] == 1])
    boot = analysis.bootstrap_r(x, y, ids, 500, 0) ** 2
    boot = boot[np.isfinite(boot)]
    assert q["nc3_duality_error"][1] == pytest.approx(tuple(np.quantile(boot, np.linspace(0, 1, 101))))
    namespace: dict = {}
    facts = authors_stats.authors_facts([tmp_path / "lc.csv"], n_bootstrap=20, n_permutations=99, design_bootstrap=50)
    exec(authors_stats.format_facts(facts), namespace)
    assert namespace["AUTHORS_R2_QUANTILES"]["nc2_etf_error"][3] == pytest.approx((1.0,) * 101)


def test_stored_design_n_eff_is_their_grid():
    """30 design points per training length; 1 epoch: 29 pairs of twins and the 22 of 02x0768_01d."""
    from linguistic_collapse.tables.authors_facts import AUTHORS_BY_EPOCHS, AUTHORS_DESIGN_N_EFF

    assert AUTHORS_DESIGN_N_EFF[1] == pytest.approx(80**2 / (29 * 2**2 + 22**2), abs=1e-3)
    assert AUTHORS_DESIGN_N_EFF[3] == pytest.approx(30.0) and AUTHORS_DESIGN_N_EFF[10] == pytest.approx(30.0)
    assert AUTHORS_BY_EPOCHS["nc1_cdnv"][1][2] == 80 and AUTHORS_BY_EPOCHS["nc1_cdnv"][10][2] == 120


def test_stored_design_quantiles_are_their_like_for_like_side():
    """Every measure of AUTHORS_BY_EPOCHS has its 1- and 3-epoch design-point bootstrap stored
    (101 non-decreasing quantiles of an R² in [0, 1]), centred on the stored R² of that length,
    and the equivalence test draws from it rather than the large-sample normal."""
    from linguistic_collapse.tables import verdicts
    from linguistic_collapse.tables.authors_facts import AUTHORS_BY_EPOCHS, AUTHORS_R2_QUANTILES

    for m, by in AUTHORS_BY_EPOCHS.items():
        for e in verdicts.LIKE_FOR_LIKE:
            q = np.asarray(AUTHORS_R2_QUANTILES[m][e])
            assert len(q) == authors_stats.QUANTILES and (np.diff(q) >= 0).all(), (m, e)
            assert q[0] >= 0 and q[-1] <= 1, (m, e)
            assert q[5] <= by[e][1] <= q[95], (m, e)  # their R² inside the central 90 %
            _, how = verdicts.authors_epochs_draws(m, by[e][0], by[e][1], e, 10)
            assert how == verdicts.AUTHORS_BOOTSTRAP, (m, e)
