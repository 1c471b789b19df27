"""Collapse through depth as tables: one row per model x layer from the metrics files, and
whether each measure is monotone in depth and where it changes most (``07_layers``).

The statistics and per-layer measures come from ``lib.stages.layers``; no torch."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lib.core.paths import Layout, read_json, resolve
from lib.lm.runs import RunName
from lib.nc.registry import GEOMETRY, analysis_scale, label

SPEC_COLUMNS = ["name", "run", "depth", "width", "epochs", "weight_decay", "seed", "checkpoint"]
LAYER_COLUMNS = ["n_layer", "layer", "site", "relative_depth", "num_classes"]
SITES = ("residual", "head_input")  # the residual stream at an index; the final norm's output


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
