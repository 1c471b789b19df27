"""SLURM submission of a profile's grid via submitit: one array task per unfinished run.

On a SLURM cluster (from a login node with this repository and its environment)::

    python -m linguistic_collapse grid --profile paper --slurm [--retrain] [--only-train]

checks the corpus first: one not yet prepared gets a preparation job, and the array of runs
depends on it (``afterok``, with ``kill-on-invalid-dep``: a failed preparation cancels the
array instead of leaving it pending forever); one whose text or settings changed is prepared
here, before anything is submitted, so the runs are checked against the corpus they will use
(runs trained on the old one are refused unless ``--retrain``). Then one array task per run with
work left; each trains, collects and measures its run and logs the run's name and each finished
step to ``out_dir/slurm/<array>_<task>_0_log.out``. Resources come from the profile's ``cluster``
section (partition, account, gpus_per_node (0: no GPU), cpus_per_task, mem_gb, timeout_min,
timeout_requeues, array_parallelism). A task reaching its time limit is requeued by submitit and
resumes from its run's last epoch checkpoint, at most ``timeout_requeues`` times, so a run gets
at most ``timeout_requeues + 1`` allocations of ``timeout_min`` each; ``timeout_min`` must be at
least 5, as the requeue signal comes 90 s before the limit.

Submitted jobs are recorded in ``out_dir/slurm/jobs.json``; re-submitting skips runs whose job
is still queued, running or requeued (``squeue``) and submits only runs with work left. Without
``sbatch`` on PATH nothing runs locally: ``--slurm`` is refused. From Python::

    from linguistic_collapse.pipeline.slurm import submit_slurm
    submission = submit_slurm(load_profile("paper"))
"""

from __future__ import annotations

import contextlib
import getpass
import io
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import (
    ROOT_ENV,
    Layout,
    atomic_write_json,
    lock_for,
    read_json,
    repo_root,
)
from linguistic_collapse.core.profiles import Profile
from linguistic_collapse.lm.data import PreparedCorpus, corpus_staleness
from linguistic_collapse.pipeline.checkpoints import last_checkpoint
from linguistic_collapse.pipeline.costs import GIB, check_memory
from linguistic_collapse.pipeline.jobs import (
    JOB_STEPS,
    pending_runs,
    prepare_profile_corpus,
    run_job,
)
from linguistic_collapse.pipeline.train import changed_inputs, is_trained

JOBS_FILE = "jobs.json"  # in out_dir/slurm: {"preparation": id, "runs": {run: job id}}
# squeue states of a job that will still run (or is running)
ACTIVE_STATES = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                           "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING",
                           "STAGE_OUT"})
# sbatch error text -> the profile key to change
SBATCH_KEYS = (("partition", "cluster.partition"), ("account", "cluster.account"),
               ("generic resource", "cluster.gpus_per_node"), ("gres", "cluster.gpus_per_node"),
               ("memory", "cluster.mem_gb"), ("time limit", "cluster.timeout_min"),
               ("cpu", "cluster.cpus_per_task"))


def _say(text: str) -> None:
    print(text, flush=True)


class RunJob(Checkpointable):
    """A picklable callable for submitit: one run's steps; requeued on timeout (resumes)."""

    def __init__(self, profile: Profile, run: ModelName, steps: Sequence[str] = JOB_STEPS,
                 retrain: bool = False) -> None:
        self.profile, self.run, self.steps, self.retrain = profile, run, tuple(steps), retrain

    def __call__(self) -> str:

        _say(f"run {self.run} of profile {self.profile.name}: {', '.join(self.steps)}"
             + (" (--retrain)" if self.retrain else ""))
        run_dir = Layout(self.profile.out_path).run_dir(self.run)
        if run_dir.is_dir() and not is_trained(self.profile.out_path, self.run):
            with lock_for(run_dir):
                start = last_checkpoint(run_dir)
            if start:  # a requeued task (or an interrupted run) goes on from there
                _say(f"run {self.run}: resuming from checkpoint-{start}")
        run_job(self.profile, self.run, steps=self.steps, progress=False,
                retrain=self.retrain, say=_say)
        _say(f"run {self.run}: done")
        return str(self.run)


def prepare_job(profile: Profile) -> str:
    """Job body preparing the corpus once before the array of runs."""
    _say(f"preparing the corpus of profile {profile.name} in {Layout(profile.out_path).corpus}")
    path = str(prepare_profile_corpus(profile, progress=False).cache_dir)
    _say(f"corpus prepared: {path}")
    return path


@dataclass
class Submission:
    """What one ``submit_slurm`` call did."""

    preparation: str | None = None  # job id of the preparation job (None: none needed)
    array: str | None = None  # the array's job id (tasks <array>_0 ...)
    runs: list[ModelName] = field(default_factory=list)  # submitted, in array order
    skipped: dict[str, str] = field(default_factory=dict)  # run -> "job id STATE" still active
    prepared_here: str | None = None  # why the corpus was prepared before submitting
    jobs: list = field(default_factory=list)  # the submitit jobs

    def summary(self, profile: Profile) -> str:
        """The lines the CLI prints."""
        slurm = Layout(profile.out_path).slurm
        lines = []
        if self.prepared_here:
            lines.append(f"corpus {self.prepared_here}: prepared it here before submitting")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} runs whose jobs are still queued, running "
                         "or requeued: " + ", ".join(f"{r} ({j})" for r, j in self.skipped.items()))
        if not self.runs:
            lines.append("submitted 0 jobs: no run has work left" if not self.skipped else
                         "submitted 0 jobs")
            return "\n".join(lines)
        if self.preparation:
            lines.append(f"preparation job {self.preparation}; log: "
                         f"{slurm}/{self.preparation}/{self.preparation}_0_log.out")
        if len(self.runs) == 1:  # submitit submits a single job, not an array of one
            lines.append(f"submitted job {self.array} for 1 run; log: {slurm}/{self.array}/"
                         f"{self.array}_0_log.out; jobs recorded in {slurm / JOBS_FILE}")
        else:
            task = f"{self.array}_<task>"
            lines.append(f"submitted array {self.array} of {len(self.runs)} runs (tasks "
                         f"{self.array}_0..{self.array}_{len(self.runs) - 1}); logs: "
                         f"{slurm}/{task}/{task}_0_log.out; jobs recorded in {slurm / JOBS_FILE}")
        if self.preparation:
            lines.append(f"if the preparation fails, the runs' jobs are cancelled; see why in "
                         f"{slurm}/{self.preparation}/{self.preparation}_0_log.err")
        return "\n".join(lines)


def require_sbatch() -> None:
    """UserError unless ``sbatch`` and ``srun`` (which submitit's jobs run under) are on PATH
    (never fall back to running locally)."""
    for tool in ("sbatch", "srun"):
        if shutil.which(tool) is None:
            raise UserError(f"--slurm needs SLURM's {tool} on PATH, and there is none here; "
                            "submit from the cluster's login node (or load its slurm module), "
                            "or drop --slurm to run the grid locally")


def slurm_executor(profile: Profile) -> Any:
    """A submitit SlurmExecutor configured from the profile's cluster section (no fallback)."""
    # optional extra [slurm]: loaded only when submitting
    import submitit

    require_sbatch()
    c = profile.cluster
    executor = submitit.SlurmExecutor(folder=Layout(profile.out_path).slurm / "%j",
                                      max_num_timeout=c.timeout_requeues)
    executor.update_parameters(**_parameters(profile))
    # the jobs work in the checkout this submission runs in, whatever their working directory
    executor.update_parameters(setup=[f"export {ROOT_ENV}={shlex.quote(str(repo_root()))}"])
    return executor


def _parameters(profile: Profile, dependency: str | None = None) -> dict:
    c = profile.cluster
    extra = {"account": c.account} if c.account else {}
    if dependency:
        extra.update({"dependency": f"afterok:{dependency}", "kill-on-invalid-dep": "yes"})
    params = {"job_name": f"lc-{profile.name}", "time": c.timeout_min,
              "cpus_per_task": c.cpus_per_task, "mem": f"{c.mem_gb}GB",
              "array_parallelism": c.array_parallelism, "additional_parameters": extra}
    if c.partition:
        params["partition"] = c.partition
    if c.gpus_per_node:
        params["gpus_per_node"] = c.gpus_per_node
    return params


def _is_slurm(executor: Any) -> bool:
    return type(executor).__name__ == "SlurmExecutor"


def _sbatch_error(message: str, profile: Profile) -> UserError:
    """One line from sbatch's error: its last line and the profile key to change."""
    lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
    text = (lines[-1] if lines else "sbatch failed").removeprefix("sbatch: error: ")
    low = " ".join(lines).lower()
    key = next((k for word, k in SBATCH_KEYS if word in low), None)
    fix = (f"change {key} in the profile" if key else
           "check the profile's cluster section and that sbatch works here (sinfo)")
    return UserError(f"sbatch refused the job of profile {profile.name!r}: {text}; {fix}")


@contextlib.contextmanager
def _clean_on_failure(folder: Path, profile: Profile):
    """Turn an sbatch failure into one line, removing the files submitit left for it."""
    before = set(folder.rglob("*")) if folder.exists() else set()
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):  # submitit prints sbatch's stderr too
            yield
    except Exception as err:
        # optional extra [slurm]: loaded only when submitting
        from submitit.core.utils import FailedJobError

        if not isinstance(err, FailedJobError | subprocess.CalledProcessError):
            raise
        for path in sorted(set(folder.rglob("*")) - before, reverse=True):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise _sbatch_error(str(err) or captured.getvalue(), profile) from None
    finally:
        sys.stderr.write("".join(ln for ln in captured.getvalue().splitlines(True)
                                 if "sbatch: error" not in ln))


def active_jobs(job_ids: Sequence[str]) -> dict[str, str]:
    """{job id: state} of the given ids (``123`` or ``123_4``) that squeue lists as active."""
    if not job_ids or shutil.which("squeue") is None:
        return {}
    out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%A|%T"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise UserError(f"squeue failed ({out.stderr.strip() or out.returncode}); cannot tell "
                        "which submitted runs are still queued; retry when squeue answers")
    wanted, states = set(job_ids), {}
    for line in out.stdout.splitlines():
        shown, raw, state = (line.split("|") + ["", ""])[:3]
        for jid in (shown, raw):
            if jid in wanted and state in ACTIVE_STATES:
                states[jid] = state
    return states


def _records(profile: Profile) -> dict:
    path = Layout(profile.out_path).slurm / JOBS_FILE
    return read_json(path) if path.is_file() else {"preparation": None, "runs": {}}


def _stale_trained(profile: Profile, runs: Sequence[ModelName]) -> list[str]:
    """Runs whose folders were trained from inputs other than the prepared corpus's."""

    corpus = PreparedCorpus.from_manifest(Layout(profile.out_path).corpus)
    out = []
    for run in runs:
        changed = changed_inputs(run, corpus=corpus, training=profile.training,
                                 model_cfg=profile.model, out_dir=profile.out_path)
        if changed:
            out.append(f"{run} ({', '.join(changed[:3])} changed)")
    return out


def submit_slurm(profile: Profile, executor: Any = None, only_train: bool = False,
                 retrain: bool = False) -> Submission:
    """Check that a CPU profile's jobs fit in ``cluster.mem_gb``, prepare or check the corpus,
    then submit one array task per run with work left (runs whose recorded job is still active
    are skipped); records the jobs in out_dir/slurm/."""
    if profile.device == "cpu":  # a CPU job's memory is the profile's cluster.mem_gb
        check_memory(profile, profile.cluster.mem_gb * GIB, "a SLURM job (cluster.mem_gb)")
    steps = ("train",) if only_train else JOB_STEPS
    executor = executor if executor is not None else slurm_executor(profile)
    layout, sub = Layout(profile.out_path), Submission()
    with lock_for(layout.slurm / JOBS_FILE):
        reason = corpus_staleness(corpus=profile.corpus, tokenizer=profile.tokenizer,
                                  context_len=profile.context_len, cache_dir=layout.corpus)
        if reason not in (None, "not prepared"):  # changed: prepare before anything is submitted
            sub.prepared_here = f"{layout.corpus}: {reason}"
            _say(f"corpus {sub.prepared_here}: preparing it here before submitting")
            prepare_profile_corpus(profile, progress=False, check_fits=False)
        records = _records(profile)
        runs = pending_runs(profile, steps)
        recorded = {str(r): records["runs"].get(str(r)) for r in runs}
        prep_id = records.get("preparation") if reason == "not prepared" else None
        active = (active_jobs([j for j in [*recorded.values(), prep_id] if j])
                  if _is_slurm(executor) else {})
        sub.skipped = {r: f"{j} {active[j]}" for r, j in recorded.items() if j in active}
        runs = [r for r in runs if str(r) not in sub.skipped]
        if reason != "not prepared" and runs and not retrain and "train" in steps:
            stale = _stale_trained(profile, runs)
            if stale:
                raise UserError(
                    f"{len(stale)} runs of profile {profile.name!r} were trained from other "
                    f"inputs than {layout.corpus}: {'; '.join(stale[:3])}"
                    f"{' ...' if len(stale) > 3 else ''}; re-submit with --retrain to train "
                    "them again (their old outputs are discarded)")
        if not runs:
            return sub
        folder = layout.slurm
        if reason == "not prepared" and not _is_slurm(executor):  # debug executor: wait here
            executor.submit(prepare_job, profile).result()
        elif reason == "not prepared":
            if prep_id in active:  # a preparation still queued or running: wait for that one
                sub.preparation = prep_id
            else:
                with _clean_on_failure(folder, profile):
                    sub.preparation = str(executor.submit(prepare_job, profile).job_id)
            executor.update_parameters(**_parameters(profile, dependency=sub.preparation))
        with _clean_on_failure(folder, profile), executor.batch():
            jobs = [executor.submit(RunJob(profile, run, steps, retrain)) for run in runs]
        sub.runs, sub.jobs = list(runs), jobs
        sub.array = str(jobs[0].job_id).split("_")[0]
        records["runs"].update({str(r): str(j.job_id) for r, j in zip(runs, jobs, strict=True)})
        if sub.preparation:
            records["preparation"] = sub.preparation
        atomic_write_json(layout.slurm / JOBS_FILE, records)
    return sub
