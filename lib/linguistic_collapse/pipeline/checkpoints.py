"""Training checkpoints: the model, tokenizer and the optimiser/scheduler/RNG state as safetensors plus
JSON (no pickle), written atomically, read back verified, restored so a resumed run continues
identically."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from linguistic_collapse.core.errors import UserError, as_os_error
from linguistic_collapse.core.outputs import CHECKPOINT_PREFIX, checkpoint_in
from linguistic_collapse.core.paths import (
    TEMP_SUFFIX,
    atomic_dir,
    read_json,
)
from linguistic_collapse.core.provenance import weights_sha256
from linguistic_collapse.lm.loading import quiet_transformers

# ---------------------------------------------------------------------------------------------

STATE_TENSORS = "training_state.safetensors"  # optimiser state and RNG states, as tensors
STATE_FILE = "training_state.json"  # epoch, records, settings, scheduler, RNG lists; written last


def _state_tensors_and_json(epoch: int, optimizer, scheduler, records: list[dict],
                            settings: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """The training state split into tensors (safetensors) and plain data (JSON)."""
    opt = optimizer.state_dict()
    tensors = {}
    for pid, param_state in opt["state"].items():
        for key, value in param_state.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {key!r} is {type(value).__name__}, not a tensor")
            tensors[f"optimizer.{pid}.{key}"] = value.detach().cpu().contiguous()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = cuda_state
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    plain = {"epoch": epoch, "records": records, "settings": settings,
             "scheduler": scheduler.state_dict(), "optimizer_param_groups": opt["param_groups"],
             "rng_numpy": [np_name, np_keys.tolist(), np_pos, np_has_gauss, np_gauss],
             "rng_python": [py_version, list(py_state), py_gauss]}
    return tensors, json.loads(json.dumps(plain))


def read_training_state(checkpoint: Path, fix: str = "retrain the run") -> tuple[dict, dict]:
    """The (tensors, plain data) of a checkpoint's training state; never unpickles anything.

    An unreadable state raises ``UserError`` naming the file and ``fix``.
    """
    path = checkpoint / STATE_FILE
    try:
        plain = read_json(path)
        path = checkpoint / STATE_TENSORS
        return load_file(path), plain
    except (OSError, ValueError, SafetensorError) as err:  # JSON and UTF-8 errors are ValueErrors
        raise UserError(f"{path}: unreadable training state ({type(err).__name__}); {fix}") from None


def restore_state(tensors: dict[str, torch.Tensor], plain: dict, optimizer, scheduler) -> None:
    """Load optimiser, scheduler and RNG states saved by ``_state_tensors_and_json``."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": plain["optimizer_param_groups"]})
    scheduler.load_state_dict(plain["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, gauss = plain["rng_numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, py_gauss = plain["rng_python"]
    random.setstate((version, tuple(internal), py_gauss))


def save_checkpoint(directory: Path, epoch: int, model: nn.Module, tokenizer: Any,
                    optimizer, scheduler, records: list[dict], settings: dict) -> list[dict]:
    """Write ``checkpoint-<epoch>`` atomically (call under the run's lock).

    Returns ``records`` with the last record's ``weights_sha256`` (of the saved weights) added.
    """
    target = checkpoint_in(directory, epoch)
    try:
        with atomic_dir(target) as tmp:
            with quiet_transformers():
                model.save_pretrained(tmp)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
            records = [*records[:-1], {**records[-1], "weights_sha256": weights_sha256(tmp)}]
            tensors, plain = _state_tensors_and_json(epoch, optimizer, scheduler, records, settings)
            save_file(tensors, str(tmp / STATE_TENSORS))
            (tmp / STATE_FILE).write_text(json.dumps(plain), encoding="utf-8")  # last: marks it complete
    except SafetensorError as err:  # disk full, ...: the OSError it wraps, naming the checkpoint
        raise as_os_error(err, target) or err from None
    return records


def last_checkpoint(directory: Path) -> int:
    """The last epoch whose checkpoint is complete (0 when none); stale temp folders removed.

    Call under the run's lock: only then are temporary folders certainly nobody's work.
    """
    for stale in directory.glob(f".{CHECKPOINT_PREFIX}*{TEMP_SUFFIX}"):
        shutil.rmtree(stale, ignore_errors=True)
    done = [int(p.name.split("-")[1]) for p in directory.glob(f"{CHECKPOINT_PREFIX}*")
            if (p / STATE_FILE).is_file() and (p / STATE_TENSORS).is_file()]
    return max(done, default=0)
