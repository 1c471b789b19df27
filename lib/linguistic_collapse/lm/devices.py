"""Where tensors run: one device rule and one inference precision for the whole library."""

from __future__ import annotations

import contextlib
import os

import torch

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc.accumulate import (
    resolve_device,  # the one device rule, kept in the core
)

__all__ = ["compute_dtype", "inference_autocast", "resolve_device"]


def inference_autocast(device: torch.device):
    """bf16 autocast for forward passes on CUDA; full precision (no context) on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compute_dtype(model: torch.nn.Module, device: torch.device) -> str:
    """The precision features are computed in, as recorded in a stats file: the parameters'
    dtype ("float32" for every model ``load_causal_lm`` loads), plus " under bfloat16 autocast"
    on CUDA (``inference_autocast``)."""
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return dtype + (" under bfloat16 autocast" if device.type == "cuda" else "")


THREADS_ENV = "LC_TORCH_THREADS"


def apply_thread_setting() -> int:
    """Set torch's CPU threads from ``$LC_TORCH_THREADS`` when given; returns the count in use.

    Float sums depend on how a reduction is split across threads, so another thread count
    reproduces another CPU's last-bit drift: CI runs the notebooks so to prove they do not
    depend on it."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise UserError(f"{THREADS_ENV}={value!r}: give a positive whole number of threads, or unset it")
        torch.set_num_threads(int(value))
    return torch.get_num_threads()
