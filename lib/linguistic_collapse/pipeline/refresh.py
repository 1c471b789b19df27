"""The one collect-then-measure-if-stale routine of every step that measures a checkpoint.

A stats file is current when it is finished, records every given input hash (weights, corpus
blocks, tokenizer) and covers exactly the capped (training, validation) blocks, and for a
subsample exactly its training block indices (``pass1_indices_sha256``); a metrics file
when it records the sha256 of the stats file it was measured from and the current
``linguistic_collapse.nc.measure.MEASURE_VERSION`` (the definitions it was measured with). The grid, the sensitivity
study, the dynamics snapshots and pretrained models (``linguistic_collapse.pipeline.jobs``,
``linguistic_collapse.pipeline.dynamics``, ``linguistic_collapse.pipeline.pretrained``) decide with these rules, under the file's
lock, so a second process waits and then finds the file current. Callers hash a checkpoint's
inputs once and pass the same dict to every check and to the collection that records them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from linguistic_collapse.core.paths import atomic_write_json, lock_for, read_json
from linguistic_collapse.core.provenance import sha256_file
from linguistic_collapse.nc.measure import MEASURE_VERSION
from linguistic_collapse.nc.stats_file import (
    load_stats_metadata,
    partial_path,
    pass1_path,
    stored_layers,
)
from linguistic_collapse.pipeline.freshness import stale_reasons


def stats_current(path: Path, inputs: dict[str, str] | None, caps: tuple[int, int],
                  layers: Collection[int] = (), indices_sha256: str = "") -> bool:
    """Whether ``path`` is a finished stats file of ``inputs`` (None: the checkpoint is not
    there yet) over ``caps`` blocks, holding at least ``layers``; ``indices_sha256``: the
    subsample of training blocks it must have read ("" : the first ``caps[0]``, no subsample)."""
    if inputs is None or stale_reasons(path, **inputs):
        return False
    meta = load_stats_metadata(path)
    blocks = (int(meta["pass1_blocks"]), int(meta["pass2_blocks"]))
    return (blocks == tuple(caps) and set(layers) <= set(stored_layers(meta))
            and meta.get("pass1_indices_sha256", "") == indices_sha256)


def collect_if_stale(path: Path, current: Callable[[], bool], collect: Callable[[], None],
                     also_stale: Iterable[Path] = ()) -> bool:
    """Under ``path``'s lock: nothing when ``current()``, else remove the stale file, its partial
    file and ``also_stale`` (made from other inputs) and ``collect()``; True when collected."""
    with lock_for(path):
        if current():
            return False
        for stale in (path, partial_path(path), pass1_path(path),
                      partial_path(pass1_path(path)), *also_stale):
            stale.unlink(missing_ok=True)
        collect()
        return True


def measured_from(done: dict, stats_sha256: str) -> bool:
    """Whether metrics ``done`` were measured from the stats file of this sha256 with the
    current measures."""
    return (done.get("stats_sha256") == stats_sha256
            and done.get("measure_version") == MEASURE_VERSION)


def is_measured(metrics: Path, stats: Path) -> bool:
    """Whether ``metrics`` was measured from the current ``stats`` (its sha256 recorded) with
    the current ``MEASURE_VERSION``."""
    return (metrics.is_file() and stats.is_file()
            and measured_from(read_json(metrics), sha256_file(stats)))


def measure_if_stale(stats: Path, metrics: Path, measure: Callable[[Path], dict],
                     stats_sha256: str | None = None) -> dict:
    """Under ``metrics``' lock: the stored metrics when measured from the current ``stats``
    with the current ``MEASURE_VERSION``, else ``measure(stats)`` with ``stats_sha256`` and
    ``measure_version`` added, written to ``metrics``. ``stats_sha256``: the file's hash when
    the caller computed it under a lock it still holds, so that no step of this pipeline has
    rewritten the file since (then it is not hashed again); else hashed here."""
    with lock_for(metrics):
        return measure_under_lock(stats, metrics, measure, stats_sha256)


def measure_under_lock(stats: Path, metrics: Path, measure: Callable[[Path], dict],
                       stats_sha256: str | None = None) -> dict:
    """``measure_if_stale`` for a caller that holds ``metrics``' lock already (a second
    ``lock_for`` of the same file in one thread would be refused as a deadlock)."""
    stats_sha256 = stats_sha256 or sha256_file(stats)
    if metrics.is_file() and measured_from(done := read_json(metrics), stats_sha256):
        return done
    out = {**measure(stats), "stats_sha256": stats_sha256, "measure_version": MEASURE_VERSION}
    atomic_write_json(metrics, out)
    return out
