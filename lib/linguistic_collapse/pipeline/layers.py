"""Collapse through depth: statistics and measures of every layer's residual stream.

Residual-stream index i of a model with L = n_layer blocks (``linguistic_collapse.lm.residual.residual_features``):
i = 0 the embeddings (token + position), 0 < i < L the output of block i - 1 (= input of block
i), i = L the last block's output BEFORE the final norm. The paper's top features, the LM head's
input (the final norm's output), stay the main statistics; in tables they are the row with
``site`` "head_input" (relative depth 1, like index L, but after the norm).

Collection (``linguistic_collapse.pipeline.collect``, ``--layers all`` or ``--layers 0,2,4``) gathers, in pass 1 and from
the same forward pass, per requested index and class the float64 sums and within-class squared
deviations (``layer{i}.sums``, ``layer{i}.sq_dev`` in the stats file, sharing ``counts``): one
index-add and one Chan moment merge per layer (``linguistic_collapse.nc.ClassStats.add`` with ``layer_features``).
Measures per layer (``GEOMETRY``: NC1 both CDNVs, NC2 norm and interference, GNC2) come from
``linguistic_collapse.nc.measure.measure_stats`` (``which=GEOMETRY``); NC3, UNC3 and NC4 need a classifier and exist at the top only.
``metrics/<model>.json`` then holds ``layers``: {index: {measure: value, num_classes}}.

Example::

    table = depth.layers_table("data/cpu", profile.checkpoints())  # linguistic_collapse.tables.depth
    fig = depth_figure(table)                  # linguistic_collapse.figures.depth
    depth.depth_summary(table)                 # monotone? largest change where?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.lm.head import final_features
from linguistic_collapse.lm.residual import residual_features, transformer_blocks
from linguistic_collapse.nc.measure import measure_stats
from linguistic_collapse.nc.registry import GEOMETRY
from linguistic_collapse.nc.stats_file import LAYER_TENSORS, layer_key, stored_layers

LayerSpec = str | Sequence[int] | None  # None: top only; "all"; or residual-stream indices

# ---------------------------------------------------------------------------------------------
# Which layers


def parse_layers_arg(text: str) -> str | tuple[int, ...]:
    """Command-line ``--layers``: "all" or comma-separated indices ("0,2,4")."""
    if text.strip() == "all":
        return "all"
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--layers must be 'all' or indices like 0,2,4, got {text!r}") from None
    return layers


def resolve_layers(spec: LayerSpec, n_layer: int) -> tuple[int, ...]:
    """The sorted residual-stream indices ``spec`` names for a model of ``n_layer`` blocks:
    () for None, 0..n_layer for "all"; UserError for an index outside 0..n_layer."""
    if spec is None:
        return ()
    if isinstance(spec, str):
        if spec != "all":
            return resolve_layers(parse_layers_arg(spec), n_layer)
        return tuple(range(n_layer + 1))
    layers = tuple(sorted({int(i) for i in spec}))
    bad = [i for i in layers if not 0 <= i <= n_layer]
    if bad:
        raise UserError(f"layers {bad} outside the residual-stream indices 0..{n_layer} of a "
                        f"{n_layer}-block model (0 = embeddings, {n_layer} = last block's output)")
    return layers


def model_layers(model: nn.Module, spec: LayerSpec) -> tuple[tuple[int, ...], int, int]:
    """(indices, n_layer, residual width) of ``spec`` for ``model``; ((), 0, 0) for None, without
    looking at the model (top-only collection works for any causal LM)."""
    if spec is None or (not isinstance(spec, str) and len(spec) == 0):
        return (), 0, 0

    n_layer = len(transformer_blocks(model))
    return resolve_layers(spec, n_layer), n_layer, int(model.config.hidden_size)


def batch_features(model: nn.Module, ids: Tensor, layers: tuple[int, ...]) -> list[Tensor]:
    """[top features (B, T, D), then the residual stream of each index in ``layers``] of a
    batch, from one forward pass (``final_features`` alone without layers)."""
    if not layers:
        return [final_features(model, ids)]
    top, streams = residual_features(model, ids, layers)
    return [top, *streams]


def check_same_layers(meta: dict[str, str], layer_meta: dict[str, str], where: Path) -> None:
    """UserError when a finished pass 1 in ``where`` holds other layers than this run asks."""
    have, want = meta.get("layers", ""), layer_meta.get("layers", "")
    if have != want:
        raise UserError(f"{where} holds pass 1 with layers {have or 'none'}, not {want or 'none'}"
                        ": use another output path or delete the file")


def layer_metadata(layers: tuple[int, ...], n_layer: int) -> dict[str, str]:
    """Stats metadata of collected layers; {} without layers, so such files are unchanged."""
    return {"layers": ",".join(map(str, layers)), "n_layer": str(n_layer)} if layers else {}


def profile_layers(profile: Any, ck: ModelName, fraction: float | None = None) -> tuple[int, ...]:
    """The indices a profile collects for checkpoint ``ck``: ``collect.layers`` resolved with
    its depth, for the main statistics only (not the sensitivity study's fractions)."""
    if fraction is not None and fraction < 1:
        return ()
    return resolve_layers(profile.collect.layers, ck.depth)


# ---------------------------------------------------------------------------------------------
# Measures


def layers_section(tensors: Mapping[str, Tensor], meta: Mapping[str, str],
                   device: str | torch.device = "cpu", tile: int = 2048,
                   progress: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """{"layers": {index: GEOMETRY measures and num_classes}} of the layers of a stats file
    already read verified (``read_stats``' tensors and metadata, so the file is read once for
    every section of ``metrics/<model>.json``); {} when it holds none."""
    out = {str(i): measure_stats({"counts": tensors["counts"],
                                  **{n: tensors[layer_key(i, n)] for n in LAYER_TENSORS}},
                                 GEOMETRY, device=device, tile=tile, progress=progress)[0]
           for i in stored_layers(meta)}
    return {"layers": out} if out else {}
