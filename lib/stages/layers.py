"""Collapse through depth: statistics and measures of every layer's residual stream.

Residual-stream index i of a model with L = n_layer blocks (``lib.lm.model.residual_features``):
i = 0 the embeddings (token + position), 0 < i < L the output of block i - 1 (= input of block
i), i = L the last block's output BEFORE the final norm. The paper's top features, the LM head's
input (the final norm's output), stay the main statistics; in tables they are the row with
``site`` "head_input" (relative depth 1, like index L, but after the norm).

Collection (``lib.stages.collect``, ``--layers all`` or ``--layers 0,2,4``) gathers, in pass 1 and from
the same forward pass, per requested index and class the float64 sums and within-class squared
deviations (``layer{i}.sums``, ``layer{i}.sq_dev`` in the stats file, sharing ``counts``): one
index-add and one Chan moment merge per layer (``lib.nc.ClassStats.add`` with ``layer_features``).
Measures per layer (``GEOMETRY``: NC1 both CDNVs, NC2 norm and interference, GNC2) come from
``lib.nc.measure.geometry_measures``; NC3, UNC3 and NC4 need a classifier and exist at the top only.
``metrics/<model>.json`` then holds ``layers``: {index: {measure: value, num_classes}}.

Example::

    table = layers_table("data/cpu", profile.checkpoints())   # one row per model x layer
    fig = depth_figure(table)                                 # measures against relative depth
    depth_summary(table)                                      # monotone? largest change where?
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from lib.core.errors import UserError
from lib.core.paths import Layout, read_json, resolve
from lib.lm.runs import RunName
from lib.nc.measure import GEOMETRY, geometry_measures
from lib.nc.registry import analysis_scale, label, measure_transform
from lib.nc.stats_file import LAYER_TENSORS, layer_key, stored_layers

LayerSpec = str | Sequence[int] | None  # None: top only; "all"; or residual-stream indices
SPEC_COLUMNS = ["name", "run", "depth", "width", "epochs", "weight_decay", "seed", "checkpoint"]
LAYER_COLUMNS = ["n_layer", "layer", "site", "relative_depth", "num_classes"]
SITES = ("residual", "head_input")  # the residual stream at an index; the final norm's output
HEAD_X = 1.25  # where the figure draws the head input, right of relative depth 1

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
    from lib.lm.model import transformer_blocks

    n_layer = len(transformer_blocks(model))
    return resolve_layers(spec, n_layer), n_layer, int(model.config.hidden_size)


def batch_features(model: nn.Module, ids: Tensor, layers: tuple[int, ...]) -> list[Tensor]:
    """[top features (B, T, D), then the residual stream of each index in ``layers``] of a
    batch, from one forward pass (``final_features`` alone without layers)."""
    from lib.lm.model import final_features, residual_features

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


def profile_layers(profile: Any, ck: RunName, fraction: float | None = None) -> tuple[int, ...]:
    """The indices a profile collects for checkpoint ``ck``: ``collect.layers`` resolved with
    its depth, for the main statistics only (not the sensitivity study's fractions)."""
    if fraction is not None and fraction < 1:
        return ()
    return resolve_layers(profile.collect.layers, ck.depth)


# ---------------------------------------------------------------------------------------------
# Measures


def layers_section(path: str | os.PathLike, device: str | torch.device = "cpu", tile: int = 2048,
                   progress: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """{"layers": {index: GEOMETRY measures and num_classes}} of a stats file's layers, reading
    one layer at a time; {} when it holds none. For ``metrics/<model>.json``."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(resolve(path)), framework="pt") as f:
        meta = f.metadata() or {}
        counts = f.get_tensor("counts")
        for i in stored_layers(meta):
            stats = {"counts": counts, **{n: f.get_tensor(layer_key(i, n)) for n in LAYER_TENSORS}}
            out[str(i)] = geometry_measures(stats, device, tile, progress)
    return {"layers": out} if out else {}


# ---------------------------------------------------------------------------------------------
# Tables, figure and summary


def _rows(metrics: dict, ck: RunName) -> list[dict]:
    spec = {"name": str(ck), "run": str(ck.run), **ck.as_dict()}
    n_layer = int(metrics.get("n_layer", ck.depth))
    rows = [{**spec, "n_layer": n_layer, "layer": int(i), "site": "residual",
             "relative_depth": int(i) / n_layer, **values}
            for i, values in sorted(metrics["layers"].items(), key=lambda kv: int(kv[0]))]
    top = {k: metrics[k] for k in (*GEOMETRY, "num_classes") if k in metrics}
    return rows + [{**spec, "n_layer": n_layer, "layer": n_layer, "site": "head_input",
                    "relative_depth": 1.0, **top}]


def layers_table(out_dir: str | os.PathLike, checkpoints: Sequence[RunName]) -> pd.DataFrame:
    """One row per model x layer of the checkpoints whose metrics hold a ``layers`` section: run
    spec, ``n_layer``, ``layer`` (residual-stream index), ``site`` ("residual", or "head_input"
    for the top features), ``relative_depth`` = layer / n_layer, ``num_classes`` and every
    ``GEOMETRY`` measure. Checkpoints measured without layers are left out (empty table if all)."""
    layout = Layout(resolve(out_dir))
    missing = [str(layout.metrics(ck)) for ck in checkpoints if not layout.metrics(ck).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} metrics files missing, e.g. {missing[0]}; run "
                                "the measure stage first")
    rows = []
    for ck in checkpoints:
        metrics = read_json(layout.metrics(ck))
        if metrics.get("layers"):
            rows += _rows(metrics, ck)
    table = pd.DataFrame(rows, columns=SPEC_COLUMNS + LAYER_COLUMNS + GEOMETRY)
    order = table["site"].map({site: i for i, site in enumerate(SITES)})  # residual, then head
    return (table.assign(_order=order)
            .sort_values(["depth", "width", "epochs", "weight_decay", "seed", "checkpoint",
                          "_order", "layer"], ignore_index=True).drop(columns="_order"))


def depth_summary(table: pd.DataFrame, measures: Sequence[str] = GEOMETRY,
                  min_blocks: int = 2) -> pd.DataFrame:
    """Per measure, over the models with at least ``min_blocks`` blocks and three residual
    layers (a single step is trivially monotone and trivially the largest): the fraction whose
    measure is monotone in depth (non-increasing or non-decreasing along the residual stream),
    the fraction falling and rising monotonically, and where the largest change between
    consecutive layers happens (on the analysis scale: the most common step "i->i+1", the
    fraction of models with it there, and the median relative depth of the step's end)."""
    res = table[table["site"] == "residual"]
    rows = []
    for measure in measures:
        falling = rising = monotone = 0
        steps, ends = [], []
        models = [g.sort_values("layer") for _, g in res.groupby("name")
                  if len(g) >= 3 and g["n_layer"].iloc[0] >= min_blocks]
        for g in models:
            d = np.diff(analysis_scale(g[measure], measure))
            falling, rising = falling + bool((d <= 0).all()), rising + bool((d >= 0).all())
            monotone += bool((d <= 0).all() or (d >= 0).all())
            j = int(np.nanargmax(np.abs(d)))
            layers = g["layer"].to_numpy()
            steps.append(f"{layers[j]}->{layers[j + 1]}")
            ends.append(layers[j + 1] / g["n_layer"].iloc[0])
        n = len(models)
        mode = pd.Series(steps).mode().iloc[0] if steps else ""
        rows.append({"measure": measure, "label": label(measure), "models": n,
                     "monotone": monotone / n if n else np.nan,
                     "falling": falling / n if n else np.nan,
                     "rising": rising / n if n else np.nan,
                     "largest_step": mode, "largest_step_share": steps.count(mode) / n if n else np.nan,
                     "largest_step_rel_depth": float(np.median(ends)) if n else np.nan})
    return pd.DataFrame(rows)


def describe_depth(summary: pd.DataFrame) -> str:
    """One sentence per measure from ``depth_summary``, for the notebook's text."""
    if summary.empty or not summary["models"].max():
        return ("No model with per-layer statistics of at least two blocks: set collect.layers "
                "in the profile and collect again.")
    lines = []
    for r in summary.itertuples():
        lines.append(f"- {r.label}: monotone in {r.monotone:.0%} of {r.models} models "
                     f"({r.falling:.0%} fall and {r.rising:.0%} rise all the way); largest "
                     f"change between residual indices {r.largest_step} in "
                     f"{r.largest_step_share:.0%} of models (median relative depth of the "
                     f"step's end {r.largest_step_rel_depth:.2f}).")
    return "\n".join(lines)


def depth_figure(table: pd.DataFrame, measures: Sequence[str] = GEOMETRY, ncols: int = 3) -> Any:
    """Each measure against relative depth (layer / n_layer): one line per model through its
    residual stream, coloured by width; a star beyond 1 marks the head input (after the final
    norm). Log scale for the log-read measures."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    from lib.figures.plots import log_axis

    n = len(measures)
    cols = max(1, min(ncols, n))
    rows_ = -(-n // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.2 * cols + 1.5, 3.4 * rows_), squeeze=False,
                             layout="constrained")
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    if table.empty:
        fig.text(0.5, 0.5, "no per-layer statistics (collect.layers not set)", ha="center")
        return fig
    widths = sorted(table["width"].unique())
    norm = LogNorm(min(widths), max(widths) * (1.0001 if len(widths) == 1 else 1))
    cmap = plt.get_cmap("viridis")
    for ax, measure in zip(flat, measures, strict=False):
        for _, g in table.groupby("name"):
            res, top = g[g["site"] == "residual"], g[g["site"] == "head_input"]
            color = cmap(norm(g["width"].iloc[0]) * 0.85)
            ax.plot(res["relative_depth"], res[measure], color=color, lw=1, alpha=0.6, marker=".")
            ax.plot([HEAD_X] * len(top), top[measure], color=color, marker="*", ls="", alpha=0.8)
        if measure_transform(measure) == "log" and (table[measure] > 0).all():
            log_axis(ax, "y")
        ax.set_xticks([0, 0.5, 1, HEAD_X], ["0", "0.5", "1", "head"])
        ax.set_title(label(measure), fontsize="medium")
        ax.set_xlabel("relative depth (layer / n_layer)", fontsize="small")
    for w in widths:
        flat[0].plot([], [], color=cmap(norm(w) * 0.85), label=f"width {w}")
    fig.legend(loc="outside right center", fontsize="small", frameon=False)
    fig.suptitle(f"Collapse through depth: {table['name'].nunique()} models, residual stream "
                 "(lines) and head input (stars)")
    return fig
