"""A profile's jobs and their cost: tokens per run, FLOPs (6·N·tokens plus attention) and GPU-hours at
the profile's assumed utilisation, the wall time of each step on 2 CPU cores from measured
throughputs, and each job's estimated peak memory, checked against the memory available before
any work (``python -m linguistic_collapse grid --dry-run`` prints them).

Cost model (``plan_jobs``): training FLOPs = 6 N tokens + attention, with N the matmul
parameters L(12d^2 + 10d) + Vd (the tied LM head included), tokens = epochs x training tokens,
attention 6 d (global layers x T + local layers x min(window, T)) per token; each epoch's
validation and each collection pass (one over the training blocks, one over the validation
blocks, per measured checkpoint) cost the forward third of that. GPU-hours assume the profile's
``cluster.utilization`` (default 40%) of ``cluster.peak_tflops`` (default 312 TFLOP/s, A100
bf16 dense); token counts come from the prepared corpus or, before it exists, from
``cluster.train_tokens_estimate`` / ``cluster.val_tokens_estimate``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import Layout, read_json
from linguistic_collapse.core.profiles import Profile
from linguistic_collapse.lm.gpt_neo import paper_param_count

# ---------------------------------------------------------------------------------------------
# Jobs and their cost


@dataclass(frozen=True)
class Job:
    """One training run, the checkpoints to collect and measure, and its estimated cost."""

    run: ModelName
    checkpoints: tuple[ModelName, ...]
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
    manifest = Layout(profile.out_path).manifest
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


def make_job(profile: Profile, run: ModelName, train_tokens: int, val_tokens: int) -> Job:
    """The job of one run with its cost estimate."""
    cks = tuple(profile.checkpoints_of(run))
    T, col = profile.context_len, profile.collect
    fwd = forward_flops_per_token(profile, run.depth, run.width)
    per_ck = _capped(train_tokens, col.max_train_blocks, T) + _capped(
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
    table["peak_gib"] = memory_column(profile)
    total = {"run": "TOTAL", "checkpoints": "", **{
        k: table[k].sum() for k in ("n_checkpoints", "train_tokens", "collect_tokens",
                                    "train_pflop", "collect_pflop", "gpu_hours")},
             "peak_gib": table["peak_gib"].max()}  # jobs run one at a time: the largest
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    return table.astype({"batch_size": "Int64", "n_params": "Int64"})


# ---------------------------------------------------------------------------------------------
# CPU wall time: a laptop's estimate from measured throughputs

# Tokens/s measured on 2 quiet CPU cores, torch fp32, OMP_WAIT_POLICY=PASSIVE (the default,
# core.openmp), the cpu profile's vocabulary (2048) and context (128), keyed by (depth, width):
# training (batch 16: each run's recorded ``train_tokens_per_s``, median over its runs) and
# collection (the statistics passes with every layer's residual stream: stats/*/throughput.json),
# from a fresh-clone `make paper` of the cpu grid on 2026-12-07, whose 62 runs trained in 29.6 min
# (wall time, evaluations and saves included) and whose 62 checkpoints collected in 5.2 min.
CPU_TRAIN_TOKENS_PER_S: dict[tuple[int, int], float] = {
    (1, 32): 56.8e3, (1, 48): 48.6e3, (1, 64): 43.2e3, (1, 80): 38.7e3, (1, 96): 36.6e3, (1, 112): 33.4e3, (1, 128): 29.2e3,
    (2, 32): 45.3e3, (2, 48): 37.5e3, (2, 64): 30.4e3, (2, 80): 26.4e3, (2, 96): 23e3, (2, 112): 20.9e3, (2, 128): 19e3,
    (3, 32): 33.6e3, (3, 48): 26.6e3, (3, 64): 23e3, (3, 80): 19.9e3, (3, 96): 16.6e3, (3, 112): 14.7e3, (3, 128): 13.1e3,
}
CPU_COLLECT_TOKENS_PER_S: dict[tuple[int, int], float] = {
    (1, 32): 242.6e3, (1, 48): 180.6e3, (1, 64): 150.2e3, (1, 80): 126.7e3, (1, 96): 112.4e3, (1, 112): 99.7e3, (1, 128): 88.7e3,
    (2, 32): 163e3, (2, 48): 123.4e3, (2, 64): 97.5e3, (2, 80): 83.6e3, (2, 96): 71.3e3, (2, 112): 63.4e3, (2, 128): 54.9e3,
    (3, 32): 125e3, (3, 48): 93.2e3, (3, 64): 76.5e3, (3, 80): 64.6e3, (3, 96): 53.2e3, (3, 112): 44.2e3, (3, 128): 35.5e3,
}


def _seconds_per_token(measured: dict[tuple[int, int], float]) -> Callable[[int, int], float]:
    """Seconds per token of (depth, width), least squares on the measurements: a + b·width +
    c·depth·width. On these small models per-operation overhead, not FLOPs, sets the cost, so a
    FLOPs term fits worse (collection off by up to 19 % instead of 8 %); fitted on the 21 cpu
    architectures it is within 6 % (training) and 9 % (collection) of each."""
    arch = list(measured)
    feats = lambda L, d: [1.0, float(d), float(L * d)]  # noqa: E731
    coef = np.linalg.lstsq(np.array([feats(L, d) for L, d in arch]),
                           np.array([1 / measured[a] for a in arch]), rcond=None)[0]
    return lambda L, d: float(np.dot(feats(L, d), coef))


def cpu_seconds(profile: Profile) -> dict[str, float]:
    """Estimated seconds on 2 quiet CPU cores of each step: ``training`` (every run, with its
    per-epoch validation pass at a third of a training token's cost), ``collection`` (every
    measured checkpoint: training and validation blocks), ``sensitivity`` (the subsample passes
    below fraction 1) and ``dynamics`` (every snapshot's collection: a fresh run takes the
    snapshots while the grid trains the run, with one validation pass per snapshot, counted in
    ``training``), from ``CPU_TRAIN_TOKENS_PER_S`` and
    ``CPU_COLLECT_TOKENS_PER_S``. Measures and figures (seconds) are not counted. Expect 2-3x
    more when other processes compete for the cores."""
    train_tokens, val_tokens = token_counts(profile)
    t_train = _seconds_per_token(CPU_TRAIN_TOKENS_PER_S)
    t_collect = _seconds_per_token(CPU_COLLECT_TOKENS_PER_S)
    T, col = profile.context_len, profile.collect
    per_epoch = train_tokens + val_tokens / 3

    def collect_s(run: ModelName, max_train: int | None, max_val: int | None) -> float:
        return (_capped(train_tokens, max_train, T) + _capped(val_tokens, max_val, T)) * t_collect(run.depth, run.width)

    d = profile.dynamics
    snapshots = {r: d.points_per_epoch * r.epochs + 1 for r in d.run_names()}  # step 0 included
    snapshot_evals = sum(n * val_tokens / 3 * t_train(r.depth, r.width) for r, n in snapshots.items())
    training = snapshot_evals + sum(r.epochs * per_epoch * t_train(r.depth, r.width)
                                    for r in profile.runs())
    collection = sum(collect_s(ck, col.max_train_blocks, col.max_val_blocks) for ck in profile.checkpoints())
    s = profile.sensitivity
    passes = s.draws * sum(f for f in s.fractions if f < 1)
    sensitivity = sum(passes * _capped(train_tokens, col.max_train_blocks, T) * t_collect(ck.depth, ck.width)
                      for ck in s.checkpoints())
    max_train = d.max_train_blocks if d.max_train_blocks is not None else col.max_train_blocks
    max_val = d.max_val_blocks if d.max_val_blocks is not None else col.max_val_blocks
    dynamics = sum(n * collect_s(r, max_train, max_val) for r, n in snapshots.items())
    return {"training": training, "collection": collection, "sensitivity": sensitivity,
            "dynamics": dynamics}


def cpu_summary(profile: Profile) -> str:
    """``cpu_seconds`` as one line of minutes, e.g. "2 quiet CPU cores (estimate from measured throughputs): training 28.5 min, ..."."""
    parts = [f"{k} {v / 60:.1f} min" for k, v in cpu_seconds(profile).items()]
    return "2 quiet CPU cores (estimate from measured throughputs): " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Peak memory of a job, against the memory this machine (or its GPU) has free


GIB = 2**30


def on_cuda(profile: Profile) -> bool:
    """Whether the profile's jobs run on CUDA here (``device`` cuda, or auto with a GPU)."""
    return profile.device == "cuda" or (profile.device == "auto" and torch.cuda.is_available())


def peak_memory(profile: Profile, run: ModelName, cuda: bool | None = None) -> dict[str, int]:
    """Estimated peak bytes of one run's job: {"train", "collect", "peak"}; ``cuda`` (default
    ``on_cuda``): the job runs on CUDA, where ``training.precision`` auto means bf16.

    Training: float32 weights, gradients and AdamW's two moments (16 bytes per parameter) plus
    the activations kept for the backward pass at the training batch size (Korthikanti et al.
    2022: per layer and token 17·d + 2.5·heads·T elements, without the attention matrices under
    flash attention; 2 bytes each in bf16, 4 in fp32) and the logits with their softmax and
    gradient in float32 (12·V bytes per token). Collection: the float32 model, the statistics
    accumulators (V×D float64 sums, the D×D float64 scatter, V-long sq_dev and counts; the same
    sums per collected layer) and three more V×D float64 copies the measures make (means,
    centred means, W). An estimate: it refuses only what cannot fit."""
    cuda = on_cuda(profile) if cuda is None else cuda
    V, T, d, L = profile.tokenizer.expected_vocab_size(), profile.context_len, run.width, run.depth
    n = paper_param_count(L, d, V, T)
    heads, B = profile.model.heads(d), profile.batch_size(run)
    precision = profile.training.precision
    elem = 2 if (precision == "bf16" or (precision == "auto" and cuda)) else 4
    flash = cuda and profile.model.attn_implementation == "flash_attention_2"
    per_layer = elem * (17 * d + (0 if flash else 2.5 * heads * T))
    train = int(16 * n + B * T * (L * per_layer + 12 * V))
    layers = profile.collect.layers
    n_layers = (L + 1 if layers == "all" else len(layers or ()))
    accumulators = (1 + n_layers) * (8 * V * d + 16 * V) + 8 * d * d + 8 * V
    collect = (4 * n + accumulators + 3 * 8 * V * d
               + profile.collect.batch_size * T * (16 * d + (0 if flash else 4 * heads * T)))
    return {"train": train, "collect": collect, "peak": max(train, collect)}


def available_memory(device: str) -> tuple[int | None, str]:
    """(bytes free for a job, where): the CUDA device's free memory when ``device`` runs on
    CUDA, else the machine's MemAvailable (/proc/meminfo, or psutil where installed); None
    when neither can be read."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available():
            free, _ = torch.cuda.mem_get_info()
            return int(free), f"the CUDA device {torch.cuda.get_device_name()}"
    try:
        # optional, not a declared dependency: /proc/meminfo below otherwise
        import psutil

        return int(psutil.virtual_memory().available), "this machine"
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "this machine"
    except OSError:
        pass
    return None, "this machine"


def check_memory(profile: Profile, available: int | None = None, where: str | None = None) -> None:
    """UserError in one line, before any work, when a job of ``profile`` cannot fit: the run, its
    estimated peak (``peak_memory``), the memory available (``available_memory`` of the
    profile's device unless given) and the profile keys that set its size."""
    cuda = on_cuda(profile) if available is None else profile.device == "cuda"
    if available is None:
        available, where = available_memory(profile.device)
        if available is None:
            return
    for run in profile.runs():
        need = peak_memory(profile, run, cuda)
        if need["peak"] > available:
            step = "training" if need["train"] >= need["collect"] else "collection"
            raise UserError(
                f"profile {profile.name!r}: job {run} needs about {need['peak'] / GIB:.3g} GiB "
                f"at its peak ({step}), more than the {available / GIB:.3g} GiB available on "
                f"{where or 'this machine'}; lower its size in the profile (grid.widths / "
                "grid.depths or replicas, training.batch_size, collect.layers) or run it where "
                "more memory is free")


def memory_column(profile: Profile) -> list[float]:
    """Each run's estimated peak memory in GiB, in ``profile.runs()`` order (the dry run's
    ``peak_gib`` column)."""
    return [peak_memory(profile, run)["peak"] / GIB for run in profile.runs()]
