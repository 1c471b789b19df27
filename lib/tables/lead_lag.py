"""Lead and lag through training: when each measure and the loss reach (and keep) a level of
their total change, and the lagged cross-correlation of their changes (``08_dynamics``).

Reads the dynamics table of ``lib.stages.dynamics``; no torch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lib.nc.registry import MEASURES, analysis_scale, label
from lib.tables.results import LOSS

LEVEL = 0.9  # lead/lag: the fraction of the total change a quantity must reach and keep
LAG_COLUMNS = ["run", "measure", "step_measure", "step_loss", "tokens_measure", "tokens_loss",
               "lag_steps", "lag_tokens", "xcorr_lag", "xcorr_r", "settles"]


def level_crossing(x: Sequence[float], y: Sequence[float], level: float = LEVEL) -> float:
    """The x from which ``y`` has covered ``level`` of its total change y[-1] - y[0] and stays
    there (the last time it is short of it, interpolated linearly to the next sample); NaN
    without change. A settling time, robust to early overshoots."""
    if not 0 < level <= 1:
        raise ValueError(f"level must lie in (0, 1], got {level}")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(y) < 2 or y[-1] == y[0]:
        return math.nan
    frac = (y - y[0]) / (y[-1] - y[0])  # 0 at the start, 1 at the end
    i = np.nonzero(frac < level)[0][-1]  # frac[0] = 0 < level, frac[-1] = 1 >= level
    return float(x[i] + (level - frac[i]) / (frac[i + 1] - frac[i]) * (x[i + 1] - x[i]))


def diff_xcorr(a: Sequence[float], b: Sequence[float], max_lag: int) -> tuple[int, float]:
    """(k, r): the lag in samples maximising |corr(diff(a)[t], diff(b)[t - k])| and that
    correlation; k > 0 means the changes of ``a`` follow those of ``b``. Ties go to the
    smaller |k|; (0, NaN) when no lag has three overlapping, non-constant differences."""
    da, db = np.diff(np.asarray(a, dtype=float)), np.diff(np.asarray(b, dtype=float))
    best = (0, math.nan)
    for k in sorted(range(-max_lag, max_lag + 1), key=lambda k: (abs(k), k)):
        u, v = (da[k:], db[:len(db) - k]) if k >= 0 else (da[:k], db[-k:])
        if len(u) < 3 or np.std(u) == 0 or np.std(v) == 0:
            continue
        r = float(np.corrcoef(u, v)[0, 1])
        if math.isnan(best[1]) or abs(r) > abs(best[1]) + 1e-12:
            best = (k, r)
    return best


def lead_lag(table: pd.DataFrame, measure: str, loss: str = LOSS, level: float = LEVEL,
             max_lag: int | None = None, start_step: int = 0) -> dict[str, float]:
    """When ``measure`` settles relative to ``loss`` in one run's table (rows in step order).

    ``step_measure``/``step_loss`` (and ``tokens_*``): where each has covered ``level`` of its
    total change for good (``level_crossing``; the measure on its analysis scale); ``lag_steps``
    = step_measure - step_loss (> 0: the measure settles after the loss). ``xcorr_lag``: the lag
    in snapshots maximising the correlation of the two series' changes (> 0: the measure's
    changes follow the loss's), ``xcorr_r`` that correlation; ``max_lag`` defaults to a quarter
    of the differences. ``start_step``: changes counted from that snapshot on (0: from the
    initialisation, where some measures are degenerate).
    """
    if table["run"].nunique() > 1:
        raise ValueError(f"lead_lag takes one run's table; got runs {list(table['run'].unique())}")
    t = table[table["step"] >= start_step].sort_values("step")
    m, y = analysis_scale(t[measure], measure), t[loss].to_numpy(dtype=float)
    out: dict[str, float] = {}
    for x in ("step", "tokens_seen"):
        key = "step" if x == "step" else "tokens"
        out[f"{key}_measure"] = level_crossing(t[x], m, level)
        out[f"{key}_loss"] = level_crossing(t[x], y, level)
    out["lag_steps"] = out["step_measure"] - out["step_loss"]
    out["lag_tokens"] = out["tokens_measure"] - out["tokens_loss"]
    ok = np.isfinite(m) & np.isfinite(y)
    k, r = diff_xcorr(m[ok], y[ok], max_lag if max_lag is not None else max(1, (ok.sum() - 1) // 4))
    out["xcorr_lag"], out["xcorr_r"] = float(k), r
    return out


def lead_lag_table(table: pd.DataFrame, measures: Sequence[str] | None = None,
                   level: float = LEVEL, start_step: int = 0) -> pd.DataFrame:
    """``lead_lag`` of every measure in every run, with a verdict: "after"/"before" the loss when
    the settling steps differ by more than one snapshot interval, else "with"."""
    rows = []
    for run, g in table.groupby("run", sort=False):
        spacing = float(np.median(np.diff(np.sort(g["step"].to_numpy())))) if len(g) > 1 else 0.0
        for measure in measures or [m for m in MEASURES if m in g.columns]:
            r = lead_lag(g, measure, level=level, start_step=start_step)
            lag = r["lag_steps"]
            verdict = ("-" if not np.isfinite(lag) else "after" if lag > spacing
                       else "before" if lag < -spacing else "with")
            rows.append({"run": run, "measure": measure, **r, "settles": verdict})
    return pd.DataFrame(rows, columns=LAG_COLUMNS)


def summary_markdown(lags: pd.DataFrame, level: float = LEVEL) -> Any:
    """One line per run: which measures settle before, with and after the validation loss."""
    from IPython.display import Markdown

    if lags.empty:
        return Markdown("No dynamics runs in this profile (its `dynamics.runs` is empty).")
    lines = []
    for run, g in lags.groupby("run", sort=False):
        names = {v: ", ".join(label(m) for m in g.loc[g["settles"] == v, "measure"])
                 for v in ("before", "with", "after")}
        loss_step = g["step_loss"].iloc[0]
        lines.append(f"- **{run}**: the loss covers {level:.0%} of its change by step "
                     f"{loss_step:.0f}. Before it: {names['before'] or 'none'}. With it (within "
                     f"one snapshot): {names['with'] or 'none'}. After it: "
                     f"{names['after'] or 'none'}.")
    return Markdown("\n".join(lines))
