"""How every figure looks: one style (``apply_style``), measure labels through mathtext
(``measure_label``), readable log and symmetric-log axes, the parameter-count colour scale and
its colour bar, a grid of panels (``panel_grid``). Figures are written by
``linguistic_collapse.figures.save``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from linguistic_collapse.figures.save import SVG_SALT
from linguistic_collapse.nc.registry import REGISTRY, axis_label

PARAMS_CMAP = "viridis"
LOSS_LABEL = "validation loss (nats/token)"

# A symbol with a subscript and an optional ⁺ in a registry label ("Σ_W", "Σ_B⁺", "μ_c"):
# drawn as mathtext, so matplotlib sets a subscript instead of printing the underscore.
_SUBSCRIPTED = re.compile(r"([A-Za-zΣΛμσ])_([A-Za-z0-9]+)(⁺?)")
_GREEK = {"Σ": r"\Sigma", "Λ": r"\Lambda", "μ": r"\mu", "σ": r"\sigma"}


def math_label(text: str) -> str:
    r"""``text`` for a matplotlib label: every ``X_y`` (and ``X_y⁺``) as mathtext
    (``Tr(Σ_W Σ_B⁺)/K`` -> ``Tr($\Sigma_{W}$ $\Sigma_{B}^{+}$)/K``); other text unchanged."""
    def tex(match: re.Match) -> str:
        base, sub, plus = match.groups()
        return f"${_GREEK.get(base, base)}_{{{sub}}}{'^{+}' if plus else ''}$"

    return _SUBSCRIPTED.sub(tex, text)


def measure_label(measure: str) -> str:
    """The registry's label of a measure (the column name otherwise), ready for matplotlib."""
    info = REGISTRY.get(measure)
    return math_label(info.label if info else measure)


def measure_axis_label(measure: str) -> str:
    """The registry's axis label of a measure (the column name otherwise), ready for matplotlib."""
    return math_label(axis_label(measure) if measure in REGISTRY else measure)


def apply_style() -> None:
    """One style for every figure: seaborn whitegrid, talk-sized fonts, constrained layout."""
    # heavy (seaborn): loaded only when figures are styled
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="talk", font_scale=0.8)
    plt.rcParams.update({
        "figure.constrained_layout.use": True,
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "axes.titleweight": "bold",
        "svg.hashsalt": SVG_SALT,
    })


def param_norm(n_params: Sequence[float]) -> LogNorm:
    """Log-normalised colour scale over parameter counts (widened when all are equal)."""
    v = np.asarray(n_params, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if len(v) == 0:
        raise ValueError("no positive parameter counts to colour by")
    low, high = float(v.min()), float(v.max())
    if low == high:
        low, high = low / 1.5, high * 1.5
    return LogNorm(vmin=low, vmax=high)


def human_count(n: float) -> str:
    """12_300 -> '12.3k', 4.5e6 -> '4.5M' (parameter counts on colour bars)."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.3g}"


def _geometric_ticks(low: float, high: float, n: int = 4) -> list[float]:
    """About ``n`` readable log-spaced ticks in [low, high]: 1-2-5 multiples of powers of ten
    (denser 1-1.5-2-3-5-7 when the range is narrow), thinned to at most ``n + 1``."""
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0 or high <= low:
        return [low] if np.isfinite(low) else []
    ticks: list[float] = []
    for mantissas in ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)):
        ticks = [m * 10.0**e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
                 for m in mantissas]
        ticks = sorted({float(f"{t:.3g}") for t in ticks if low * 0.999 <= t <= high * 1.001})
        if len(ticks) >= 3:
            break
    if len(ticks) < 3:  # under a factor of ~2: evenly spaced round numbers
        ticks = [float(f"{t:.3g}") for t in ticker.MaxNLocator(n).tick_values(low, high)
                 if low * 0.999 <= t <= high * 1.001]
    if len(ticks) > n + 1:
        idx = np.unique(np.round(np.linspace(0, len(ticks) - 1, n)).astype(int))
        ticks = [ticks[i] for i in idx]
    return ticks if ticks else [float(f"{math.sqrt(low * high):.2g}")]


def log_axis(ax: Any, axis: str = "x") -> None:
    """A log axis with one label per tick: default decades when the data spans two or more,
    otherwise a few 1-2-5 ticks in plain numbers; minor ticks never labelled."""
    getattr(ax, f"set_{axis}scale")("log")
    low, high = sorted(getattr(ax, f"get_{axis}lim")())
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_minor_formatter(ticker.NullFormatter())
    if high / low >= 100:
        return
    target.set_major_locator(ticker.FixedLocator(_geometric_ticks(low, high)))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))


def symlog_axis(ax: Any, linthresh: float, axis: str = "y") -> None:
    """A symmetric-log axis (linear within ±``linthresh``) with a few plain-number ticks: its
    default decade ticks leave a range inside one decade with only minor labels in scientific
    form; minor ticks are never labelled."""
    getattr(ax, f"set_{axis}scale")("symlog", linthresh=linthresh)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(ticker.MaxNLocator(5))
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    target.set_minor_formatter(ticker.NullFormatter())


def end_labelled_ticks(low: float, high: float, n: int = 4) -> list[float]:
    """Ticks for a log colour bar: both ends exactly, plus readable inner values that keep at
    least 12 % of the log range away from the ends (so labels never collide)."""
    span = math.log10(high / low)
    inner = [t for t in _geometric_ticks(low, high, n)
             if min(math.log10(t / low), math.log10(high / t)) > 0.12 * span]
    return [low, *inner, high]


def add_param_colorbar(fig: Figure, axes: Any, norm: LogNorm) -> Any:
    """A colour bar for parameter count shared by ``axes``, labelled at both ends ('82k' ...
    '1.07M') and at a few round values in between."""
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=PARAMS_CMAP)
    bar = fig.colorbar(mappable, ax=axes, label="parameters", shrink=0.9)
    bar.set_ticks(end_labelled_ticks(norm.vmin, norm.vmax))
    bar.ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: human_count(v)))
    bar.ax.yaxis.set_minor_locator(ticker.NullLocator())
    bar.ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    return bar


def panel_grid(n_panels: int, ncols: int, panel_size: tuple[float, float] = (4.6, 3.9)) -> tuple[Figure, list]:
    """A figure with ``n_panels`` axes in rows of ``ncols``; unused axes removed."""
    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols + 1.2, panel_size[1] * nrows),
                             squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.remove()
    return fig, flat[:n_panels]
