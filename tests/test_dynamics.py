"""Collapse through training (linguistic_collapse.pipeline.dynamics): snapshot schedule, epoch-end snapshots identical to
the grid's checkpoints, resume, staleness, lead/lag on synthetic series with a known lag."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import Layout, read_json
from linguistic_collapse.core.profiles import Profile, load_profile
from linguistic_collapse.pipeline import dynamics, loop
from linguistic_collapse.pipeline.checkpoints import STATE_FILE
from linguistic_collapse.pipeline.jobs import prepare_profile_corpus, train_all
from linguistic_collapse.pipeline.snapshots import snapshot_steps
from linguistic_collapse.pipeline.train import read_results
from linguistic_collapse.series import progress
from linguistic_collapse.tables import lead_lag

RUN = "L1-d16-e2-wd0.1-s0"


def dyn_profile(make, out_dir, **dyn) -> Profile:
    """The shared tiny profile (``tiny_profile``) with one 2-epoch run and its dynamics run."""
    return make(out_dir, grid={"variants": [{"epochs": 2, "weight_decay": 0.1,
                                             "checkpoints": [1, 2]}]},
                collect={"max_train_blocks": 8},
                dynamics={"runs": [RUN], "points_per_epoch": 3, **dyn})


@pytest.fixture(scope="module")
def done(tmp_path_factory, tiny_profile):
    """The grid run trained, then its dynamics (profile, corpus, table), once for the module."""
    p = dyn_profile(tiny_profile, tmp_path_factory.mktemp("dyn"))
    corpus = prepare_profile_corpus(p, progress=False)
    train_all(p, corpus=corpus, progress=False)
    return p, corpus, dynamics.run_all(p, corpus=corpus, progress=False)


# --- schedule and profile --------------------------------------------------------------------


def test_snapshot_steps_are_even_and_include_every_epoch_end():
    assert snapshot_steps(10, 2, 4) == [0, 2, 5, 7, 10, 12, 15, 17, 20]
    assert snapshot_steps(3, 1, 3) == [0, 1, 2, 3]
    steps = snapshot_steps(216, 3, 10)
    assert len(steps) == 31 and {216, 432, 648} <= set(steps) and np.all(np.diff(steps) >= 21)
    with pytest.raises(UserError, match="points_per_epoch is 4 but an epoch has only 3"):
        snapshot_steps(3, 1, 4)


def test_profile_section_is_validated(tmp_path, tiny_profile):
    p = dyn_profile(tiny_profile, tmp_path)
    assert p.dynamics.run_names() == [ModelName.parse(RUN)]
    assert Profile.from_dict(p.as_dict()) == p
    for bad, message in ((["L9-d16-e2-wd0.1-s0"], "is not a training run of this profile"),
                         ([RUN + "-ck1"], "is not a training run"),
                         (["nonsense"], "is not a run name")):
        with pytest.raises(UserError, match=f"dynamics.runs: .*{message}"):
            dyn_profile(tiny_profile, tmp_path, runs=bad)
    with pytest.raises(UserError, match="dynamics: unknown key 'points'"):
        dyn_profile(tiny_profile, tmp_path, points=3)
    with pytest.raises(UserError, match="dynamics.points_per_epoch: .*greater than 0"):
        dyn_profile(tiny_profile, tmp_path, points_per_epoch=0)
    d = p.as_dict()
    del d["dynamics"]
    assert Profile.from_dict(d).dynamics.runs == ()  # absent: no dynamics


@pytest.mark.parametrize("name", ["smoke", "cpu"])
def test_shipped_profiles_name_runs_of_their_own(name):
    p = load_profile(name)
    assert p.dynamics.runs and set(p.dynamics.run_names()) <= set(p.runs())
    assert p.dynamics.max_train_blocks is not None  # the cost stays bounded


# --- training, collection, table -------------------------------------------------------------


def test_epoch_end_snapshots_are_the_grid_checkpoints(done):
    p, corpus, table = done
    results = read_results(p.out_path, ModelName.parse(RUN))
    S = math.ceil(corpus.n_train_blocks / 8)
    assert list(table["step"]) == snapshot_steps(S, 2, 3)
    for ck in results["checkpoints"]:
        row = table[table["step"] == ck["epoch"] * S].iloc[0]
        assert row["epoch"] == ck["epoch"]
        assert row["weights_sha256"] == ck["weights_sha256"]  # identical weights, bit for bit
        assert row["val_loss"] == ck["val_loss"] and row["tokens_seen"] == ck["tokens_seen"]
    agree = dynamics.grid_agreement(p, table)
    assert list(agree["epoch"]) == [1, 2] and agree["same_weights"].all()
    assert (agree["val_loss"] == agree["grid_val_loss"]).all()
    assert results["settings"] == dynamics.make_plan(p, ModelName.parse(RUN), corpus).settings[
        "run_inputs"]  # the grid's own inputs, unchanged by the dynamics section


def test_table_has_every_snapshot_and_measure(done):
    p, corpus, table = done
    d = Layout(p.out_path).dynamics_dir(ModelName.parse(RUN))
    assert (d / "dynamics.csv").is_file() and len(table) == 7
    assert np.isnan(table["train_loss"].iloc[0]) and (table["train_loss"].iloc[1:] > 0).all()
    assert (np.diff(table["tokens_seen"]) > 0).all() and table["tokens_seen"].iloc[0] == 0
    assert table["val_loss"].iloc[-1] < table["val_loss"].iloc[0]
    assert (table["train_tokens_measured"] == 8 * 31).all()  # collect cap: 8 blocks, 31 targets each
    for m in ("nc1_cdnv", "gnc2_logkernel_var", "unc3_duality_cv", "nc4_agreement"):
        assert table[m].notna().all()
    assert table["settings_sha256"].nunique() == 1
    # saved while the grid trained the run: no training state; each a loadable model + tokenizer
    assert not any((c / STATE_FILE).is_file() for c in d.glob("checkpoint-*"))
    assert all((d / f"checkpoint-{s}" / "tokenizer.json").is_file() for s in table["step"])


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, tiny_profile):
    """The same run the other way round: dynamics first (trained again, snapshots and all), then
    the grid, which finds the snapshots saved and trains without any."""
    p = dyn_profile(tiny_profile, tmp_path_factory.mktemp("dyn-first"))
    corpus = prepare_profile_corpus(p, progress=False)
    table = dynamics.run_all(p, corpus=corpus, progress=False)
    train_all(p, corpus=corpus, progress=False)
    return p, table


def test_snapshots_taken_by_the_grid_leave_its_checkpoints_unchanged(done, retrained):
    """The grid run trained with its dynamics snapshots (``done``) and without (``retrained``):
    the same weights, losses and tokens at every checkpoint, and the same snapshots as the
    dynamics stage trains on its own (the same code on one machine: bit for bit)."""
    p, _, table = done
    p2, table2 = retrained
    with_snaps = read_results(p.out_path, ModelName.parse(RUN))["checkpoints"]
    without = read_results(p2.out_path, ModelName.parse(RUN))["checkpoints"]
    timing = ("wall_s", "train_tokens_per_s")
    assert [{k: v for k, v in c.items() if k not in timing} for c in with_snaps] == \
        [{k: v for k, v in c.items() if k not in timing} for c in without]
    pd.testing.assert_frame_equal(table.drop(columns="settings_sha256"),
                                  table2.drop(columns="settings_sha256"))
    d2 = Layout(p2.out_path).dynamics_dir(ModelName.parse(RUN))  # trained again: the last keeps its state
    with_state = sorted(int(c.name.split("-")[1]) for c in d2.glob("checkpoint-*") if (c / STATE_FILE).is_file())
    assert with_state == [table2["step"].iloc[-1]]


def test_grid_with_snapshots_trains_the_run_once(tmp_path, tiny_profile, monkeypatch):
    """The dynamics stage after a grid that took the snapshots trains nothing; a grid run that
    fails on the way leaves no dynamics folder to be mistaken for a finished one."""
    p = dyn_profile(tiny_profile, tmp_path)
    corpus = prepare_profile_corpus(p, progress=False)
    real, calls = loop.train_epoch, []

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_all(p, corpus=corpus, progress=False)
    d = Layout(p.out_path).dynamics_dir(ModelName.parse(RUN))
    assert not d.exists()
    monkeypatch.setattr(loop, "train_epoch", real)
    train_all(p, corpus=corpus, progress=False)  # resumes the grid run from epoch 1: no snapshots
    assert not d.exists()


def test_dynamics_after_the_grid_trains_nothing(done, monkeypatch):
    p, corpus, table = done

    def boom(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(loop, "train_epoch", boom)
    d = Layout(p.out_path).dynamics_dir(ModelName.parse(RUN))
    (d / "dynamics.csv").unlink()  # the table rebuilt from the stored snapshots, stats and metrics
    pd.testing.assert_frame_equal(dynamics.run_all(p, corpus=corpus, progress=False), table)


def test_finished_dynamics_are_not_redone(done, monkeypatch):
    p, corpus, table = done

    def boom(*args, **kwargs):
        raise AssertionError("recomputed finished work")

    monkeypatch.setattr(dynamics, "collect_model_stats", boom)
    monkeypatch.setattr(loop, "train_epoch", boom)
    pd.testing.assert_frame_equal(dynamics.run_all(p, corpus=corpus, progress=False), table)


def test_interrupted_training_resumes_to_the_same_weights(done, tmp_path, monkeypatch,
                                                          tiny_profile):
    _, _, table = done
    p = dyn_profile(tiny_profile, tmp_path)
    corpus = prepare_profile_corpus(p, progress=False)
    real, calls = loop.train_epoch, []  # the one training loop, which dynamics runs

    def dies_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # mid-epoch 2: resumes from a snapshot inside an epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        dynamics.run_all(p, corpus=corpus, progress=False)
    monkeypatch.setattr(loop, "train_epoch", real)
    resumed = dynamics.run_all(p, corpus=corpus, progress=False)
    assert list(resumed["weights_sha256"]) == list(table["weights_sha256"])  # across epoch 1 -> 2
    assert list(resumed["val_loss"]) == list(table["val_loss"])


def test_changed_cap_recollects_and_changed_training_retrains(done, tmp_path, tiny_profile):
    p0, _, table = done
    p = dyn_profile(tiny_profile, tmp_path, max_train_blocks=4)
    corpus = prepare_profile_corpus(p, progress=False)
    capped = dynamics.run_all(p, corpus=corpus, progress=False)
    d = Layout(p.out_path).dynamics_dir(ModelName.parse(RUN))
    first = (d / "checkpoint-0" / "model.safetensors").stat().st_mtime_ns
    assert (capped["train_tokens_measured"] == 4 * 31).all()
    assert list(capped["weights_sha256"]) == list(table["weights_sha256"])
    p2 = dyn_profile(tiny_profile, tmp_path, max_train_blocks=8)  # back to the module's cap: recollected only
    again = dynamics.run_all(p2, corpus=corpus, progress=False)
    assert (d / "checkpoint-0" / "model.safetensors").stat().st_mtime_ns == first  # not retrained
    pd.testing.assert_frame_equal(again.drop(columns="settings_sha256"),
                                  table.drop(columns="settings_sha256"))
    d3 = p2.as_dict()
    d3["training"]["lr"] = 5e-3
    retrained = dynamics.run_all(Profile.from_dict(d3), corpus=corpus, progress=False)
    assert retrained["weights_sha256"].iloc[0] == table["weights_sha256"].iloc[0]  # same init
    assert retrained["weights_sha256"].iloc[-1] != table["weights_sha256"].iloc[-1]
    assert read_json(d / "settings.json")["run_inputs"]["training"]["lr"] == 5e-3
    assert p0.dynamics.points_per_epoch == 3


def test_no_dynamics_runs_give_an_empty_table_figure_and_summary(tmp_path, tiny_profile):
    from linguistic_collapse.figures.dynamics import dynamics_figure, summary_markdown

    p = dyn_profile(tiny_profile, tmp_path, runs=[])
    table = dynamics.run_all(p, progress=False)
    assert table.empty and not (p.out_path / "dynamics").exists()
    lags = lead_lag.lead_lag_table(table)
    assert lags.empty and "No dynamics runs" in lead_lag.summary_text(lags)
    assert summary_markdown(lags).data == lead_lag.summary_text(lags)  # the notebook's Markdown
    assert len(dynamics_figure(table).axes) == 1


def test_stage_counter_counts_saved_and_measured_snapshots(done, tmp_path, tiny_profile):
    p, _, _ = done
    assert progress.dynamics_counter(p)() == (14, 14, "snapshot steps (saved + measured)", "-")
    fresh = dyn_profile(tiny_profile, tmp_path)
    assert progress.dynamics_counter(fresh)() == (0, 14, "snapshot steps (saved + measured)", RUN)


# --- lead and lag ----------------------------------------------------------------------------


def _ramp(t: np.ndarray, start: float, width: float) -> np.ndarray:
    return np.clip((t - start) / width, 0.0, 1.0)


def synthetic(lag: int, measure: str = "nc1_cdnv") -> pd.DataFrame:
    """101 snapshots; the loss falls on a ramp over steps 20-40, the measure on the same ramp
    ``lag`` steps later (CDNV falls by a decade, NC4 agreement rises)."""
    t = np.arange(101)
    loss = 5.0 - 2.0 * _ramp(t, 20, 20)
    r = _ramp(t, 20 + lag, 20)
    values = 10 ** (-1.0 - r) if measure == "nc1_cdnv" else 0.1 + 0.5 * r
    return pd.DataFrame({"run": "synthetic", "step": t, "epoch": t / 50, "tokens_seen": 1000 * t,
                         "val_loss": loss, measure: values})


def test_level_crossing_known_values():
    t = np.arange(101)
    assert lead_lag.level_crossing(t, _ramp(t, 20, 20)) == pytest.approx(38.0)
    assert lead_lag.level_crossing(t, -_ramp(t, 20, 20), 0.5) == pytest.approx(30.0)
    y = _ramp(t, 20, 20) + np.where(t == 10, 5.0, 0.0)  # an early overshoot does not count
    assert lead_lag.level_crossing(t, y) == pytest.approx(38.0)
    assert math.isnan(lead_lag.level_crossing(t, np.ones(101)))
    with pytest.raises(ValueError, match="level"):
        lead_lag.level_crossing(t, t, 1.5)


@pytest.mark.parametrize("lag", [7, 0, -5])
@pytest.mark.parametrize("measure", ["nc1_cdnv", "nc4_agreement"])
def test_lead_lag_recovers_a_known_lag(lag, measure):
    out = lead_lag.lead_lag(synthetic(lag, measure), measure)
    assert out["step_loss"] == pytest.approx(38.0)
    assert out["lag_steps"] == pytest.approx(lag)
    assert out["lag_tokens"] == pytest.approx(1000 * lag)
    assert out["xcorr_lag"] == lag
    assert abs(out["xcorr_r"]) == pytest.approx(1.0)
    assert np.sign(out["xcorr_r"]) == (1 if measure == "nc1_cdnv" else -1)


def test_lead_lag_from_a_later_start_ignores_the_initialisation():
    table = synthetic(7)
    table.loc[0, "nc1_cdnv"] = 1e3  # a degenerate value at initialisation
    assert lead_lag.lead_lag(table, "nc1_cdnv")["lag_steps"] != pytest.approx(7)
    out = lead_lag.lead_lag(table, "nc1_cdnv", start_step=1)
    assert out["lag_steps"] == pytest.approx(7) and out["xcorr_lag"] == 7


def test_lead_lag_table_verdicts_and_summary():
    table = pd.concat([synthetic(7).assign(run="late"), synthetic(-5).assign(run="early"),
                       synthetic(0).assign(run="same")], ignore_index=True)
    lags = lead_lag.lead_lag_table(table, ["nc1_cdnv"])
    assert dict(zip(lags["run"], lags["settles"], strict=True)) == {
        "late": "after", "early": "before", "same": "with"}
    text = lead_lag.summary_text(lags)
    assert "**late**" in text and "After it: NC1: CDNV" in text
    with pytest.raises(ValueError, match="one run's table"):
        lead_lag.lead_lag(table, "nc1_cdnv")


def test_diff_xcorr_prefers_the_smallest_lag_on_ties_and_handles_flat_series():
    assert lead_lag.diff_xcorr(np.zeros(10), np.arange(10.0), 3) == (0, pytest.approx(math.nan,
                                                                                        nan_ok=True))
    rng = np.random.default_rng(0)
    b = np.cumsum(rng.normal(size=60))
    a = np.concatenate([np.zeros(4), b[:-4]])  # a's changes follow b's by 4 samples
    k, r = lead_lag.diff_xcorr(a, b, 8)
    assert k == 4 and r == pytest.approx(1.0)


def test_dynamics_figure_has_one_panel_per_quantity():
    from linguistic_collapse.figures.dynamics import dynamics_figure

    table = pd.concat([synthetic(7).assign(run="a"), synthetic(-5).assign(run="b")])
    fig = dynamics_figure(table, ncols=2)
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 2 and visible[1].get_yscale() == "log"
    # two epoch-end guides, then per run its curve and its 90 % line at the known step
    lines = visible[0].get_lines()
    assert len(lines) == 6 and [ln.get_xdata()[0] for ln in lines[:2]] == [50_000, 100_000]
    assert lines[3].get_xdata()[0] == pytest.approx(38_000)
    assert lines[5].get_xdata()[0] == pytest.approx(38_000)  # the loss panel: both runs
    assert visible[1].get_lines()[3].get_xdata()[0] == pytest.approx(45_000)  # lag 7


def test_baseline_step_is_the_first_snapshot_or_the_one_after_it():
    assert lead_lag.baseline_step([0, 5, 10], "initialisation") == 0
    assert lead_lag.baseline_step([10, 0, 5], "first snapshot") == 5
    with pytest.raises(ValueError, match="baseline"):
        lead_lag.baseline_step([0, 1], "end")


def test_lead_lag_settings_and_robust_verdicts_on_a_constructed_lag():
    late = synthetic(7).assign(run="late")
    odd = synthetic(7).assign(run="odd")
    odd.loc[0, "nc1_cdnv"] = 1e-6  # degenerate at initialisation: the total change is set there
    lags = lead_lag.lead_lag_settings(pd.concat([late, odd], ignore_index=True), ["nc1_cdnv"])
    assert len(lags) == 2 * len(lead_lag.LEVELS) * len(lead_lag.BASELINES)
    assert set(lags["threshold"]) == set(lead_lag.LEVELS)
    # the ramp ends at step 40 + lag; the loss's crossings are 36, 38, 39 at 80/90/95 %
    late_lags = lags[lags["run"] == "late"]
    assert late_lags["lag_steps"].to_numpy() == pytest.approx([7] * 6)
    assert late_lags["step_loss"].to_numpy() == pytest.approx([36, 38, 39] * 2)
    robust = lead_lag.robust_verdicts(lags).set_index("run")
    assert robust.loc["late", "robust"] == "after" and robust.loc["late", "after"] == 6
    assert bool(robust.loc["late", "never_before"]) and not robust.loc["late", "never_after"]
    odd_verdicts = lags[lags["run"] == "odd"].set_index("baseline")["settles"]
    assert set(odd_verdicts["first snapshot"]) == {"after"}
    assert set(odd_verdicts["initialisation"]) != {"after"}  # the init value decides there
    assert robust.loc["odd", "robust"] == "mixed"
    both = lead_lag.robust_statements(lead_lag.robust_verdicts(lags))
    assert both["all_runs"].tolist() == ["none"]
    only_late = lead_lag.robust_statements(lead_lag.robust_verdicts(lags[lags["run"] == "late"]))
    assert only_late["all_runs"].tolist() == ["after"] and only_late["never_before"].all()
    text = lead_lag.summary_text(lags)
    assert "all 6 settings" in text and "Depends on the setting: NC1: CDNV" in text


def test_dynamics_figure_draws_an_off_scale_initial_value_at_the_edge():
    from linguistic_collapse.figures.dynamics import dynamics_figure

    table = synthetic(0, "nc4_agreement").rename(columns={"nc4_agreement": "unc3_duality_cv"})
    plain = [ax for ax in dynamics_figure(table, ncols=2).axes if ax.axison][1]
    assert plain.get_ylim()[1] < 1  # the ramp 0.1 -> 0.6, nothing clipped
    table.loc[0, "unc3_duality_cv"] = 60.0  # degenerate at initialisation
    fig = dynamics_figure(table, ncols=2)
    ax = [a for a in fig.axes if a.axison][1]
    assert ax.get_ylim()[1] == pytest.approx(0.6 + 0.08 * 0.5)  # fitted to the later snapshots
    assert any(t.get_text() == "init 60" for t in ax.texts)
    assert "▲/▼" in fig._suptitle.get_text()


def test_lead_lag_record_findings(tmp_path):
    from linguistic_collapse.tables.findings import Findings

    table = synthetic(7).assign(run="late")
    lags = lead_lag.lead_lag_settings(table, ["nc1_cdnv"])
    f = Findings(tmp_path / "findings.md", "08_dynamics")
    lead_lag.record_findings(f, table, lags)
    text = f.markdown()
    assert "| NC1: CDNV: verdict in all runs and settings | after |" in text
    assert "| late NC1: CDNV: settings before/with/after | 0/0/6 (after) |" in text
    assert "| lead/lag settings (baselines x thresholds) | 6 |" in text
