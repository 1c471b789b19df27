"""Pipeline: the paper's job list and cost table, the local stages, submitit in-process."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import submitit
from checkout import REPO_ROOT
from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import Layout, read_json
from linguistic_collapse.core.profiles import Profile, load_profile
from linguistic_collapse.core.provenance import sha256_array, sha256_file, weights_sha256
from linguistic_collapse.nc.stats_file import load_stats_metadata
from linguistic_collapse.pipeline.blocks import subsample_blocks
from linguistic_collapse.pipeline.costs import dry_run, plan_jobs
from linguistic_collapse.pipeline.jobs import (
    collect_all,
    is_collected,
    is_measured,
    measure_all,
    pending_runs,
    run_job,
    run_local,
    sensitivity_all,
    train_all,
)
from linguistic_collapse.pipeline.slurm import submit_slurm
from linguistic_collapse.tables.results import build_results_table
from linguistic_collapse.tables.sensitivity import fixed_k_table, sensitivity_table, stability


def stats_path(out_dir, ck):
    return Layout(out_dir).stats(ck)


def metrics_path(out_dir, ck):
    return Layout(out_dir).metrics(ck)


def checkpoint_dir(out_dir, ck):
    return Layout(out_dir).checkpoint_dir(ck)


def test_paper_jobs():
    p = load_profile("paper")
    jobs = plan_jobs(p)
    assert len(jobs) == 170
    assert sum(len(j.checkpoints) for j in jobs) == 230
    assert sum(len(j.checkpoints) == 2 for j in jobs) == 60  # the 10-epoch runs at ck6, ck10
    job = next(j for j in jobs if str(j.run) == "L12-d1024-e10-wd0.1-s0")
    assert [ck.checkpoint for ck in job.checkpoints] == [6, 10] and job.batch_size == 4
    # the paper's closed form: (V + 2048) d + L (12 d^2 + 10 d) + 2 d
    assert job.n_params == (50257 + 2048) * 1024 + 12 * (12 * 1024**2 + 10 * 1024) + 2 * 1024


def test_paper_cost_of_one_job_by_hand():
    p = load_profile("paper")
    job = next(j for j in plan_jobs(p) if str(j.run) == "L2-d768-e1-wd0.0005-s3")
    N = 2 * (12 * 768**2 + 10 * 768) + 50257 * 768  # matmul parameters, LM head included
    attn = 2 * 768 * (1 * 2048 + 1 * 256)  # one global, one local (window 256) layer
    fwd, tr, va = 2 * N + attn, 470_000_000, 4_700_000
    assert job.train_flops == pytest.approx(3 * fwd * tr + fwd * va)
    assert job.collect_flops == pytest.approx(fwd * (tr + va))  # one train pass, one validation
    assert job.gpu_hours(312, 0.4) == pytest.approx((job.train_flops + job.collect_flops)
                                                    / (312e12 * 0.4) / 3600)


def test_paper_dry_run_table():
    table = dry_run(load_profile("paper"))
    assert len(table) == 171 and table["run"].iloc[-1] == "TOTAL"
    body = table.iloc[:-1]
    assert set(body["run"]) == {str(r) for r in load_profile("paper").runs()}
    assert (body["gpu_hours"] > 0).all()
    assert table["gpu_hours"].iloc[-1] == pytest.approx(body["gpu_hours"].sum())
    assert table["n_checkpoints"].iloc[-1] == 230
    # bigger and longer runs cost more
    hours = dict(zip(body["run"], body["gpu_hours"], strict=True))
    assert hours["L12-d1024-e10-wd0.1-s0"] > hours["L12-d1024-e1-wd0.1-s0"] > hours["L1-d64-e1-wd0.1-s0"]


@pytest.mark.slow
def test_separate_stages_then_run_local_is_a_noop(tmp_path, tiny_profile):
    p = tiny_profile(tmp_path)
    (ck,) = p.checkpoints()
    train_all(p, progress=False)
    assert (checkpoint_dir(p.out_path, ck) / "config.json").is_file()
    assert not stats_path(p.out_path, ck).exists()
    collect_all(p, progress=False)
    assert stats_path(p.out_path, ck).is_file() and not metrics_path(p.out_path, ck).exists()
    measure_all(p, progress=False)
    metrics = read_json(metrics_path(p.out_path, ck))
    assert metrics["run"] == str(ck) and metrics["spec"]["width"] == 16
    assert math.isfinite(metrics["nc1_cdnv"]) and metrics["num_classes"] > 0
    meta_tokens = sum(metrics[f"pass{i}_tokens"] for i in (1, 2))
    assert metrics["collect_tokens"] == meta_tokens and metrics["collect_tokens_per_s"] > 0
    stamp = metrics_path(p.out_path, ck).stat().st_mtime_ns
    run_local(p, progress=False)  # everything finished: nothing redone
    assert metrics_path(p.out_path, ck).stat().st_mtime_ns == stamp
    assert pending_runs(p) == []


def test_work_bars_count_runs_and_checkpoints_not_steps(tmp_path, tiny_profile, monkeypatch):
    """The bars over a profile's work show runs/s or checkpoints/s (they showed "step/s")."""
    from linguistic_collapse.pipeline import jobs

    p, units, real = tiny_profile(tmp_path), [], jobs.tqdm
    monkeypatch.setattr(jobs, "tqdm", lambda *a, **kw: units.append(kw["unit"]) or real(*a, **kw))
    for name in ("_corpus", "train_runs", "collect_checkpoints", "measure_checkpoints", "run_job"):
        monkeypatch.setattr(jobs, name, lambda *a, **kw: None)  # the bars alone
    train_all(p, progress=False)
    collect_all(p, progress=False)
    measure_all(p, progress=False)
    run_local(p, progress=False)
    assert units == ["run", "checkpoint", "checkpoint", "task"]


def test_unknown_step(tmp_path, tiny_profile):
    p = tiny_profile(tmp_path)
    with pytest.raises(ValueError, match="unknown step 'plot'"):
        run_job(p, p.runs()[0], steps=("plot",))


def test_checkpoint_without_corpus_manifest_is_pending_not_an_error(tmp_path, tiny_profile):
    """A trained checkpoint whose corpus folder is gone (SLURM submission then prepares it):
    not collected, and its run has work left, instead of a missing-manifest error."""
    p = tiny_profile(tmp_path)
    ck = p.checkpoints_of(p.runs()[0])[0]
    checkpoint_dir(p.out_path, ck).mkdir(parents=True)
    (checkpoint_dir(p.out_path, ck) / "config.json").write_text("{}")
    assert not Layout(p.out_path).manifest.exists()
    assert not is_collected(p, ck)
    assert pending_runs(p, ("collect",)) == p.runs()


@pytest.mark.slow
def test_submitit_debug_executor_runs_one_job(tmp_path, tiny_profile):
    p = tiny_profile(tmp_path / "out")
    executor = submitit.DebugExecutor(folder=tmp_path / "submitit")
    jobs = submit_slurm(p, executor=executor).jobs
    assert len(jobs) == 1
    assert jobs[0].result() == str(ModelName.parse("L1-d16-e1-wd0.1-s0"))
    (ck,) = p.checkpoints()
    assert metrics_path(p.out_path, ck).is_file()
    assert submit_slurm(p, executor=executor).runs == []  # nothing left to submit


def test_retrain_after_corpus_change_redoes_stats_and_metrics(tmp_path, tiny_profile):
    """A retrained run's old statistics and measures are never joined with its new val_loss."""
    p = tiny_profile(tmp_path)
    (ck,) = p.checkpoints()
    run_local(p, progress=False)
    old_stats, old_metrics = sha256_file(stats_path(p.out_path, ck)), read_json(metrics_path(p.out_path, ck))
    d = p.as_dict()
    d["corpus"]["max_train_stories"] = 50  # the corpus is rebuilt: other blocks
    changed = Profile.from_dict(d)
    fix = f"python -m linguistic_collapse train --profile smoke --run {ck.run} --retrain"
    with pytest.raises(UserError, match=r"train_blocks_sha256.*changed.*" + fix.replace("-", r"\-")):
        run_local(changed, progress=False)
    assert not is_collected(changed, ck)  # the stats do not match the new corpus
    run_local(changed, progress=False, retrain=True)
    meta = load_stats_metadata(stats_path(p.out_path, ck))
    assert meta["weights_sha256"] == weights_sha256(checkpoint_dir(p.out_path, ck))
    assert meta["train_blocks_sha256"] == read_json(Layout(p.out_path).manifest)["train_blocks_sha256"]
    new_metrics = read_json(metrics_path(p.out_path, ck))
    assert new_metrics["stats_sha256"] == sha256_file(stats_path(p.out_path, ck)) != old_stats
    assert new_metrics["nc1_cdnv"] != old_metrics["nc1_cdnv"]
    assert is_collected(changed, ck) and is_measured(changed, ck) and pending_runs(changed) == []


def test_one_collection_hashes_the_checkpoint_once(tmp_path, tiny_profile, monkeypatch):
    """collect_all hashes a checkpoint's files once: the same hashes decide whether the stats
    are current (before and under the lock) and are recorded in the stats file."""
    import linguistic_collapse.core.provenance
    import linguistic_collapse.lm.identity
    import linguistic_collapse.pipeline.collect
    import linguistic_collapse.pipeline.jobs

    p = tiny_profile(tmp_path)
    (ck,) = p.checkpoints()
    train_all(p, progress=False)
    calls = []

    def counting(original):
        def hashed(*args):
            calls.append(original.__name__)
            return original(*args)
        return hashed

    for module in (linguistic_collapse.core.provenance, linguistic_collapse.pipeline.jobs, linguistic_collapse.pipeline.collect):
        monkeypatch.setattr(module, "weights_sha256", counting(weights_sha256))
    monkeypatch.setattr(linguistic_collapse.lm.identity, "state_dict_sha256",
                        counting(linguistic_collapse.lm.identity.state_dict_sha256))
    collect_all(p, progress=False)
    assert calls == ["weights_sha256"]
    meta = load_stats_metadata(stats_path(p.out_path, ck))
    assert meta["weights_sha256"] == weights_sha256(checkpoint_dir(p.out_path, ck))
    calls.clear()
    stamp = stats_path(p.out_path, ck).stat().st_mtime_ns
    collect_all(p, progress=False)  # current: one hash to see so, nothing collected
    assert calls == ["weights_sha256"]
    assert stats_path(p.out_path, ck).stat().st_mtime_ns == stamp


def test_metrics_of_another_stats_file_are_remeasured(tmp_path, tiny_profile):
    p = tiny_profile(tmp_path)
    (ck,) = p.checkpoints()
    run_local(p, progress=False)
    path = metrics_path(p.out_path, ck)
    metrics = read_json(path)
    robust = metrics["min_count"]  # the robustness section: measures on the frequent classes
    assert robust["min_count"] == p.analysis.min_count
    assert robust["num_classes"] <= metrics["num_classes"] and "nc1_pinv" in robust["undefined"]
    path.write_text(json.dumps({**metrics, "stats_sha256": "0" * 64, "nc1_cdnv": -1.0}))
    assert not is_measured(p, ck) and pending_runs(p) == [ck.run]
    measure_all(p, progress=False)
    assert read_json(path) == metrics


_GRID_SCRIPT = """
import sys
from linguistic_collapse.pipeline.jobs import run_local
from linguistic_collapse.core.profiles import Profile
import json
run_local(Profile.from_dict(json.loads(sys.argv[1])), progress=False)
"""


@pytest.mark.slow
def test_two_grid_processes_on_one_out_dir(tmp_path, tiny_profile):
    """Two concurrent grids: both finish cleanly, one after the other per output."""
    p = tiny_profile(tmp_path / "out")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _GRID_SCRIPT, json.dumps(p.as_dict())],
                              cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], errors
    (ck,) = p.checkpoints()
    assert pending_runs(p) == [] and is_measured(p, ck)
    assert not [q for q in p.out_path.rglob("*.tmp")]


def test_changed_collect_cap_recollects_and_sensitivity(tmp_path, tiny_profile):
    """A stats file over other blocks than the profile asks for is not current; the sensitivity
    study re-collects on random subsamples (one file per draw, its indices recorded), a changed
    seed makes them stale, and its full fraction equals the main statistics."""
    p = tiny_profile(tmp_path)
    (ck,) = p.checkpoints()
    run_local(p, progress=False)
    n_train = read_json(Layout(p.out_path).manifest)["n_train_blocks"]
    assert load_stats_metadata(stats_path(p.out_path, ck))["pass1_blocks"] == str(n_train)
    d = p.as_dict()
    d["collect"]["max_train_blocks"] = 3
    d["sensitivity"] = {"runs": [str(ck)], "fractions": [0.5, 1.0], "draws": 2, "seed": 0}
    capped = Profile.from_dict(d)
    assert not is_collected(capped, ck) and pending_runs(capped) == [ck.run]
    run_local(capped, progress=False)
    assert load_stats_metadata(stats_path(p.out_path, ck))["pass1_blocks"] == "3"
    paths = sensitivity_all(capped, progress=False)
    layout = Layout(p.out_path)
    assert paths == [layout.metrics(ck, 0.5, 0), layout.metrics(ck, 0.5, 1), layout.metrics(ck, 1.0)]
    for draw in (0, 1):
        meta = load_stats_metadata(layout.stats(ck, 0.5, draw))
        assert meta["pass1_blocks"] == "2"
        assert meta["pass1_indices_sha256"] == sha256_array(subsample_blocks(3, 0.5, 0, draw))
        assert meta["pass2_blocks"] == str(read_json(layout.manifest)["n_val_blocks"])
    assert "pass1_indices_sha256" not in load_stats_metadata(stats_path(p.out_path, ck))
    half, full = read_json(paths[0]), read_json(paths[1 + 1])
    assert half["train_fraction"] == 0.5 and half["train_draw"] == 0
    assert "train_fraction" not in full
    assert paths[2] == metrics_path(p.out_path, ck)  # fraction 1 is the main statistics, reused
    assert half["nc1_cdnv"] != full["nc1_cdnv"]
    table = sensitivity_table(capped)  # the notebook's tables read these files
    assert list(table["draw"]) == [0, 1, 0]
    fixed = fixed_k_table(capped)
    assert fixed["num_classes"].nunique() == 1 and fixed["num_classes"].iloc[0] <= table["num_classes"].min()
    grid = build_results_table(p.out_path, p.checkpoints())
    assert len(stability(table, grid)) == len(stability(fixed, grid)) > 0
    d["sensitivity"]["seed"] = 1  # other subsamples: the files of seed 0 are stale
    reseeded = Profile.from_dict(d)
    changed = [draw for draw in (0, 1) if not np.array_equal(
        subsample_blocks(3, 0.5, 0, draw), subsample_blocks(3, 0.5, 1, draw))]
    assert changed and all(not is_collected(reseeded, ck, 0.5, draw) for draw in changed)
    assert is_collected(reseeded, ck, 1.0) and is_collected(capped, ck, 0.5, 0)


def _count_file_work(monkeypatch) -> list[tuple[str, Path]]:
    """(what, file) of every hash (``sha256_file``) and read (``read_stats``; ``read_layers``;
    ``read_counts``, the counts alone) of a file by any lib module, from now on."""
    import linguistic_collapse.core.provenance as provenance
    import linguistic_collapse.nc.stats_file as sf

    calls: list[tuple[str, Path]] = []
    named = {"hash": provenance.sha256_file, "read": sf.read_stats, "layers": sf.read_layers,
             "counts": getattr(sf, "read_counts", None)}
    for what, original in named.items():
        if original is None:
            continue

        def counted(path, *args, _original=original, _what=what, **kwargs):
            calls.append((_what, Path(path)))
            return _original(path, *args, **kwargs)

        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("linguistic_collapse") and \
                    getattr(module, original.__name__, None) is original:
                monkeypatch.setattr(module, original.__name__, counted)
    return calls


def test_each_stats_file_read_and_hashed_once_and_weights_once_per_study(tmp_path, tiny_profile,
                                                                         monkeypatch):
    """Measuring a stale checkpoint (with layers) hashes its stats file once and reads it
    (verified) once for every section; a current one is hashed once and not read; the
    sensitivity study hashes a checkpoint's weights once for all its (fraction, draw) samples,
    and each sample's stats file once and reads it once for its measures and the fixed-K ones
    (beside a partial read of its counts), and nothing more when current."""
    import linguistic_collapse.core.provenance
    import linguistic_collapse.pipeline.collect
    import linguistic_collapse.pipeline.jobs

    d = tiny_profile(tmp_path).as_dict()
    p = Profile.from_dict(d)
    (ck,) = p.checkpoints()
    train_all(p, progress=False)
    collect_all(p, progress=False)
    stats = stats_path(p.out_path, ck)
    assert load_stats_metadata(stats)["layers"]  # the smoke profile collects every layer
    calls = _count_file_work(monkeypatch)
    measure_all(p, progress=False)
    assert sorted(calls) == [("hash", stats), ("read", stats)] and is_measured(p, ck)
    metrics = metrics_path(p.out_path, ck)
    metrics.write_text(json.dumps({**read_json(metrics), "stats_sha256": "0" * 64}))
    calls.clear()
    measure_all(p, progress=False)  # stale metrics: the stats file hashed once, read once
    assert sorted(calls) == [("hash", stats), ("read", stats)] and is_measured(p, ck)
    calls.clear()
    measure_all(p, progress=False)  # current: one hash to see so
    assert calls == [("hash", stats)]

    d["sensitivity"] = {"runs": [str(ck)], "fractions": [0.5, 1.0], "draws": 2, "seed": 0}
    study = Profile.from_dict(d)
    weights = []
    for module in (linguistic_collapse.core.provenance, linguistic_collapse.pipeline.jobs,
                   linguistic_collapse.pipeline.collect):
        monkeypatch.setattr(module, "weights_sha256",
                            lambda path: weights.append(path) or weights_sha256(path))
    layout = Layout(p.out_path)
    samples = [layout.stats(ck, 0.5, 0), layout.stats(ck, 0.5, 1), stats]
    calls.clear()
    assert len(sensitivity_all(study, progress=False)) == 3  # 2 draws of 0.5, then 1.0
    fixed_k_table(study)  # the notebook's table: read from the stages' file, nothing measured
    assert len(weights) == 1
    for path in samples:  # collected (0.5) or measured already (1.0), then the fixed-K rows
        work = sorted(what for what, file in calls if file == path)
        assert work == ["counts", "hash", "read"], (path, work)
    calls.clear()
    sensitivity_all(study, progress=False)  # current: one hash per file, no read
    assert sorted(c for c in calls if c[1] in samples) == sorted(("hash", f) for f in samples)
