"""The figures of ``01_train``: training curves (seed replicas distinguishable) and the final
validation loss by depth x width on one shared colour scale, in the style of
``linguistic_collapse.figures.style``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.figure import Figure

from linguistic_collapse.core.names import ModelName
from linguistic_collapse.figures.style import (
    LOSS_LABEL,
    PARAMS_CMAP,
    add_param_colorbar,
    panel_grid,
    param_norm,
)
from linguistic_collapse.tables.results import LOSS


def _replica_groups(names: Sequence[str]) -> set[str]:
    """Runs whose architecture and variant were trained with more than one shuffling seed."""
    groups: dict[tuple, list[str]] = {}
    for name in names:
        try:
            run = ModelName.parse(name)
        except ValueError:
            continue
        groups.setdefault((run.depth, run.width, run.epochs, run.weight_decay), []).append(name)
    return {n for members in groups.values() if len(members) > 1 for n in members}


def training_curves(results_by_run: Mapping[str, Mapping[str, Any]]) -> Figure:
    """Validation loss and accuracy per epoch for every run (``models/<run>/results.json``),
    coloured by parameter count; seed-only replicas offset to the right (one offset per seed) with
    open markers and thin dashed lines, so each stays visible."""
    if not results_by_run:
        raise ValueError("no runs to plot; pass results.load_run_results(out_dir)")
    norm = param_norm([r["n_params"] for r in results_by_run.values()])
    replicas = sorted(_replica_groups(list(results_by_run)))
    offsets = dict(zip(replicas, np.linspace(0.06, 0.3, len(replicas)) if len(replicas) > 1 else [0.06],
                       strict=False))  # to the right of the epoch, one offset per replica
    fig, axes = panel_grid(2, 2)
    for name, results in results_by_run.items():
        cks = sorted(results["checkpoints"], key=lambda c: c["epoch"])
        color = plt.get_cmap(PARAMS_CMAP)(norm(results["n_params"]))
        is_rep = name in offsets
        epochs = [c["epoch"] + offsets.get(name, 0.0) for c in cks]
        style = ({"marker": "o", "mfc": "white", "ms": 5, "lw": 0.8, "ls": "--", "alpha": 0.9} if is_rep
                 else {"marker": "o", "ms": 6, "lw": 1.8, "alpha": 0.85})
        axes[0].plot(epochs, [c["val_loss"] for c in cks], color=color, **style)
        axes[1].plot(epochs, [100 * c["val_acc"] for c in cks], color=color, **style)
    for ax, ylabel, title in zip(axes, [LOSS_LABEL, "validation top-1 accuracy (%)"],
                                 ["Validation loss", "Validation accuracy"], strict=True):
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    if replicas:
        axes[0].plot([], [], marker="o", mfc="white", ls="--", color="0.3",
                     label=f"{len(replicas)} seed replicas (offset to the right)")
        axes[0].plot([], [], marker="o", ls="-", color="0.3", label="grid runs")
        axes[0].legend(loc="best", fontsize="x-small")
    add_param_colorbar(fig, axes, norm)
    return fig


def _final_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["checkpoint"] == table["epochs"]]


def loss_grid_heatmap(table: pd.DataFrame, epochs: int | None = None,
                      weight_decay: float | None = None, vmin: float | None = None,
                      vmax: float | None = None, ax: Any = None, cbar: bool = True) -> Figure:
    """Validation loss over depth x width for one variant (final checkpoint, mean over seeds);
    ``vmin``/``vmax`` fix the colour scale (shared across variants by ``loss_grid_heatmaps``)."""
    # heavy (seaborn): loaded only when a heatmap is drawn
    import seaborn as sns

    rows = _final_rows(table)
    if epochs is not None:
        rows = rows[rows["epochs"] == epochs]
    if weight_decay is not None:
        rows = rows[np.isclose(rows["weight_decay"].astype(float), weight_decay, rtol=1e-9, atol=0)]
    variants = sorted(set(zip(rows["epochs"], rows["weight_decay"], strict=True)))
    if len(variants) != 1:
        raise ValueError(f"loss_grid_heatmap needs exactly one variant, found (epochs, weight_decay) "
                         f"{variants}; pass epochs= and weight_decay=")
    grid = rows.pivot_table(index="depth", columns="width", values=LOSS, aggfunc="mean")  # (L, d)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.3 * grid.shape[1] + 3, 0.9 * grid.shape[0] + 2))
    else:
        fig = ax.figure
    sns.heatmap(grid, annot=True, fmt=".2f", cmap="rocket_r", ax=ax, vmin=vmin, vmax=vmax, cbar=cbar,
                cbar_kws={"label": LOSS_LABEL} if cbar else None)
    ep, wd = variants[0]
    ax.set(xlabel="width d", ylabel="depth L", title=f"{ep} epoch{'s' if ep != 1 else ''}, weight decay {wd:g}")
    return fig


def loss_grid_heatmaps(table: pd.DataFrame, ncols: int = 2) -> Figure:
    """Validation loss over depth x width, one panel per variant (epochs, weight decay), all on
    one colour scale with one colour bar (final checkpoints, mean over seeds)."""
    rows = _final_rows(table)
    variants = sorted(set(zip(rows["epochs"], rows["weight_decay"], strict=True)))
    if not variants:
        raise ValueError("loss_grid_heatmaps needs finished runs (checkpoint == epochs)")
    means = rows.groupby(["epochs", "weight_decay", "depth", "width"])[LOSS].mean()
    vmin, vmax = float(means.min()), float(means.max())
    n_d, n_w = rows["depth"].nunique(), rows["width"].nunique()
    fig, axes = panel_grid(len(variants), ncols, panel_size=(1.2 * n_w + 2.0, 0.8 * n_d + 1.6))
    for ax, (ep, wd) in zip(axes, variants, strict=True):
        loss_grid_heatmap(rows, epochs=ep, weight_decay=wd, vmin=vmin, vmax=vmax, ax=ax, cbar=False)
    mappable = plt.cm.ScalarMappable(norm=plt.Normalize(vmin, vmax), cmap="rocket_r")
    bar = fig.colorbar(mappable, ax=axes, label=LOSS_LABEL, shrink=0.9)
    inner = [t for t in ticker.MaxNLocator(4).tick_values(vmin, vmax)
             if vmin + 0.12 * (vmax - vmin) < t < vmax - 0.12 * (vmax - vmin)]
    bar.set_ticks([vmin, *inner, vmax], labels=[f"{t:.2f}" for t in (vmin, *inner, vmax)])
    fig.suptitle("Final validation loss by depth × width (one colour scale; mean over seeds)")
    return fig
