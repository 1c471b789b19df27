"""A profile's jobs: corpus, train, collect and measure per run.

The profile's typed sections go from here into ``linguistic_collapse.lm.data``, ``linguistic_collapse.pipeline.train``, ``linguistic_collapse.pipeline.collect`` and
``linguistic_collapse.nc.measure``; every path comes from ``linguistic_collapse.core.paths.Layout(profile.out_path)``.

One job per training run: train it (resuming, skipping a finished run), collect statistics of
each measured checkpoint into ``out_dir/stats/<run>-ck<e>/stats.safetensors`` and measure them
into ``out_dir/metrics/<run>-ck<e>.json`` (paths from ``linguistic_collapse.core.paths.Layout``). Work is skipped
only when current: a stats file must record the hashes of the checkpoint's weights and of the
corpus blocks and tokenizer; a metrics file the sha256 of the stats file it was measured from.
Stale files are redone; a run trained from other inputs is refused with the command that
retrains it (``--retrain``). Each output is written under its own file lock, so two ``grid``
processes on one ``out_dir`` take turns instead of colliding. The steps are also separate
functions (``train_all``, ``collect_all``, ``measure_all``), as the notebooks call them.

Locally::

    python -m linguistic_collapse grid --profile smoke              # everything, one job after another
    python -m linguistic_collapse grid --profile cpu --only-train   # training only
    python -m linguistic_collapse grid --profile paper --dry-run    # job list with estimated A100 GPU-hours
    python -m linguistic_collapse train --profile cpu --run L1-d32-e1-wd0.1-s0 [--retrain]   # one run

On a SLURM cluster: ``python -m linguistic_collapse grid --profile paper --slurm`` (``linguistic_collapse.pipeline.slurm``).
The jobs' costs and the memory check before any work: ``linguistic_collapse.pipeline.costs``.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import Layout, atomic_write_json, lock_for, read_json
from linguistic_collapse.core.profiles import Profile
from linguistic_collapse.core.provenance import (
    CORPUS_HASHES,
    sha256_array,
    sha256_file,
    weights_sha256,
)
from linguistic_collapse.lm.data import PreparedCorpus, prepare_corpus
from linguistic_collapse.lm.devices import resolve_device
from linguistic_collapse.nc.measure import measure_read_stats
from linguistic_collapse.nc.stats_file import (
    PASSES,
    load_stats_metadata,
    read_stats,
)
from linguistic_collapse.nc.subset import min_count_section
from linguistic_collapse.pipeline import fixed_k, refresh
from linguistic_collapse.pipeline.blocks import subsample_blocks
from linguistic_collapse.pipeline.collect import collect_model_stats
from linguistic_collapse.pipeline.costs import check_memory
from linguistic_collapse.pipeline.layers import layers_section, profile_layers
from linguistic_collapse.pipeline.refresh import collect_if_stale, measure_if_stale, stats_current
from linguistic_collapse.pipeline.snapshots import grid_snapshots
from linguistic_collapse.pipeline.train import is_trained, train_run

JOB_STEPS = ("train", "collect", "measure")


# ---------------------------------------------------------------------------------------------
# Steps


def _device(profile: Profile) -> str:
    return resolve_device(profile.device).type


def prepare_profile_corpus(profile: Profile, progress: bool = True,
                           check_fits: bool = True) -> PreparedCorpus:
    """The profile's tokenized corpus (cached in ``out_dir/corpus``; rebuilt when text changed),
    after every job was checked to fit in this machine's memory (``costs.check_memory``; the
    first work of every local run of a profile), unless ``check_fits`` is False (SLURM
    submission: the jobs run elsewhere)."""
    if check_fits:
        check_memory(profile)
    return prepare_corpus(corpus=profile.corpus, tokenizer=profile.tokenizer,
                          context_len=profile.context_len, cache_dir=Layout(profile.out_path).corpus,
                          progress=progress)


def train_profile_run(profile: Profile, run: ModelName, *, corpus: PreparedCorpus | None = None,
                      progress: bool = True, device: str | None = None,
                      retrain: bool = False) -> dict:
    """Train one run of a profile (preparing the corpus first when none is given)."""
    if run.run not in profile.runs():
        raise UserError(f"run {run.run} is not in profile {profile.name!r}; pick one of its runs "
                        f"(python -m linguistic_collapse grid --profile {profile.name} --dry-run lists them)")
    corpus = corpus if corpus is not None else prepare_profile_corpus(profile, progress)
    with grid_snapshots(profile, run, corpus) as snapshots:  # a dynamics run: its snapshots on the way
        return train_run(run, corpus=corpus, training=profile.training, model_cfg=profile.model,
                         out_dir=profile.out_path, device=device or profile.device, progress=progress,
                         retrain=retrain, snapshots=snapshots, retrain_command=(
                             f"python -m linguistic_collapse train --profile {profile.name} --run {run.run} --retrain"))


def collect_inputs(profile: Profile, ck: ModelName) -> dict[str, str] | None:
    """The hashes a stats file of ``ck`` must record to be current: the checkpoint's weights,
    the corpus blocks and tokenizer (from its manifest). None before the checkpoint exists."""
    layout = Layout(profile.out_path)
    model_dir = layout.checkpoint_dir(ck)
    if not (model_dir / "config.json").is_file() or not layout.manifest.is_file():
        return None
    manifest = read_json(layout.manifest)
    return {"weights_sha256": weights_sha256(model_dir),
            **{k: manifest[k] for k in CORPUS_HASHES}}


def block_caps(profile: Profile, fraction: float | None = None) -> tuple[int, int]:
    """(training, validation) blocks a stats file reads: the profile's caps, and for the
    sensitivity study ``fraction`` of those training blocks (at least one)."""
    manifest = read_json(Layout(profile.out_path).manifest)
    col = profile.collect
    n_train = min(manifest["n_train_blocks"], col.max_train_blocks or manifest["n_train_blocks"])
    n_val = min(manifest["n_val_blocks"], col.max_val_blocks or manifest["n_val_blocks"])
    return (n_train if fraction is None else max(1, math.ceil(fraction * n_train))), n_val


def sensitivity_blocks(profile: Profile, fraction: float | None, draw: int = 0) -> np.ndarray | None:
    """The training block indices of the sensitivity study's subsample ``draw`` at ``fraction``
    (``block_caps`` many, random, in order; ``sensitivity.seed``), None for the full pass."""
    if fraction is None or fraction >= 1:
        return None
    return subsample_blocks(block_caps(profile)[0], fraction, profile.sensitivity.seed, draw)


def _indices_sha256(profile: Profile, fraction: float | None, draw: int) -> str:
    """sha256 of the subsample's index list, as collection records it ("" : the full pass)."""
    indices = sensitivity_blocks(profile, fraction, draw)
    return "" if indices is None else sha256_array(indices)


def is_collected(profile: Profile, ck: ModelName, fraction: float | None = None,
                 draw: int = 0, inputs: dict[str, str] | None = None) -> bool:
    """A finished stats file made from the current checkpoint and corpus (hashes compared)
    over the blocks the profile asks for (a changed ``collect`` cap or subsample is recollected
    too), holding at least the layers the profile asks for (``collect.layers``,
    linguistic_collapse.pipeline.layers). ``inputs``: ``collect_inputs`` computed already (else hashed here).
    False without a checkpoint or a corpus manifest (nothing to compare with)."""
    inputs = inputs or collect_inputs(profile, ck)
    if inputs is None:
        return False
    return stats_current(Layout(profile.out_path).stats(ck, fraction, draw),
                         inputs, block_caps(profile, fraction),
                         profile_layers(profile, ck, fraction),
                         _indices_sha256(profile, fraction, draw))


def is_measured(profile: Profile, ck: ModelName, fraction: float | None = None,
                draw: int = 0) -> bool:
    """A metrics file measured from the current stats file (its sha256 recorded and equal)."""
    layout = Layout(profile.out_path)
    return refresh.is_measured(layout.metrics(ck, fraction, draw), layout.stats(ck, fraction, draw))


def collect_checkpoint(profile: Profile, ck: ModelName, corpus: PreparedCorpus, progress: bool = True,
                       fraction: float | None = None, draw: int = 0,
                       inputs: dict[str, str] | None = None) -> Path:
    """Statistics of one trained checkpoint; a current stats file is kept, a stale one redone.

    ``fraction``, ``draw``: the sensitivity study's statistics on random subsample ``draw`` of
    that fraction of the training blocks (``sensitivity_blocks``).
    Runs under the stats file's lock, so a second process waits and then finds it current.
    The checkpoint's files are hashed and the corpus manifest read once (``inputs``, or
    ``collect_inputs`` here): the same hashes decide staleness and are recorded in the stats file.
    """
    layout = Layout(profile.out_path)
    model_dir, path = layout.checkpoint_dir(ck), layout.stats(ck, fraction, draw)
    inputs = inputs or collect_inputs(profile, ck)
    if inputs is None:
        raise UserError(f"no checkpoint {model_dir} (or no corpus manifest); train it first: "
                        f"python -m linguistic_collapse train --profile {profile.name} --run {ck.run}")
    throughput = layout.throughput(ck, fraction, draw)

    def collect() -> None:
        indices = sensitivity_blocks(profile, fraction, draw)
        n_train, n_val = block_caps(profile, None if indices is not None else fraction)
        start = time.perf_counter()
        collect_model_stats(
            model_dir, corpus.train_blocks(), corpus.val_blocks(), path,
            batch_size=profile.collect.batch_size, device=_device(profile),
            max_train_blocks=n_train, max_val_blocks=n_val, progress=progress,
            blocks_tokenizer_sha256=inputs["tokenizer_sha256"],
            layers=profile_layers(profile, ck, fraction) or None, train_indices=indices,
            weights_hash={"weights_sha256": inputs["weights_sha256"]})
        seconds, meta = time.perf_counter() - start, load_stats_metadata(path)
        tokens = sum(int(meta.get(f"pass{i}_tokens", 0)) for i in PASSES)
        atomic_write_json(throughput, {  # all passes' tokens over the wall time
            "collect_seconds": seconds, "collect_tokens": tokens,
            "collect_device": _device(profile), "collect_tokens_per_s": tokens / max(seconds, 1e-9)})

    collect_if_stale(path, lambda: is_collected(profile, ck, fraction, draw, inputs), collect,
                     [throughput])
    return path


def measure_checkpoint(profile: Profile, ck: ModelName, progress: bool = False,
                       fraction: float | None = None, draw: int = 0, *,
                       stats_sha256: str | None = None,
                       read: Callable[[], tuple[dict, dict]] | None = None) -> Path:
    """The measures of one checkpoint's statistics, with its run spec, as metrics JSON.

    Records ``stats_sha256`` (the stats file measured), so a recollected file is re-measured;
    stats with layers add the section ``layers``: {index: measures} (``linguistic_collapse.pipeline.layers``),
    and every file the section ``min_count``: the measures on the classes with at least
    ``analysis.min_count`` training samples (a robustness line, ``linguistic_collapse.nc.subset``); a subsample
    adds ``train_fraction`` and ``train_draw``. The stats file is hashed once and, when stale,
    read (verified) once for every section; ``stats_sha256`` and ``read`` (its ``read_stats``,
    called at most once) when the caller has them (``sensitivity_all`` shares both with the
    fixed-K measures).
    """
    layout = Layout(profile.out_path)
    stats_file, path = layout.stats(ck, fraction, draw), layout.metrics(ck, fraction, draw)

    def measure(stats: Path) -> dict:
        tensors, meta = read() if read is not None else read_stats(stats)
        device = _device(profile)
        measures = {**measure_read_stats(tensors, meta, stats, device=device, progress=progress)[0],
                    **layers_section(tensors, meta, device=device),  # {} without layers
                    **min_count_section(tensors, profile.analysis.min_count, device=device)}
        throughput = layout.throughput(ck, fraction, draw)
        extra = read_json(throughput) if throughput.is_file() else {}
        if fraction is not None and fraction < 1:
            extra["train_fraction"], extra["train_draw"] = fraction, draw
        return {**measures, **extra, "run": str(ck), "spec": ck.as_dict()}

    measure_if_stale(stats_file, path, measure, stats_sha256)
    return path


def sensitivity_all(profile: Profile, *, corpus: PreparedCorpus | None = None, progress: bool = True) -> list[Path]:
    """Statistics and measures of each ``sensitivity.runs`` checkpoint on each of
    ``sensitivity.draws`` random subsamples of each of ``sensitivity.fractions`` of its training
    blocks (fraction 1: the main statistics), and its fixed-K measures
    (``linguistic_collapse.pipeline.fixed_k``); current files kept. The metrics paths."""
    out = []
    for ck in profile.sensitivity.checkpoints():
        inputs = collect_inputs(profile, ck)  # hashed once for every check and collection
        samples = [(f, d) for f in profile.sensitivity.fractions
                   for d in profile.sensitivity.draws_of(f)]
        for fraction, draw in samples:
            if not is_collected(profile, ck, fraction, draw, inputs):
                corpus = _corpus(profile, corpus, progress)
                collect_checkpoint(profile, ck, corpus, progress, fraction, draw, inputs)
        out += _measure_samples(profile, ck, samples, progress)
    return out


def _measure_samples(profile: Profile, ck: ModelName, samples: Sequence[tuple[float, int]],
                     progress: bool) -> list[Path]:
    """Measure each (fraction, draw) sample of ``ck`` and, when stale, the fixed-K rows of them
    all, under the fixed-K file's lock: each stats file hashed once and read (verified) at most
    once for both; the samples' metrics paths."""
    layout = Layout(profile.out_path)
    store = layout.fixed_k_metrics(ck)
    with lock_for(store):
        hashes = {fixed_k.sample_key(f, d): sha256_file(layout.stats(ck, f, d)) for f, d in samples}
        stale = fixed_k.stored_rows(store, hashes) is None
        keep = fixed_k.common_classes(layout.stats(ck, f, d) for f, d in samples) if stale else None
        rows = []
        for f, d in samples:
            read = functools.cache(functools.partial(read_stats, layout.stats(ck, f, d)))
            measure_checkpoint(profile, ck, progress, f, d,
                               stats_sha256=hashes[fixed_k.sample_key(f, d)], read=read)
            if keep is not None:
                rows.append(fixed_k.fixed_k_row(ck, f, d, read()[0], keep, _device(profile)))
        if keep is not None:
            fixed_k.save_rows(store, hashes, rows)
    return [layout.metrics(ck, f, d) for f, d in samples]


def train_runs(profile: Profile, runs: Sequence[ModelName], *, corpus: PreparedCorpus | None = None,
               progress: bool = True, bar: tqdm | None = None, retrain: bool = False,
               say: Callable[[str], None] | None = None) -> None:
    """Train each run. Finished runs return at once, but only after their settings (corpus
    included) are checked against the profile's: a run trained on other data is refused (or,
    with ``retrain``, trained again), not reused."""
    for run in runs:
        corpus = _corpus(profile, corpus, progress)
        train_profile_run(profile, run, corpus=corpus, progress=progress, retrain=retrain)
        _tick(bar, f"trained {run}", say)


def collect_checkpoints(profile: Profile, cks: Sequence[ModelName], *,
                        corpus: PreparedCorpus | None = None, progress: bool = True,
                        bar: tqdm | None = None, say: Callable[[str], None] | None = None
                        ) -> None:
    """Collect the statistics of each checkpoint unless they are current (its files hashed
    once, for the check and the collection)."""
    for ck in cks:
        inputs = collect_inputs(profile, ck)
        if not is_collected(profile, ck, inputs=inputs):
            corpus = _corpus(profile, corpus, progress)
            collect_checkpoint(profile, ck, corpus, progress, inputs=inputs)
        _tick(bar, f"collected {ck}", say)


def measure_checkpoints(profile: Profile, cks: Sequence[ModelName], *, progress: bool = True,
                        bar: tqdm | None = None, say: Callable[[str], None] | None = None
                        ) -> None:
    """Measure each checkpoint unless its metrics are of its current stats file (decided by
    ``measure_if_stale``, which hashes the stats file once)."""
    for ck in cks:
        measure_checkpoint(profile, ck, progress)
        _tick(bar, f"measured {ck}", say)


def run_job(profile: Profile, run: ModelName, *, corpus: PreparedCorpus | None = None,
            steps: Sequence[str] = JOB_STEPS, progress: bool = True,
            bar: tqdm | None = None, retrain: bool = False,
            say: Callable[[str], None] | None = None) -> None:
    """The steps of one run (a SLURM task): train it, then collect and measure each of its
    checkpoints. Finished work is skipped only when current (``train_runs``,
    ``collect_checkpoints``, ``measure_checkpoints``); ``say`` gets one line per finished step
    (task logs)."""
    unknown = [s for s in steps if s not in JOB_STEPS]
    if unknown:
        raise ValueError(f"unknown step {unknown[0]!r}; steps: {', '.join(JOB_STEPS)}")
    cks = profile.checkpoints_of(run)
    if "train" in steps:
        train_runs(profile, [run], corpus=corpus, progress=progress, bar=bar, retrain=retrain,
                   say=say)
    if "collect" in steps:
        collect_checkpoints(profile, cks, corpus=corpus, progress=progress, bar=bar, say=say)
    if "measure" in steps:
        measure_checkpoints(profile, cks, progress=progress, bar=bar, say=say)


def _corpus(profile: Profile, corpus: PreparedCorpus | None, progress: bool) -> PreparedCorpus:
    return corpus if corpus is not None else prepare_profile_corpus(profile, progress)


def _tick(bar: tqdm | None, text: str, say: Callable[[str], None] | None = None) -> None:
    if say is not None:
        say(text)
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
        bar.update(1)


def _bar(profile: Profile, total: int, what: str, progress: bool, unit: str) -> tqdm:
    """One bar over the profile's work items (``unit``: runs, checkpoints or jobs' steps)."""
    return tqdm(total=total, desc=f"{profile.name}: {what}", disable=not progress, unit=unit)


def run_local(profile: Profile, progress: bool = True, only_train: bool = False,
              retrain: bool = False) -> None:
    """Prepare the corpus once, then every run's job in turn (current work skipped), under one
    progress bar; ``only_train``: train every run and stop."""
    if only_train:
        return train_all(profile, progress=progress, retrain=retrain)
    corpus = _corpus(profile, None, progress)
    total = len(profile.runs()) + 2 * len(profile.checkpoints())
    with _bar(profile, total, "+".join(JOB_STEPS), progress, "task") as bar:
        for run in profile.runs():
            run_job(profile, run, corpus=corpus, progress=progress, bar=bar, retrain=retrain)


def train_all(profile: Profile, *, corpus: PreparedCorpus | None = None, progress: bool = True,
              retrain: bool = False) -> None:
    """Train every run of the profile (current runs skipped)."""
    corpus = _corpus(profile, corpus, progress)
    with _bar(profile, len(profile.runs()), "train", progress, "run") as bar:
        train_runs(profile, profile.runs(), corpus=corpus, progress=progress, bar=bar,
                   retrain=retrain)


def collect_all(profile: Profile, *, corpus: PreparedCorpus | None = None, progress: bool = True) -> None:
    """Collect every checkpoint of the profile (current statistics kept)."""
    corpus = _corpus(profile, corpus, progress)
    with _bar(profile, len(profile.checkpoints()), "collect", progress, "checkpoint") as bar:
        collect_checkpoints(profile, profile.checkpoints(), corpus=corpus, progress=progress, bar=bar)


def measure_all(profile: Profile, *, progress: bool = True) -> None:
    """Measure every checkpoint of the profile (current metrics kept)."""
    with _bar(profile, len(profile.checkpoints()), "measure", progress, "checkpoint") as bar:
        measure_checkpoints(profile, profile.checkpoints(), progress=progress, bar=bar)


def pending_runs(profile: Profile, steps: Sequence[str] = JOB_STEPS) -> list[ModelName]:
    """Runs with work left in the given steps."""
    def done(run: ModelName) -> bool:
        cks = profile.checkpoints_of(run)
        return (("train" not in steps or is_trained(profile.out_path, run))
                and ("collect" not in steps or all(is_collected(profile, c) for c in cks))
                and ("measure" not in steps or all(is_measured(profile, c) for c in cks)))

    return [run for run in profile.runs() if not done(run)]
