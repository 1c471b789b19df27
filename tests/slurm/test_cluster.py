"""``grid --slurm`` against a real SLURM cluster (make test-slurm): the smoke grid to completion
and bit-identical to a local grid, re-submits that submit nothing (finished or still queued), a
task requeued at its time limit that resumes bit-identical, a failed preparation that cancels
its array, sbatch refusals, a changed corpus, and no sbatch at all."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from linguistic_collapse.core.profiles import load_profile
from slurm_helpers import (
    cli,
    job_field,
    job_ids,
    log_of,
    one_run,
    outputs,
    queued,
    wait_gone,
    write_profile,
)

pytestmark = pytest.mark.slurm


def _local_twin(tmp: Path, profile: Path, name: str) -> Path:
    """The same profile with another name and out_dir, run locally: the reference outputs."""
    data = yaml.safe_load(profile.read_text())
    data.update(name=name, out_dir=str(tmp / name))
    twin = tmp / f"{name}.yaml"
    twin.write_text(yaml.safe_dump(data))
    done = cli("grid", "--profile", str(twin), "--no-progress")
    assert done.returncode == 0, done.stderr
    return tmp / name


def test_smoke_grid_completes_bit_identical_and_resubmits_nothing(tmp_path):
    profile = write_profile(tmp_path, "smoke-slurm")
    sub = cli("grid", "--profile", str(profile), "--slurm")
    assert sub.returncode == 0, sub.stderr
    prep, array = job_ids(sub.stdout)
    n_runs = len(load_profile(profile).runs())
    assert prep and array and f"array {array} of {n_runs} runs" in sub.stdout, sub.stdout
    # at once, while it is queued or running: no duplicate
    again = cli("grid", "--profile", str(profile), "--slurm")
    assert again.returncode == 0, again.stderr
    assert f"skipped {n_runs} runs" in again.stdout and "submitted 0 jobs" in again.stdout
    assert len({j for j, _ in queued(array)}) == n_runs  # one task per run, none added
    wait_gone(prep, 300)
    wait_gone(array, 600)
    out = tmp_path / "smoke-slurm"
    log = log_of(out, f"{array}_0")
    first = load_profile(profile).runs()[0]
    assert f"run {first} of profile smoke-slurm" in log and f"measured {first}" in log, log
    # finished: nothing to submit
    after = cli("grid", "--profile", str(profile), "--slurm")
    assert after.returncode == 0 and "submitted 0 jobs: no run has work left" in after.stdout
    local = _local_twin(tmp_path, profile, "smoke-local")
    got, want = outputs(out), outputs(local)
    assert len(got) >= 3 * n_runs and got.keys() == want.keys()
    assert [k for k in got if got[k] != want[k]] == []


def _elapsed_s(job: str) -> float:
    text = job_field(job, "RunTime")  # [D-]HH:MM:SS
    days, _, hms = text.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def test_task_requeued_at_its_time_limit_resumes_bit_identical(tmp_path):
    """After its first epoch the task gets the time-limit signal (USR2, which SLURM sends 90 s
    before the limit: ``--signal=USR2@90``); submitit requeues it through the scheduler and it
    resumes from its last epoch checkpoint. The signal is sent with ``scancel`` rather than by
    cutting the limit: a tiny run on a quiet machine (~2 s an epoch) finished before a cut
    limit's signal came, so that form passed or failed by machine speed."""
    profile = write_profile(tmp_path, "requeue", **one_run(epochs=12, width=32, depth=2),
                            corpus={"max_train_stories": 1200})
    sub = cli("grid", "--profile", str(profile), "--slurm")
    assert sub.returncode == 0, sub.stderr
    _, task = job_ids(sub.stdout)  # one run: a single job
    assert "submitted job" in sub.stdout, sub.stdout
    run = load_profile(profile).runs()[0]
    ck1 = tmp_path / "requeue" / "models" / str(run) / "checkpoint-1"
    end = time.monotonic() + 300
    while not (ck1 / "model.safetensors").is_file():
        assert time.monotonic() < end and queued(task), "no first epoch checkpoint"
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR2", task], check=True)  # as at the time limit
    end = time.monotonic() + 180
    while job_field(task, "Restarts") in ("", "0"):
        assert time.monotonic() < end, f"not requeued: {job_field(task, 'JobState')}"
        assert queued(task), "the run finished before its time limit; make it longer"
        time.sleep(1)
    # no requeue delay (SLURM holds a requeued job ~2 min)
    subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"],
                   check=True)
    wait_gone(task, 400)
    log = log_of(tmp_path / "requeue", task) + log_of(tmp_path / "requeue", task, "err")
    assert "this job is timed-out" in log and "Requeued job" in log, log[-2000:]
    assert re.search(r"resuming from checkpoint-([1-9]|1[01])\b", log), log[-2000:]
    assert job_field(task, "JobState") in ("COMPLETED", ""), job_field(task, "JobState")
    local = _local_twin(tmp_path, profile, "requeue-local")
    got, want = outputs(tmp_path / "requeue"), outputs(local)
    assert got.keys() == want.keys() and [k for k in got if got[k] != want[k]] == []


def test_failed_preparation_cancels_the_array(tmp_path):
    profile = write_profile(tmp_path, "noprep", **one_run(),
                            corpus={"source": "path", "path": str(tmp_path / "missing-text")})
    sub = cli("grid", "--profile", str(profile), "--slurm")
    assert sub.returncode == 0, sub.stderr
    prep, array = job_ids(sub.stdout)
    assert "the runs' jobs are cancelled; see why in" in sub.stdout
    wait_gone(prep, 120)
    wait_gone(array, 120)  # cancelled, not left pending forever
    assert job_field(array, "JobState") in ("CANCELLED", ""), job_field(array, "JobState")
    why = re.search(r"see why in (\S+)", sub.stdout).group(1)
    assert "missing-text" in Path(why).read_text()


def test_sbatch_refusal_is_one_line_naming_the_key(tmp_path):
    profile = write_profile(tmp_path, "badpart", **one_run(),
                            cluster={"partition": "no-such-partition"})
    sub = cli("grid", "--profile", str(profile), "--slurm")
    assert sub.returncode == 2 and "cluster.partition" in sub.stderr, sub.stderr
    assert len(sub.stderr.strip().splitlines()) == 1, sub.stderr
    assert not list((tmp_path / "badpart" / "slurm").rglob("*.pkl"))
    assert not list((tmp_path / "badpart").glob("models/*"))  # nothing ran locally


def test_changed_corpus_is_prepared_first_and_retrain_honoured(tmp_path):
    text = tmp_path / "text"
    text.mkdir()
    from linguistic_collapse.lm.synthetic import generate_corpus

    stories = generate_corpus(300, seed=5)
    (text / "train.txt").write_text("\n".join(stories[:250]) + "\n")
    (text / "validation.txt").write_text("\n".join(stories[250:]) + "\n")
    profile = write_profile(tmp_path, "changed", **one_run(),
                            corpus={"source": "path", "path": str(text)})
    first = cli("grid", "--profile", str(profile), "--slurm")
    assert first.returncode == 0, first.stderr
    wait_gone(job_ids(first.stdout)[1], 300)
    (text / "train.txt").write_text("\n".join(stories[:200]) + "\n")  # the corpus changes
    refused = cli("grid", "--profile", str(profile), "--slurm")
    assert "preparing it here before submitting" in refused.stdout, refused.stdout
    assert refused.returncode == 2 and "--retrain" in refused.stderr, refused.stderr
    retrain = cli("grid", "--profile", str(profile), "--slurm", "--retrain")
    assert retrain.returncode == 0 and "submitted job" in retrain.stdout, retrain.stderr
    _, job = job_ids(retrain.stdout)
    wait_gone(job, 300)
    log = log_of(tmp_path / "changed", job)
    assert "(--retrain)" in log and "measured" in log, log
    done = cli("grid", "--profile", str(profile), "--slurm")
    assert "submitted 0 jobs: no run has work left" in done.stdout, done.stdout + done.stderr


def test_without_sbatch_refused_and_nothing_runs(tmp_path):
    profile = write_profile(tmp_path, "nosbatch", **one_run())
    bare = tmp_path / "bin"  # a PATH without sbatch (the CLI runs the venv's python by path)
    bare.mkdir()
    proc = cli("grid", "--profile", str(profile), "--slurm", env={"PATH": str(bare)})
    assert proc.returncode == 2 and "sbatch" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nosbatch").exists()
