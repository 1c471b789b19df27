"""Model names: one string per grid model that parses back, a training run (architecture,
variant, seed) and, when given, one of its checkpoints (the measured model).

``L2-d64-e10-wd0.0005-s0-ck6`` is the 2-layer, 64-wide, 10-epoch, weight-decay-5e-4, seed-0
run after epoch 6; ``L2-d64-e10-wd0.0005-s0`` is the run itself. No torch import, so tables and
statistics load fast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from linguistic_collapse.core.errors import UserError

_RUN_RE = re.compile(
    r"^L(?P<depth>\d+)-d(?P<width>\d+)-e(?P<epochs>\d+)-wd(?P<wd>[0-9.eE+-]+)-s(?P<seed>\d+)"
    r"(?:-ck(?P<checkpoint>\d+))?$"
)


@dataclass(frozen=True)
class ModelName:
    """Depth, width, epochs, weight decay, shuffling seed and (optional) checkpoint epoch: a
    training run, or with ``checkpoint`` one measured model of it."""

    depth: int
    width: int
    epochs: int
    weight_decay: float
    seed: int
    checkpoint: int | None = None

    def __str__(self) -> str:
        name = f"L{self.depth}-d{self.width}-e{self.epochs}-wd{self.weight_decay!r}-s{self.seed}"
        return name if self.checkpoint is None else f"{name}-ck{self.checkpoint}"

    @property
    def run(self) -> ModelName:
        """The training run this checkpoint belongs to (checkpoint dropped)."""
        return ModelName(self.depth, self.width, self.epochs, self.weight_decay, self.seed)

    def at(self, checkpoint: int) -> ModelName:
        """This run at ``checkpoint`` (an epoch in 1..epochs)."""
        if not 1 <= checkpoint <= self.epochs:
            raise ValueError(f"checkpoint {checkpoint} outside epochs 1..{self.epochs} of {self}")
        return ModelName(self.depth, self.width, self.epochs, self.weight_decay, self.seed, checkpoint)

    def as_dict(self) -> dict:
        """The fields as a dict (the spec columns of a results table)."""
        return asdict(self)

    @classmethod
    def parse(cls, name: str) -> ModelName:
        """Parse ``str(ModelName)`` back; ValueError with an example otherwise."""
        m = _RUN_RE.match(name)
        if not m:
            raise ValueError(
                f"{name!r} is not a run name; expected e.g. 'L2-d64-e1-wd0.0005-s0' or '...-ck1'"
            )
        run = cls(int(m["depth"]), int(m["width"]), int(m["epochs"]), float(m["wd"]), int(m["seed"]))
        if m["checkpoint"] is None:
            return run
        if not 1 <= int(m["checkpoint"]) <= run.epochs:
            raise UserError(f"{name!r} names checkpoint {m['checkpoint']} of a {run.epochs}-epoch "
                            f"run; checkpoints are 1..{run.epochs}")
        return run.at(int(m["checkpoint"]))


def final_checkpoints(names: Iterable[ModelName]) -> list[ModelName]:
    """Each name at a checkpoint: given ones as they are, a bare run at its last epoch."""
    return [n if n.checkpoint is not None else n.at(n.epochs) for n in names]


def parse_checkpoints(stems: Iterable[str]) -> list[ModelName]:
    """The names among ``stems`` that are run checkpoints (``<run>-ck<epoch>``); others skipped
    (hub models measured into the same folder, for example)."""
    out = []
    for stem in stems:
        try:
            name = ModelName.parse(stem)
        except ValueError:
            continue
        if name.checkpoint is not None:
            out.append(name)
    return out


def largest(checkpoints: Iterable[ModelName]) -> ModelName:
    """The largest architecture's last checkpoint (width x depth, then epoch; lowest seed)."""
    return max(checkpoints, key=lambda c: (c.width * c.depth, c.checkpoint or 0, -c.seed))
