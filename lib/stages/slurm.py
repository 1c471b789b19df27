"""SLURM submission of a profile's grid via submitit: one job per unfinished run.

On a SLURM cluster (from a login node with this repository and its environment)::

    python -m lib grid --profile paper --slurm

submits one job preparing the corpus (skipped when ``out_dir/corpus`` is already prepared),
then a job array with one task per unfinished run, each depending on the preparation job
(``afterok``). Each task trains, collects and measures its run on one GPU. Resources come
from the profile's ``cluster`` section (partition, account, gpus_per_node, cpus_per_task,
mem_gb, timeout_min, array_parallelism); submitit's logs go to ``out_dir/slurm/``. A task
that reaches its time limit is requeued by submitit and resumes from the run's last epoch
checkpoint, so ``timeout_min`` need not cover a whole 10-epoch run. Re-running the command
submits only the runs with work left (missing or stale outputs). From Python::

    from lib.stages.slurm import submit_slurm
    jobs = submit_slurm(load_profile("paper"))       # or executor=submitit.AutoExecutor(...)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from submitit.helpers import Checkpointable

from lib.core.paths import Layout
from lib.lm.model import RunName
from lib.lm.profiles import Profile
from lib.stages.pipeline import JOB_STAGES, pending_runs, prepare_profile_corpus, run_job


class RunJob(Checkpointable):
    """A picklable callable for submitit: one run's stages; requeued on timeout (resumes)."""

    def __init__(self, profile: Profile, run: RunName, stages: Sequence[str] = JOB_STAGES) -> None:
        self.profile, self.run, self.stages = profile, run, tuple(stages)

    def __call__(self) -> str:
        run_job(self.profile, self.run, stages=self.stages, progress=False)
        return str(self.run)


def prepare_job(profile: Profile) -> str:
    """Job body preparing the corpus once before the array of runs."""
    return str(prepare_profile_corpus(profile, progress=False).cache_dir)


def slurm_executor(profile: Profile) -> Any:
    """A submitit AutoExecutor configured from the profile's cluster section."""
    import submitit

    c = profile.cluster
    executor = submitit.AutoExecutor(folder=Layout(profile.out_path).slurm / "%j")
    extra = {"account": c.account} if c.account else {}
    executor.update_parameters(
        name=f"lc-{profile.name}", timeout_min=c.timeout_min, gpus_per_node=c.gpus_per_node,
        cpus_per_task=c.cpus_per_task, mem_gb=c.mem_gb, slurm_partition=c.partition,
        slurm_array_parallelism=c.array_parallelism, slurm_additional_parameters=extra,
    )
    return executor


def _is_slurm(executor: Any) -> bool:
    return getattr(executor, "cluster", None) == "slurm" or type(executor).__name__ == "SlurmExecutor"


def _after_preparation(profile: Profile, executor: Any) -> None:
    """Submit the corpus preparation; make later jobs wait for it (SLURM) or wait here."""
    if Layout(profile.out_path).manifest.is_file():
        return
    prep = executor.submit(prepare_job, profile)
    if _is_slurm(executor):
        extra = {"account": profile.cluster.account} if profile.cluster.account else {}
        executor.update_parameters(
            slurm_additional_parameters={**extra, "dependency": f"afterok:{prep.job_id}"})
    else:
        prep.result()


def submit_slurm(profile: Profile, executor: Any = None, only_train: bool = False) -> list:
    """Submit one job per unfinished run (as an array); returns the submitit jobs."""
    stages = ("train",) if only_train else JOB_STAGES
    executor = executor if executor is not None else slurm_executor(profile)
    runs = pending_runs(profile, stages)
    if not runs:
        return []
    _after_preparation(profile, executor)
    with executor.batch():
        jobs = [executor.submit(RunJob(profile, run, stages)) for run in runs]
    return jobs
