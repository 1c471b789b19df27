"""Collapse through training: runs with evenly spaced snapshots, each collected and measured, and
when each measure settles relative to the validation loss.

Reuse. When the grid trains a run of the ``dynamics`` section from its start, it saves the
snapshots on the way (``linguistic_collapse.pipeline.snapshots.grid_snapshots``) and this step
only collects and measures them. Otherwise (the grid run trained before, or resumed):

Training. Each run of a profile's ``dynamics`` section is trained again in its own folder
``<out_dir>/dynamics/<run>/`` (``Layout.dynamics_dir``) through the grid's own code
(``linguistic_collapse.pipeline.train``: model, init seed, AdamW, schedule over all steps, ``train_epoch``; the blocks of
epoch e in ``linguistic_collapse.lm.data.block_order(n, run.seed, e)``), each stretch between two snapshots on its
slice of that order. Cutting an epoch at batch boundaries and evaluating in between changes
nothing (no dropout, no random draw), so each epoch-end snapshot has the weights of the grid's
``checkpoint-<epoch>`` (``grid_agreement``; tests/test_dynamics.py asserts it bit for bit). The
grid's runs and their provenance are never written.

Snapshots (``pipeline.snapshots.snapshot_steps``): step 0 and ``points_per_epoch`` evenly spaced optimiser steps per
epoch, every epoch end included; each is ``checkpoint-<step>/`` (``save_pretrained`` of model and
tokenizer) with its validation loss and accuracy on all validation blocks, as in the grid. Only
the latest keeps the optimiser and RNG state, from which an interrupted run resumes. Then per
snapshot ``stats/step-<step>.safetensors`` (``linguistic_collapse.pipeline.collect``, on the first
``dynamics.max_train_blocks`` training blocks to bound the cost), ``metrics/step-<step>.json``
(``linguistic_collapse.nc.measure``), and the run's table ``dynamics.csv``.

Provenance. ``settings.json`` holds the training inputs (``linguistic_collapse.pipeline.train.run_inputs``, what a grid
run records) and the steps; a folder made from others is a stale cache, discarded and recomputed.
Stats are reused only when they record the snapshot's weights, the corpus hashes and the block
counts; metrics only when they record the stats file's sha256; the table only when its
``settings_sha256`` (training inputs, steps, statistics caps) is current.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.outputs import CHECKPOINT_PREFIX
from linguistic_collapse.core.paths import (
    Layout,
    atomic_write,
    atomic_write_json,
    lock_for,
    read_json,
)
from linguistic_collapse.core.profiles import Profile
from linguistic_collapse.core.provenance import CORPUS_HASHES, sha256_json
from linguistic_collapse.lm.data import PreparedCorpus
from linguistic_collapse.lm.devices import resolve_device
from linguistic_collapse.nc.measure import measure_stats_file
from linguistic_collapse.nc.registry import MEASURES
from linguistic_collapse.pipeline.checkpoints import (
    STATE_FILE,
    STATE_TENSORS,
)
from linguistic_collapse.pipeline.collect import collect_model_stats
from linguistic_collapse.pipeline.jobs import prepare_profile_corpus
from linguistic_collapse.pipeline.loop import SavePoints, train_loop
from linguistic_collapse.pipeline.refresh import collect_if_stale, measure_if_stale, stats_current
from linguistic_collapse.pipeline.snapshots import Plan, discard_if_stale, make_plan
from linguistic_collapse.pipeline.train import read_results

FIRST_COLUMNS = ["run", "step", "epoch", "tokens_seen", "train_loss", "val_loss", "val_acc",
                 "num_classes", "train_tokens_measured"]


# ---------------------------------------------------------------------------------------------
# Training with snapshots


def _strip_state(checkpoint: Path) -> None:
    """Drop the optimiser/RNG state of a snapshot that is no longer the latest."""
    for name in (STATE_FILE, STATE_TENSORS):  # the JSON first: it marks the state complete
        (checkpoint / name).unlink(missing_ok=True)


def train_snapshots(profile: Profile, plan: Plan, corpus: PreparedCorpus, progress: bool = True) -> list[dict]:
    """Train ``plan.run`` from scratch (or resume) through the grid's loop, saving every snapshot;
    returns the records (step, epoch, tokens_seen, train_loss, val_loss, val_acc, val_ppl,
    weights_sha256)."""
    run, d, files, tr = plan.run, plan.directory, plan.files, profile.training
    with lock_for(d):
        discard_if_stale(plan)
        if files.snapshots.is_file():
            return read_json(files.snapshots)["records"]
        atomic_write_json(files.settings, plan.settings)

        def record(step: int, epoch: float, tokens: int, loss: float, _n_tok: int, _t0: float,
                   _train_s: float, evaluation: dict) -> dict:
            return {"step": step, "epoch": epoch, "tokens_seen": tokens, "train_loss": loss,
                    **evaluation}

        def saved(_records: list[dict], step: int, _model: object) -> None:
            for other in d.glob(f"{CHECKPOINT_PREFIX}*"):  # also any left by an interruption
                if other != files.checkpoint(step):
                    _strip_state(other)

        at = SavePoints(tuple((s, s) for s in plan.steps if s > 0), record, saved, initial=True)
        _, records, _ = train_loop(run, d, corpus, tr, profile.model, plan.settings,
                                   plan.batch_size, resolve_device(profile.device), at, progress,
                                   "delete " + str(d), f"dynamics {run}")
        atomic_write_json(files.snapshots, {"records": records,
                                            "settings_sha256": sha256_json(plan.settings)})
        return records


# ---------------------------------------------------------------------------------------------
# Statistics and measures of each snapshot


def measure_snapshot(profile: Profile, plan: Plan, record: dict, corpus: PreparedCorpus) -> dict:
    """Statistics then measures of one snapshot (current files kept); the metrics dict. The
    snapshot's weights hash is the one recorded when it was saved (not hashed again)."""
    step, files = record["step"], plan.files
    stats, metrics = files.stats(step), files.metrics(step)
    manifest = read_json(Layout(profile.out_path).manifest)
    hashes = {k: manifest[k] for k in CORPUS_HASHES}
    device = resolve_device(profile.device).type
    inputs = {"weights_sha256": record["weights_sha256"], **hashes}

    def collect() -> None:
        collect_model_stats(files.checkpoint(step), corpus.train_blocks(), corpus.val_blocks(),
                            stats, batch_size=profile.collect.batch_size, device=device,
                            max_train_blocks=plan.caps[0], max_val_blocks=plan.caps[1],
                            progress=False, blocks_tokenizer_sha256=hashes["tokenizer_sha256"],
                            weights_hash={"weights_sha256": record["weights_sha256"]})

    collect_if_stale(stats, lambda: stats_current(stats, inputs, plan.caps), collect)
    return measure_if_stale(stats, metrics, lambda path: {
        **measure_stats_file(path, device=device, progress=False)[0], "step": step})


def _row(plan: Plan, record: dict, metrics: dict) -> dict:
    measures = {m: metrics[m] for m in MEASURES if m in metrics}
    return {"run": str(plan.run), **{k: record[k] for k in FIRST_COLUMNS[1:7]},
            "num_classes": metrics.get("num_classes"),
            "train_tokens_measured": metrics.get("pass1_tokens"), **measures,
            "weights_sha256": record["weights_sha256"], "settings_sha256": plan.table_sha256}


def read_table(path: Path, sha256: str | None = None) -> pd.DataFrame | None:
    """A run's stored table, or None when missing or (given ``sha256``) made from other settings."""
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    if sha256 is not None and not (len(table) and (table["settings_sha256"] == sha256).all()):
        return None
    return table


def run_dynamics(profile: Profile, run: ModelName, *, corpus: PreparedCorpus | None = None,
                 progress: bool = True) -> pd.DataFrame:
    """Train, collect and measure every snapshot of one run; its table (also written to
    ``dynamics/<run>/dynamics.csv``). A current table is returned as stored."""
    corpus = corpus if corpus is not None else prepare_profile_corpus(profile, progress)
    plan = make_plan(profile, run, corpus)
    stored = read_table(plan.files.table, plan.table_sha256)
    if stored is not None:
        return stored
    records = train_snapshots(profile, plan, corpus, progress)
    rows = [_row(plan, r, measure_snapshot(profile, plan, r, corpus))
            for r in tqdm(records, desc=f"measure {plan.run}", unit="snapshot",
                          disable=not progress, leave=False)]
    table = pd.DataFrame(rows)
    atomic_write(plan.files.table, lambda tmp: table.to_csv(tmp, index=False))
    return read_table(plan.files.table)  # as stored: the same floats either way


def run_all(profile: Profile, *, corpus: PreparedCorpus | None = None, progress: bool = True) -> pd.DataFrame:
    """Every run of ``profile.dynamics`` (finished work skipped), one table; empty without runs."""
    runs = profile.dynamics.run_names()
    if not runs:
        return pd.DataFrame(columns=FIRST_COLUMNS)
    corpus = corpus if corpus is not None else prepare_profile_corpus(profile, progress)
    return pd.concat([run_dynamics(profile, r, corpus=corpus, progress=progress) for r in runs],
                     ignore_index=True)


def plan_summary(profile: Profile, corpus: PreparedCorpus | None = None) -> pd.DataFrame:
    """What the dynamics step runs, before running it: per run its snapshots, steps, steps
    between snapshots and the statistics caps (blocks, and training tokens predicted)."""
    corpus = corpus if corpus is not None else prepare_profile_corpus(profile, progress=False)
    rows = []
    for run in profile.dynamics.run_names():
        p = make_plan(profile, run, corpus)
        rows.append({"run": str(run), "snapshots": len(p.steps), "steps": p.steps[-1],
                     "steps_between": p.steps[1], "train_blocks_measured": p.caps[0],
                     "train_tokens_measured": p.caps[0] * (corpus.context_len - 1),
                     "val_blocks_measured": p.caps[1]})
    return pd.DataFrame(rows)


def grid_agreement(profile: Profile, table: pd.DataFrame) -> pd.DataFrame:
    """Each epoch-end snapshot against the grid's checkpoint of that epoch (when trained): same
    weights (sha256) and the validation losses of both."""
    rows = []
    for run_name, g in table.groupby("run", sort=False):
        results = read_results(profile.out_path, ModelName.parse(run_name)) or {}
        grid = {c["epoch"]: c for c in results.get("checkpoints", [])}
        for _, r in g[(g["step"] > 0) & (g["epoch"] % 1 == 0)].iterrows():
            ck = grid.get(int(r["epoch"]), {})
            rows.append({"run": run_name, "epoch": int(r["epoch"]), "step": int(r["step"]),
                         "val_loss": r["val_loss"], "grid_val_loss": ck.get("val_loss", math.nan),
                         "same_weights": (ck["weights_sha256"] == r["weights_sha256"])
                         if "weights_sha256" in ck else None})
    return pd.DataFrame(rows, columns=["run", "epoch", "step", "val_loss", "grid_val_loss",
                                       "same_weights"])
