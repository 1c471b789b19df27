"""The snapshots of a dynamics run (``linguistic_collapse.pipeline.dynamics``): which optimiser steps,
the plan of one run (training inputs, steps, statistics caps), and taking them while the grid
trains that same run (``grid_snapshots``), so the dynamics step need not train it again.

Reuse. A run of the profile's ``dynamics`` section that the grid trains from its start gets its
snapshots saved on the way (``linguistic_collapse.pipeline.loop.Snapshots``): each
``dynamics/<run>/checkpoint-<step>/`` holds the model and tokenizer (``save_pretrained``), and
``snapshots.json`` the records (step, epoch, tokens_seen, train_loss, the evaluation and the
weights' sha256) once the last one is saved. The grid's checkpoints do not change: the loop
takes the same steps on the same batches, only cut and evaluated at more places. A grid run
already trained (or resumed from a checkpoint) leaves the dynamics folder to
``dynamics.train_snapshots``, which trains the run again; a folder the grid did not finish is
removed, so it is never mistaken for a finished one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.outputs import CHECKPOINT_PREFIX, DynamicsLayout
from linguistic_collapse.core.paths import (
    Layout,
    atomic_dir,
    atomic_write_json,
    discard_dir,
    lock_for,
    read_json,
)
from linguistic_collapse.core.profiles import Profile
from linguistic_collapse.core.provenance import sha256_json, weights_sha256
from linguistic_collapse.lm.data import PreparedCorpus
from linguistic_collapse.lm.loading import quiet_transformers
from linguistic_collapse.nc.measure import MEASURE_VERSION
from linguistic_collapse.pipeline.loop import Snapshots
from linguistic_collapse.pipeline.train import run_inputs

TABLE_VERSION = 1  # part of the table's settings hash: bump when its columns change


def snapshot_steps(steps_per_epoch: int, epochs: int, points_per_epoch: int) -> list[int]:
    """Step 0 and ``points_per_epoch`` evenly spaced steps per epoch (floor of k S / P), so each
    epoch end e S is one of them; strictly increasing."""
    S, P = steps_per_epoch, points_per_epoch
    if P > S:
        raise UserError(f"dynamics.points_per_epoch is {P} but an epoch has only {S} optimiser "
                        f"steps; set points_per_epoch to at most {S}")
    return [0] + [e * S + k * S // P for e in range(epochs) for k in range(1, P + 1)]


@dataclass(frozen=True)
class Plan:
    """What one dynamics run is made from: its training inputs, steps and statistics caps."""

    run: ModelName
    directory: Path
    settings: dict  # {"run_inputs": linguistic_collapse.pipeline.train.run_inputs(...), "snapshot_steps": [...]}
    steps_per_epoch: int
    batch_size: int
    caps: tuple[int, int]  # (training, validation) blocks of each snapshot's statistics

    @property
    def files(self) -> DynamicsLayout:
        """The paths inside ``directory`` (linguistic_collapse.core.outputs)."""
        return DynamicsLayout(self.directory)

    @property
    def steps(self) -> list[int]:
        return self.settings["snapshot_steps"]

    @property
    def table_sha256(self) -> str:
        """Identity of the table: training inputs, steps, caps, the table version and the
        measures' definitions (``MEASURE_VERSION``), so changed measures are measured again."""
        return sha256_json({"settings": self.settings, "caps": list(self.caps),
                            "table_version": TABLE_VERSION, "measure_version": MEASURE_VERSION})


def make_plan(profile: Profile, run: ModelName, corpus: PreparedCorpus) -> Plan:
    """The plan of one run of ``profile.dynamics`` on a prepared corpus (``linguistic_collapse.lm.data``)."""
    run = run.run
    batch_size = profile.batch_size(run)
    steps_per_epoch = math.ceil(corpus.n_train_blocks / batch_size)
    dyn, col = profile.dynamics, profile.collect
    cap_train = dyn.max_train_blocks or col.max_train_blocks or corpus.n_train_blocks
    cap_val = dyn.max_val_blocks or col.max_val_blocks or corpus.n_val_blocks
    settings = {"run_inputs": run_inputs(run, corpus, profile.training, profile.model, batch_size),
                "snapshot_steps": snapshot_steps(steps_per_epoch, run.epochs,
                                                 dyn.points_per_epoch)}
    return Plan(run, Layout(profile.out_path).dynamics_dir(run), settings, steps_per_epoch,
                batch_size, (min(cap_train, corpus.n_train_blocks),
                             min(cap_val, corpus.n_val_blocks)))


def discard_if_stale(plan: Plan) -> None:
    """Remove the run's folder when it was made from other training inputs or steps."""
    path = plan.files.settings
    if plan.directory.exists() and (not path.is_file() or read_json(path) != plan.settings):
        discard_dir(plan.directory)


def save_snapshot(plan: Plan, step: int, record: dict, model: nn.Module, tokenizer: object) -> dict:
    """Write ``checkpoint-<step>`` (model and tokenizer, no training state) atomically; returns
    ``record`` with the saved weights' ``weights_sha256``."""
    with atomic_dir(plan.files.checkpoint(step)) as tmp:
        with quiet_transformers():
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        return {**record, "weights_sha256": weights_sha256(tmp)}


@contextmanager
def grid_snapshots(profile: Profile, run: ModelName, corpus: PreparedCorpus) -> Iterator[Snapshots | None]:
    """Within: the ``Snapshots`` that save ``run``'s dynamics while the grid trains it, or None
    when ``run`` is not in ``profile.dynamics``, the grid has begun it already (a checkpoint or
    results) or its snapshots are already saved. Holds the dynamics folder's lock; on leaving, a
    folder whose last snapshot was not saved (the grid run failed) is removed."""
    grid_dir = Layout(profile.out_path).run_dir(run.run)
    begun = grid_dir.exists() and any(p.name.startswith(CHECKPOINT_PREFIX) or p.name == "results.json"
                                      for p in grid_dir.iterdir())
    if begun or run.run not in [r.run for r in profile.dynamics.run_names()]:
        yield None
        return
    plan = make_plan(profile, run, corpus)
    files, tokenizer, records = plan.files, corpus.tokenizer(), []
    with lock_for(plan.directory):
        discard_if_stale(plan)
        if files.snapshots.is_file():
            yield None
            return
        if plan.directory.exists():  # an unfinished earlier attempt: every snapshot comes now
            discard_dir(plan.directory)
        plan.directory.mkdir(parents=True)
        atomic_write_json(files.settings, plan.settings)

        def take(step: int, record: dict, model: nn.Module) -> None:
            records.append(save_snapshot(plan, step, record, model, tokenizer))
            if step == plan.steps[-1]:
                atomic_write_json(files.snapshots, {"records": records,
                                                    "settings_sha256": sha256_json(plan.settings)})

        try:
            yield Snapshots(tuple(plan.steps), take)
        finally:
            if not files.snapshots.is_file() and plan.directory.exists():
                discard_dir(plan.directory)
