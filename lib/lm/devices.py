"""Where tensors run: one device rule and one inference precision for the whole library."""

from __future__ import annotations

import contextlib

import torch

from lib.nc.accumulate import resolve_device  # the one device rule, kept in the core

__all__ = ["inference_autocast", "resolve_device"]


def inference_autocast(device: torch.device):
    """bf16 autocast for forward passes on CUDA; full precision (no context) on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
