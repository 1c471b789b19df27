"""Dispatch: the paper's job list and cost table, the local stages, submitit in-process."""

from __future__ import annotations

import copy
import math

import pytest
import submitit

from lib.dispatch import (
    collect_all,
    dry_run,
    measure_all,
    metrics_path,
    pending_runs,
    plan_jobs,
    run_job,
    run_local,
    stats_path,
    submit_slurm,
    train_all,
)
from lib.model import RunName
from lib.paths import read_json
from lib.profiles import Profile, load_profile
from lib.train import checkpoint_dir


def tiny_profile(out_dir, **grid) -> Profile:
    """The smoke profile trimmed to one tiny run on ~60 generated stories."""
    d = copy.deepcopy(load_profile("smoke").as_dict())
    d.update(out_dir=str(out_dir), context_len=32, device="cpu")
    d["corpus"].update(max_train_stories=60, max_val_stories=20)
    d["tokenizer"]["vocab_size"] = 300
    d["training"]["batch_size"] = 8
    d["grid"].update(widths=[16], depths=[1], variants=[{"epochs": 1, "weight_decay": 0.1}],
                     replicas=None, **grid)
    return Profile.from_dict(d)


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
    assert job.collect_flops == pytest.approx(fwd * (2 * tr + va))
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
def test_separate_stages_then_run_local_is_a_noop(tmp_path):
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
    meta_tokens = sum(metrics[f"pass{i}_tokens"] for i in (1, 2, 3))
    assert metrics["collect_tokens"] == meta_tokens and metrics["collect_tokens_per_s"] > 0
    stamp = metrics_path(p.out_path, ck).stat().st_mtime_ns
    run_local(p, progress=False)  # everything finished: nothing redone
    assert metrics_path(p.out_path, ck).stat().st_mtime_ns == stamp
    assert pending_runs(p) == []


def test_unknown_stage(tmp_path):
    p = tiny_profile(tmp_path)
    with pytest.raises(ValueError, match="unknown stage 'plot'"):
        run_job(p, p.runs()[0], stages=("plot",))


@pytest.mark.slow
def test_submitit_debug_executor_runs_one_job(tmp_path):
    p = tiny_profile(tmp_path / "out")
    executor = submitit.DebugExecutor(folder=tmp_path / "submitit")
    jobs = submit_slurm(p, executor=executor)
    assert len(jobs) == 1
    assert jobs[0].result() == str(RunName.parse("L1-d16-e1-wd0.1-s0"))
    (ck,) = p.checkpoints()
    assert metrics_path(p.out_path, ck).is_file()
    assert submit_slurm(p, executor=executor) == []  # nothing left to submit
