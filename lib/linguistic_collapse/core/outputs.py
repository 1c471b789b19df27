"""The file names inside a corpus, a dynamics run and a pretrained-models folder.

``linguistic_collapse.core.paths.Layout`` spells a profile's ``data/<profile>/`` folder and hands out these
smaller layouts for the folders it contains; a folder a user chose (a corpus or pretrained
``--out``) gets its layout directly, e.g. ``PretrainedLayout(out_dir).metrics(slug)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_PREFIX = "checkpoint-"  # checkpoint-<epoch> of a grid run, checkpoint-<step> of dynamics


def checkpoint_in(directory: Path, n: int) -> Path:
    """``<directory>/checkpoint-<n>``: an epoch of a grid run or a step of a dynamics run."""
    return Path(directory) / f"{CHECKPOINT_PREFIX}{n}"


@dataclass(frozen=True)
class CorpusLayout:
    """A prepared corpus folder (``linguistic_collapse.lm.data.prepare_corpus``)."""

    root: Path

    @property
    def manifest(self) -> Path:
        return Path(self.root) / "manifest.json"

    @property
    def tokenizer_dir(self) -> Path:
        return Path(self.root) / "tokenizer"

    @property
    def train_blocks(self) -> Path:
        return Path(self.root) / "train_blocks.npy"

    @property
    def val_blocks(self) -> Path:
        return Path(self.root) / "val_blocks.npy"


@dataclass(frozen=True)
class DynamicsLayout:
    """``dynamics/<run>/`` (``linguistic_collapse.pipeline.dynamics``): snapshots ``checkpoint-<step>/``, their
    ``stats/step-<step>.safetensors`` and ``metrics/step-<step>.json``, and the run's table."""

    root: Path

    def checkpoint(self, step: int) -> Path:
        return checkpoint_in(Path(self.root), step)

    @property
    def stats_dir(self) -> Path:
        return Path(self.root) / "stats"

    @property
    def metrics_dir(self) -> Path:
        return Path(self.root) / "metrics"

    def stats(self, step: int) -> Path:
        return self.stats_dir / f"step-{step}.safetensors"

    def metrics(self, step: int) -> Path:
        return self.metrics_dir / f"step-{step}.json"

    @property
    def settings(self) -> Path:
        """Training inputs and snapshot steps of the folder."""
        return Path(self.root) / "settings.json"

    @property
    def snapshots(self) -> Path:
        """Written when every snapshot is saved: the per-step records."""
        return Path(self.root) / "snapshots.json"

    @property
    def table(self) -> Path:
        return Path(self.root) / "dynamics.csv"


@dataclass(frozen=True)
class PretrainedLayout:
    """An output folder of ``linguistic_collapse.pipeline.pretrained.measure_pretrained``: ``metrics/<slug>.json``
    and ``stats/<slug>/stats.safetensors`` per (model, revision)."""

    root: Path

    @property
    def metrics_dir(self) -> Path:
        return Path(self.root) / "metrics"

    def metrics(self, slug: str) -> Path:
        return self.metrics_dir / f"{slug}.json"

    def stats(self, slug: str) -> Path:
        return Path(self.root) / "stats" / slug / "stats.safetensors"
