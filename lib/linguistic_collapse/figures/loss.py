"""Figures 1-3 of the paper: validation loss against each measure, one point per model coloured
by parameter count, with the loss-plateau models (``claims.plateau_mask``) drawn apart and the
least-squares fit with and without them, so a reader sees how much of a relation they carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from linguistic_collapse.figures.style import (
    LOSS_LABEL,
    PARAMS_CMAP,
    add_param_colorbar,
    log_axis,
    measure_axis_label,
    measure_label,
    panel_grid,
    param_norm,
)
from linguistic_collapse.nc.registry import measure_transform
from linguistic_collapse.tables.claims import plateau_mask
from linguistic_collapse.tables.results import LOSS

FIT_ALL = {"color": "black", "lw": 1.5, "ls": "--"}
FIT_TRAINED = {"color": "tab:red", "lw": 1.8, "ls": "-"}  # without the plateau models
PLATEAU_MARKER = "^"


def _fit(u: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(R², slope, intercept) of the least-squares line of y on u; NaNs when degenerate."""
    if len(u) < 3 or np.ptp(u) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), float("nan")
    slope, intercept = np.polyfit(u, y, 1)
    return float(np.corrcoef(u, y)[0, 1] ** 2), float(slope), float(intercept)


def _draw_fit(ax: Any, u: np.ndarray, fit: tuple[float, float, float], log_x: bool, style: dict) -> None:
    """The fitted line over the range of ``u`` (plotted coordinates: log10 on a log axis)."""
    if np.isfinite(fit[1]):
        grid = np.linspace(u.min(), u.max(), 50)
        ax.plot(10**grid if log_x else grid, fit[1] * grid + fit[2], zorder=4, **style)


# Where the R² text may go, in axes fractions, in order of preference: the four corners, then
# the middles of the four sides
PLACES = ((0.03, 0.95, "left", "top"), (0.97, 0.95, "right", "top"),
          (0.03, 0.05, "left", "bottom"), (0.97, 0.05, "right", "bottom"),
          (0.03, 0.5, "left", "center"), (0.97, 0.5, "right", "center"),
          (0.5, 0.95, "center", "top"), (0.5, 0.05, "center", "bottom"))


def _r2_text(ax: Any, lines: Sequence[str], x: np.ndarray, y: np.ndarray) -> None:
    """The R² lines where they cover the fewest of the points (x, y): of ``PLACES``, the first
    with the fewest points under the text box, ties broken by the largest distance to the
    nearest point (a corner first when several are empty)."""
    text = ax.text(0, 0, "\n".join(lines), transform=ax.transAxes, fontsize="small", zorder=5,
                   bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "0.7"})
    renderer = ax.figure.canvas.get_renderer()
    ax.get_xlim(), ax.get_ylim()  # settle the autoscaled limits before transforming
    points = ax.transData.transform(np.column_stack([x, y])) if len(x) else np.empty((0, 2))  # (n, 2) px
    pad = 6.0  # pixels: about a marker's radius
    best = None
    for cx, cy, ha, va in PLACES:
        text.set_position((cx, cy))
        text.set_ha(ha)
        text.set_va(va)
        box = text.get_window_extent(renderer).padded(pad)
        inside = ((points[:, 0] >= box.x0) & (points[:, 0] <= box.x1)
                  & (points[:, 1] >= box.y0) & (points[:, 1] <= box.y1))
        dx = np.maximum(np.maximum(box.x0 - points[:, 0], points[:, 0] - box.x1), 0)
        dy = np.maximum(np.maximum(box.y0 - points[:, 1], points[:, 1] - box.y1), 0)
        gap = float(np.hypot(dx, dy).min()) if len(points) else np.inf
        score = (int(inside.sum()), -min(gap, pad))  # clear by a further marker radius: as good
        if best is None or score < best[0]:
            best = (score, (cx, cy, ha, va))
    cx, cy, ha, va = best[1]
    text.set_position((cx, cy))
    text.set_ha(ha)
    text.set_va(va)


def _r2(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "n/a"


def _loss_panel(ax: Any, table: pd.DataFrame, measure: str, norm: LogNorm, r2: float | None,
                plateau: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One panel: loss against ``measure``, coloured by size, plateau models as triangles, the
    fit over all models (dashed) and, when there are plateau models, without them (solid).
    Returns the R² lines and the points (x, y), for ``_r2_text`` once the layout is final."""
    x, y = table[measure].to_numpy(dtype=float), table[LOSS].to_numpy(dtype=float)
    log_x = measure_transform(measure) == "log"
    keep = np.isfinite(x) & np.isfinite(y) & ((x > 0) if log_x else True)
    x, y, params, plateau = x[keep], y[keep], table["n_params"].to_numpy(dtype=float)[keep], plateau[keep]
    style = {"cmap": PARAMS_CMAP, "norm": norm, "edgecolor": "0.2", "linewidth": 0.5, "zorder": 3}
    ax.scatter(x[~plateau], y[~plateau], c=params[~plateau], s=40, marker="o", **style)
    if plateau.any():
        ax.scatter(x[plateau], y[plateau], c=params[plateau], s=70, marker=PLATEAU_MARKER, **style)
    if log_x:
        ax.set_xscale("log")
    u = np.log10(x) if log_x else x
    fit_all = _fit(u, y)
    _draw_fit(ax, u, fit_all, log_x, FIT_ALL)
    lines = [f"$R^2$ = {_r2(fit_all[0] if r2 is None else r2)}", f"n = {len(x)}"]
    if plateau.any():
        fit_trained = _fit(u[~plateau], y[~plateau])
        _draw_fit(ax, u[~plateau], fit_trained, log_x, FIT_TRAINED)
        lines = [f"{lines[0]} (all, {lines[1]})",
                 f"$R^2$ = {_r2(fit_trained[0])} (no plateau, n = {int((~plateau).sum())})"]
    if log_x and len(x):
        log_axis(ax, "x")
    ax.set_title(measure_label(measure))
    ax.set_xlabel(measure_axis_label(measure))
    ax.set_ylabel(LOSS_LABEL)
    return lines, x, y


def _plateau_legend(fig: Figure, n_plateau: int) -> None:
    """One legend for the figure: the two markers and the two fits."""
    handles = [
        Line2D([], [], marker="o", ls="", color="0.5", markeredgecolor="0.2", label="model"),
        Line2D([], [], marker=PLATEAU_MARKER, ls="", color="0.5", markeredgecolor="0.2", markersize=9,
               label=f"plateau model ({n_plateau})"),
        Line2D([], [], label="fit, all models", **FIT_ALL),
        Line2D([], [], label="fit without plateau models", **FIT_TRAINED),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize="small", frameon=False)


def loss_vs_measures(table: pd.DataFrame, measures: Sequence[str],
                     correlations: pd.DataFrame | None = None, ncols: int = 4) -> Figure:
    """Figures 1-3: validation loss (y) against each measure (x), one point per model coloured by
    parameter count, least-squares line and R² (from ``correlations`` when given) per panel;
    plateau models as triangles with a second fit and R² without them."""
    if len(table) == 0 or not measures:
        raise ValueError("loss_vs_measures needs a non-empty table and at least one measure")
    r2_of = {} if correlations is None else dict(zip(correlations["measure"], correlations["r2"], strict=True))
    plateau, _ = plateau_mask(table)
    fig, axes = panel_grid(len(measures), ncols)
    norm = param_norm(table["n_params"])
    texts = [_loss_panel(ax, table, measure, norm, r2_of.get(measure), plateau)
             for ax, measure in zip(axes, measures, strict=True)]
    add_param_colorbar(fig, axes, norm)
    if plateau.any():
        _plateau_legend(fig, int(plateau.sum()))
    fig.draw_without_rendering()  # the constrained layout: the axes' final sizes
    for ax, (lines, x, y) in zip(axes, texts, strict=True):
        _r2_text(ax, lines, x, y)
    return fig
