"""A profile's grid as jobs: cost estimates, a local runner and SLURM submission via submitit.

One job per training run: train it (resuming, skipping a finished run), collect statistics of
each measured checkpoint into ``out_dir/stats/<run>-ck<e>/stats.safetensors`` and measure them
into ``out_dir/metrics/<run>-ck<e>.json`` (finished files are skipped). The stages are also
separate functions (``train_all``, ``collect_all``, ``measure_all``), as the notebooks call them.

Locally::

    python -m lib grid --profile smoke              # everything, one job after another
    python -m lib grid --profile cpu --only-train   # training only
    python -m lib grid --profile paper --dry-run    # job list with estimated A100 GPU-hours

On a SLURM cluster (from a login node with this repository and its environment)::

    python -m lib grid --profile paper --slurm

submits one job preparing the corpus (skipped when ``out_dir/corpus`` is already prepared),
then a job array with one task per unfinished run, each depending on the preparation job
(``afterok``). Each task trains, collects and measures its run on one GPU. Resources come
from the profile's ``cluster`` section (partition, account, gpus_per_node, cpus_per_task,
mem_gb, timeout_min, array_parallelism); submitit's logs go to ``out_dir/slurm/``. A task
that reaches its time limit is requeued by submitit and resumes from the run's last epoch
checkpoint, so ``timeout_min`` need not cover a whole 10-epoch run. Re-running the command
submits only the runs whose metrics are still missing. From Python::

    from lib.dispatch import submit_slurm
    jobs = submit_slurm(load_profile("paper"))       # or executor=submitit.AutoExecutor(...)

Cost model (``plan_jobs``): training FLOPs = 6 N tokens + attention, with N the matmul
parameters L(12d^2 + 10d) + Vd (the tied LM head included), tokens = epochs x training tokens,
attention 6 d (global layers x T + local layers x min(window, T)) per token; each epoch's
validation and each collection pass (two over the training blocks, one over the validation
blocks, per measured checkpoint) cost the forward third of that. GPU-hours assume the profile's
``cluster.utilization`` (default 40%) of ``cluster.peak_tflops`` (default 312 TFLOP/s, A100
bf16 dense); token counts come from the prepared corpus or, before it exists, from
``cluster.train_tokens_estimate`` / ``cluster.val_tokens_estimate``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from submitit.helpers import Checkpointable
from tqdm.auto import tqdm

from lib.model import RunName, paper_param_count
from lib.paths import atomic_write_json, read_json
from lib.profiles import Profile, load_profile
from lib.train import (
    checkpoint_dir,
    is_trained,
    prepare_profile_corpus,
    resolve_device,
    train_profile_run,
)

STAGES = ("train", "collect", "measure")


# ---------------------------------------------------------------------------------------------
# Files of a measured checkpoint


def stats_path(out_dir: Path, ck: RunName) -> Path:
    return Path(out_dir) / "stats" / str(ck) / "stats.safetensors"


def metrics_path(out_dir: Path, ck: RunName) -> Path:
    return Path(out_dir) / "metrics" / f"{ck}.json"


# ---------------------------------------------------------------------------------------------
# Jobs and their cost


@dataclass(frozen=True)
class Job:
    """One training run, the checkpoints to collect and measure, and its estimated cost."""

    run: RunName
    checkpoints: tuple[RunName, ...]
    batch_size: int
    n_params: int  # the paper's closed-form parameter count
    train_tokens: int  # epochs x training tokens
    collect_tokens: int  # tokens through the model in all collection passes
    train_flops: float  # training + per-epoch validation
    collect_flops: float

    @property
    def flops(self) -> float:
        return self.train_flops + self.collect_flops

    def gpu_hours(self, peak_tflops: float, utilization: float) -> float:
        return self.flops / (peak_tflops * 1e12 * utilization) / 3600


def token_counts(profile: Profile) -> tuple[int, int]:
    """(training tokens, validation tokens) per epoch: the prepared corpus, else the estimates."""
    manifest = profile.out_path / "corpus" / "manifest.json"
    if manifest.is_file():
        m = read_json(manifest)
        return int(m["n_train_tokens"]), int(m["n_val_tokens"])
    c = profile.cluster
    if c.train_tokens_estimate is None or c.val_tokens_estimate is None:
        raise ValueError(
            f"profile {profile.name!r}: corpus not prepared at {manifest.parent} and no "
            "cluster.train_tokens_estimate / cluster.val_tokens_estimate; set them or prepare it"
        )
    return c.train_tokens_estimate, c.val_tokens_estimate


def forward_flops_per_token(profile: Profile, depth: int, width: int) -> float:
    """2 x matmul parameters + attention scores and mixing (module docstring)."""
    V, T, d = profile.tokenizer.expected_vocab_size(), profile.context_len, width
    n_matmul = depth * (12 * d * d + 10 * d) + V * d
    n_global, n_local = math.ceil(depth / 2), depth // 2
    attention = 2 * d * (n_global * T + n_local * min(profile.model.window_size, T))
    return 2 * n_matmul + attention


def _capped(tokens: int, max_blocks: int | None, context_len: int) -> int:
    return tokens if max_blocks is None else min(tokens, max_blocks * context_len)


def make_job(profile: Profile, run: RunName, train_tokens: int, val_tokens: int) -> Job:
    """The job of one run with its cost estimate."""
    cks = tuple(profile.checkpoints_of(run))
    T, col = profile.context_len, profile.collect
    fwd = forward_flops_per_token(profile, run.depth, run.width)
    per_ck = 2 * _capped(train_tokens, col.max_train_blocks, T) + _capped(
        val_tokens, col.max_val_blocks, T)
    return Job(
        run=run, checkpoints=cks, batch_size=profile.batch_size(run),
        n_params=paper_param_count(run.depth, run.width,
                                   profile.tokenizer.expected_vocab_size(), T),
        train_tokens=run.epochs * train_tokens, collect_tokens=len(cks) * per_ck,
        train_flops=run.epochs * (3 * fwd * train_tokens + fwd * val_tokens),
        collect_flops=len(cks) * per_ck * fwd,
    )


def plan_jobs(profile: Profile) -> list[Job]:
    """Every run of the profile as a job (grid then replicas)."""
    train_tokens, val_tokens = token_counts(profile)
    return [make_job(profile, run, train_tokens, val_tokens) for run in profile.runs()]


def dry_run(profile: Profile) -> pd.DataFrame:
    """One row per job (checkpoints, batch, size, tokens, PFLOP, GPU-hours) and a TOTAL row."""
    c = profile.cluster
    rows = [{"run": str(j.run), "checkpoints": " ".join(f"ck{ck.checkpoint}" for ck in j.checkpoints),
             "n_checkpoints": len(j.checkpoints), "batch_size": j.batch_size,
             "n_params": j.n_params, "train_tokens": j.train_tokens,
             "collect_tokens": j.collect_tokens, "train_pflop": j.train_flops / 1e15,
             "collect_pflop": j.collect_flops / 1e15,
             "gpu_hours": j.gpu_hours(c.peak_tflops, c.utilization)}
            for j in plan_jobs(profile)]
    table = pd.DataFrame(rows)
    total = {"run": "TOTAL", "checkpoints": "", **{
        k: table[k].sum() for k in ("n_checkpoints", "train_tokens", "collect_tokens",
                                    "train_pflop", "collect_pflop", "gpu_hours")}}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table.astype({"batch_size": "Int64", "n_params": "Int64"})


# ---------------------------------------------------------------------------------------------
# Stages


def _device(profile: Profile) -> str:
    return resolve_device(profile.device).type


def is_collected(profile: Profile, ck: RunName) -> bool:
    from lib.collect import is_finished

    path = stats_path(profile.out_path, ck)
    return path.is_file() and is_finished(path)


def is_measured(profile: Profile, ck: RunName) -> bool:
    return metrics_path(profile.out_path, ck).is_file()


def collect_checkpoint(profile: Profile, ck: RunName, corpus: Any, progress: bool = True) -> Path:
    """Statistics of one trained checkpoint (a finished stats file is left as is)."""
    from lib.collect import collect_model_stats

    model_dir = checkpoint_dir(profile.out_path, ck)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint {model_dir}; train {ck.run} first")
    col = profile.collect
    start = time.perf_counter()
    path = collect_model_stats(
        model_dir, corpus.train_blocks(), corpus.val_blocks(), stats_path(profile.out_path, ck),
        batch_size=col.batch_size, device=_device(profile), max_train_blocks=col.max_train_blocks,
        max_val_blocks=col.max_val_blocks, progress=progress,
    )
    _log_throughput(path, time.perf_counter() - start, _device(profile))
    return path


def throughput_path(stats_file: Path) -> Path:
    return stats_file.with_name("throughput.json")


def _log_throughput(stats_file: Path, seconds: float, device: str) -> None:
    """Collection tokens/s of the passes just run (all three passes' tokens over the wall time)."""
    from lib.collect import load_stats_metadata

    meta = load_stats_metadata(stats_file)
    tokens = sum(int(meta.get(f"pass{i}_tokens", 0)) for i in (1, 2, 3))
    atomic_write_json(throughput_path(stats_file), {
        "collect_seconds": seconds, "collect_tokens": tokens, "collect_device": str(device),
        "collect_tokens_per_s": tokens / max(seconds, 1e-9)})


def measure_checkpoint(profile: Profile, ck: RunName, progress: bool = False) -> Path:
    """The measures of one checkpoint's statistics, with its run spec, as metrics JSON."""
    from lib.measure import measure_stats_file

    stats_file = stats_path(profile.out_path, ck)
    measures = measure_stats_file(stats_file, device=_device(profile), progress=progress)
    throughput = read_json(throughput_path(stats_file)) if throughput_path(stats_file).is_file() else {}
    return atomic_write_json(metrics_path(profile.out_path, ck),
                             {**measures, **throughput, "run": str(ck), "spec": ck.as_dict()})


def run_job(profile: Profile, run: RunName, *, corpus: Any = None,
            stages: Sequence[str] = STAGES, progress: bool = True,
            bar: tqdm | None = None) -> None:
    """The stages of one run: train, then collect and measure each of its checkpoints."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGES)}")
    cks = profile.checkpoints_of(run)
    if "train" in stages:
        # Finished runs return at once, but only after their settings (corpus included) are
        # checked against the profile's: a run trained on other data is refused, not reused.
        corpus = _corpus(profile, corpus, progress)
        train_profile_run(profile, run, corpus=corpus, progress=progress)
        _tick(bar, f"trained {run}")
    for ck in cks if "collect" in stages else ():
        if not is_collected(profile, ck):
            corpus = _corpus(profile, corpus, progress)
            collect_checkpoint(profile, ck, corpus, progress)
        _tick(bar, f"collected {ck}")
    for ck in cks if "measure" in stages else ():
        if not is_measured(profile, ck):
            measure_checkpoint(profile, ck, progress)
        _tick(bar, f"measured {ck}")


def _corpus(profile: Profile, corpus: Any, progress: bool) -> Any:
    return corpus if corpus is not None else prepare_profile_corpus(profile, progress)


def _tick(bar: tqdm | None, text: str) -> None:
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
        bar.update(1)


def _n_steps(profile: Profile, stages: Sequence[str]) -> int:
    n_ck = len(profile.checkpoints())
    return (len(profile.runs()) * ("train" in stages)
            + n_ck * ("collect" in stages) + n_ck * ("measure" in stages))


def run_stages(profile: Profile, stages: Sequence[str] = STAGES, *, corpus: Any = None,
               progress: bool = True) -> None:
    """Every job one after another (finished work skipped), under one overall progress bar."""
    if {"train", "collect"} & set(stages):
        corpus = _corpus(profile, corpus, progress)
    with tqdm(total=_n_steps(profile, stages), desc=f"{profile.name}: {'+'.join(stages)}",
              disable=not progress, unit="step") as bar:
        for run in profile.runs():
            run_job(profile, run, corpus=corpus, stages=stages, progress=progress, bar=bar)


def run_local(profile: Profile, progress: bool = True, only_train: bool = False) -> None:
    """Prepare the corpus once, then train, collect and measure every job in turn."""
    run_stages(profile, ("train",) if only_train else STAGES, progress=progress)


def train_all(profile: Profile, *, corpus: Any = None, progress: bool = True) -> None:
    run_stages(profile, ("train",), corpus=corpus, progress=progress)


def collect_all(profile: Profile, *, corpus: Any = None, progress: bool = True) -> None:
    run_stages(profile, ("collect",), corpus=corpus, progress=progress)


def measure_all(profile: Profile, *, progress: bool = True) -> None:
    run_stages(profile, ("measure",), progress=progress)


# ---------------------------------------------------------------------------------------------
# SLURM via submitit


class RunJob(Checkpointable):
    """A picklable callable for submitit: one run's stages; requeued on timeout (resumes)."""

    def __init__(self, profile: Profile, run: RunName, stages: Sequence[str] = STAGES) -> None:
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
    executor = submitit.AutoExecutor(folder=profile.out_path / "slurm" / "%j")
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
    if (profile.out_path / "corpus" / "manifest.json").is_file():
        return
    prep = executor.submit(prepare_job, profile)
    if _is_slurm(executor):
        extra = {"account": profile.cluster.account} if profile.cluster.account else {}
        executor.update_parameters(
            slurm_additional_parameters={**extra, "dependency": f"afterok:{prep.job_id}"})
    else:
        prep.result()


def pending_runs(profile: Profile, stages: Sequence[str] = STAGES) -> list[RunName]:
    """Runs with work left in the given stages."""
    def done(run: RunName) -> bool:
        cks = profile.checkpoints_of(run)
        return (("train" not in stages or is_trained(profile.out_path, run))
                and ("collect" not in stages or all(is_collected(profile, c) for c in cks))
                and ("measure" not in stages or all(is_measured(profile, c) for c in cks)))

    return [run for run in profile.runs() if not done(run)]


def submit_slurm(profile: Profile, executor: Any = None, only_train: bool = False) -> list:
    """Submit one job per unfinished run (as an array); returns the submitit jobs."""
    stages = ("train",) if only_train else STAGES
    executor = executor if executor is not None else slurm_executor(profile)
    runs = pending_runs(profile, stages)
    if not runs:
        return []
    _after_preparation(profile, executor)
    with executor.batch():
        jobs = [executor.submit(RunJob(profile, run, stages)) for run in runs]
    return jobs


# ---------------------------------------------------------------------------------------------
# Shell


def _cli_grid(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    if args.dry_run:
        table = dry_run(profile)
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
        return 0
    if args.slurm:
        jobs = submit_slurm(profile, only_train=args.only_train)
        print(f"submitted {len(jobs)} jobs" + (f": {jobs[0].job_id} ..." if jobs else ""))
        return 0
    run_local(profile, progress=not args.no_progress, only_train=args.only_train)
    return 0


def register_cli(subparsers: Any) -> None:
    """``python -m lib grid --profile NAME [--dry-run] [--slurm] [--only-train]``."""
    p = subparsers.add_parser("grid", help="train, collect and measure a profile's whole grid")
    p.add_argument("--profile", required=True, help="profile name or YAML path")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and GPU-hours only")
    p.add_argument("--slurm", action="store_true", help="submit to SLURM with submitit")
    p.add_argument("--only-train", action="store_true", help="train only (no collect/measure)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cli_grid)
