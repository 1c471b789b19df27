"""Loading any causal LM for measurement, from a local folder or a hub id, in float32 and eval
mode, without ever running code from a model folder or unpickling its weights."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from linguistic_collapse.core.errors import UserError, as_os_error, error_line
from linguistic_collapse.lm.hub import from_hub, is_hub_name, local_model_dir

MEASURE_DTYPE = torch.float32  # parameters of every model loaded for measurement
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")  # torch.save pickles


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars (weight loading, shard writing) inside our own bars."""
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def check_model_folder(folder: Path) -> None:
    """``UserError`` in one line when loading ``folder`` would run code from it (its config or
    tokenizer config names its own classes: ``auto_map``) or unpickle its weights; nothing from
    a data folder is ever executed, and no prompt is ever shown."""
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{path} is not valid JSON; save the model again with "
                            "save_pretrained") from None
        if isinstance(config, dict) and "auto_map" in config:
            raise UserError(f"{path} names custom code (auto_map), which this project never "
                            "runs; use a model whose architecture transformers ships")
    if not any(folder.glob("*.safetensors")) and any(
            p for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern)):
        raise UserError(f"{folder} holds pickle weights ({', '.join(PICKLE_WEIGHTS)}), which this "
                        "project never loads; convert them to safetensors on a machine you trust "
                        "(model.save_pretrained(folder, safe_serialization=True))")


def check_weight_headers(folder: Path) -> None:
    """``UserError`` in one line naming the file when a ``*.safetensors`` of ``folder`` has a
    header safetensors cannot read (truncated, damaged, or claiming impossible sizes); only
    the headers are read, nothing is allocated."""
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except SafetensorError as err:
            raise UserError(f"{path} is not a readable safetensors file ({error_line(err)[:160]}); "
                            "save the model again with save_pretrained") from None


def refused_code(what: str, name: str | Path, err: Exception) -> UserError:
    """The one line for a model that transformers cannot load without running its own code."""
    return UserError(f"{what} {name}: transformers cannot load it without running code from it "
                     f"({error_line(err)}); this project never does: use a model whose "
                     "architecture transformers ships, saved as safetensors")


def load_causal_lm(name_or_path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None, *, revision: str | None = None) -> nn.Module:
    """Load a causal LM from a local folder (``save_pretrained``) or a hub id, in eval mode.

    ``revision``: a hub branch, tag or commit (e.g. Pythia's "step1000"); hub ids only.
    ``dtype`` None loads float32 whatever the checkpoint's storage dtype and transformers'
    default (``MEASURE_DTYPE``: measurement runs in float32 on CPU, under bf16 autocast on CUDA;
    ``linguistic_collapse.lm.devices.compute_dtype`` names the precision of the features). A hub
    id that is neither cached nor reachable (HF_HUB_OFFLINE, no network) raises a one-line
    ``UserError`` at once (``lm.hub.from_hub``); a missing local path raises
    ``FileNotFoundError``.
    """
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers import AutoModelForCausalLM

    def load(source: str, **kwargs) -> nn.Module:
        with quiet_transformers():
            try:
                return AutoModelForCausalLM.from_pretrained(source, dtype=dtype or MEASURE_DTYPE,
                                                            trust_remote_code=False, **kwargs)
            except pickle.UnpicklingError as err:
                raise UserError(f"model {source}: its weights are a pickle that is not plain "
                                f"tensors ({error_line(err)[:80]}...); this project never "
                                "unpickles them: convert them to safetensors on a machine you "
                                "trust") from None
            except ValueError as err:
                if "trust_remote_code" in str(err) or "model type" in str(err):
                    raise refused_code("model", source, err) from None
                raise
            except (RuntimeError, OverflowError, MemoryError) as err:  # e.g. sizes it cannot build
                if as_os_error(err) is not None:
                    raise
                raise UserError(f"model {source}: cannot be built from its config.json and "
                                f"weights ({error_line(err)[:160]}); check the sizes in its "
                                "config.json, or save the model again with save_pretrained"
                                ) from None

    local = local_model_dir(name_or_path)
    if local is not None:
        if revision is not None:
            raise UserError(f"revision {revision!r} applies to hub models, but {name_or_path} is a "
                            "local folder; drop the revision or pass the hub id")
        if local.is_dir():
            check_model_folder(local)
            check_weight_headers(local)
        try:
            model = load(str(local))
        except OSError as err:
            raise FileNotFoundError(f"could not load a causal LM from {local}: "
                                    f"{error_line(err)}") from err
    elif is_hub_name(name_or_path):
        model = from_hub(load, str(name_or_path), revision, what="model")
    else:
        raise FileNotFoundError(f"no model checkpoint at {name_or_path}; train it first or fix the path")
    return model.to(device=device, dtype=dtype or MEASURE_DTYPE).eval()
