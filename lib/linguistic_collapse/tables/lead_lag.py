"""Lead and lag through training: when each measure and the loss reach (and keep) a level of
their total change, and the lagged cross-correlation of their changes (``08_dynamics``).

Reads the dynamics table of ``linguistic_collapse.pipeline.dynamics``; no torch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from linguistic_collapse.nc.registry import MEASURES, analysis_scale, label
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.results import LOSS

LEVEL = 0.9  # lead/lag: the fraction of the total change a quantity must reach and keep
LEVELS = (0.8, 0.9, 0.95)  # the thresholds a robust statement must survive
# Where the total change starts: at the initialisation (step 0), or at the first snapshot after
# it (some measures are degenerate at random initialisation, e.g. a CV whose mean is near 0).
BASELINES = ("initialisation", "first snapshot")
LAG_COLUMNS = ["run", "baseline", "threshold", "measure", "step_measure", "step_loss",
               "tokens_measure", "tokens_loss", "lag_steps", "lag_tokens", "xcorr_lag", "xcorr_r",
               "settles"]
VERDICTS = ("before", "with", "after")


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


def baseline_step(steps: Sequence[int], baseline: str) -> int:
    """The first step counted under ``baseline``: the first snapshot ("initialisation"), or the
    first one after it ("first snapshot")."""
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    steps = np.unique(np.asarray(steps))
    if baseline == "initialisation" or len(steps) < 2:
        return int(steps[0]) if len(steps) else 0
    return int(steps[1])


def lead_lag_table(table: pd.DataFrame, measures: Sequence[str] | None = None,
                   level: float = LEVEL, baseline: str = "initialisation") -> pd.DataFrame:
    """``lead_lag`` of every measure in every run, changes counted from ``baseline``
    (``baseline_step``), with a verdict: "after"/"before" the loss when the settling steps differ
    by more than one snapshot interval, else "with"."""
    rows = []
    for run, g in table.groupby("run", sort=False):
        spacing = float(np.median(np.diff(np.sort(g["step"].to_numpy())))) if len(g) > 1 else 0.0
        start = baseline_step(g["step"], baseline)
        for measure in measures or [m for m in MEASURES if m in g.columns]:
            r = lead_lag(g, measure, level=level, start_step=start)
            lag = r["lag_steps"]
            verdict = ("-" if not np.isfinite(lag) else "after" if lag > spacing
                       else "before" if lag < -spacing else "with")
            rows.append({"run": run, "baseline": baseline, "threshold": level, "measure": measure,
                         **r, "settles": verdict})
    return pd.DataFrame(rows, columns=LAG_COLUMNS)


def lead_lag_settings(table: pd.DataFrame, measures: Sequence[str] | None = None,
                      levels: Sequence[float] = LEVELS,
                      baselines: Sequence[str] = BASELINES) -> pd.DataFrame:
    """``lead_lag_table`` under every baseline x threshold, stacked (baseline, then threshold)."""
    parts = [lead_lag_table(table, measures, level=lv, baseline=b)
             for b in baselines for lv in levels]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=LAG_COLUMNS)


def robust_verdicts(lags: pd.DataFrame) -> pd.DataFrame:
    """Per run and measure over the settings in ``lags``: how many settings give each verdict;
    ``robust``, the verdict when every setting gives the same one, else "mixed"; and the weaker
    one-sided statements ``never_before`` (no setting says "before") and ``never_after``."""
    rows = []
    for (run, measure), g in lags.groupby(["run", "measure"], sort=False):
        counts = g["settles"].value_counts()
        verdicts = set(g["settles"])
        rows.append({"run": run, "measure": measure, "settings": len(g),
                     **{v: int(counts.get(v, 0)) for v in VERDICTS},
                     "robust": next(iter(verdicts)) if len(verdicts) == 1 else "mixed",
                     "never_before": verdicts <= {"with", "after"},
                     "never_after": verdicts <= {"with", "before"}})
    return pd.DataFrame(rows, columns=["run", "measure", "settings", *VERDICTS, "robust",
                                       "never_before", "never_after"])


def robust_statements(robust: pd.DataFrame) -> pd.DataFrame:
    """Per measure: the verdict of every run; ``all_runs``, the verdict that holds in every run
    under every setting (else "none"); ``never_before``/``never_after`` in every run."""
    order = list(dict.fromkeys(robust["measure"]))
    wide = robust.pivot(index="measure", columns="run", values="robust").reindex(order)
    agree = wide.apply(lambda r: r.iloc[0] if r.nunique() == 1 and r.iloc[0] in VERDICTS
                       else "none", axis=1)
    sides = robust.groupby("measure", sort=False)[["never_before", "never_after"]].all()
    return (wide.assign(all_runs=agree).join(sides.reindex(order)).reset_index()
            .rename_axis(columns=None))


def summary_text(lags: pd.DataFrame) -> str:
    """Which measures settle before, with and after the validation loss under every setting of
    ``lags`` (baselines x thresholds), per run and in all runs; the rest are "mixed". Markdown
    text (a notebook shows it through ``linguistic_collapse.figures.dynamics.summary_markdown``)."""
    if lags.empty:
        return "No dynamics runs in this profile (its `dynamics.runs` is empty)."
    robust = robust_verdicts(lags)
    n_settings = lags.groupby(["baseline", "threshold"]).ngroups
    settings = (f"{n_settings} setting{'s' if n_settings != 1 else ''} (baselines "
                f"{', '.join(dict.fromkeys(lags['baseline']))}; thresholds "
                f"{', '.join(f'{t:.0%}' for t in sorted(set(lags['threshold'])))})")
    lines = [f"Verdicts that hold under all {settings}:"]
    for run, g in robust.groupby("run", sort=False):
        names = {v: ", ".join(label(m) for m in g.loc[g["robust"] == v, "measure"]) or "none"
                 for v in (*VERDICTS, "mixed")}
        lines.append(f"- **{run}**: before the loss: {names['before']}. With it (within one "
                     f"snapshot): {names['with']}. After it: {names['after']}. Depends on the "
                     f"setting: {names['mixed']}.")
    both = robust_statements(robust)
    runs = robust["run"].nunique()
    held = {v: ", ".join(label(m) for m in both.loc[both["all_runs"] == v, "measure"]) or "none"
            for v in VERDICTS}
    side = {k: ", ".join(label(m) for m in both.loc[both[k], "measure"]) or "none"
            for k in ("never_before", "never_after")}
    lines.append(f"- **in all {runs} runs**: before the loss: {held['before']}. With it: "
                 f"{held['with']}. After it: {held['after']}. Never before the loss (after or "
                 f"with it in every setting): {side['never_before']}. Never after it: "
                 f"{side['never_after']}.")
    return "\n".join(lines)


def record_findings(findings: Findings, table: pd.DataFrame, lags: pd.DataFrame) -> None:
    """Add 08_dynamics' numbers to ``findings``: runs and settings, per measure the verdict and
    one-sided statements that hold in all runs and settings, per run the verdict counts."""
    robust = robust_verdicts(lags)
    findings.add("dynamics runs (one seed each, no replicates)", table["run"].nunique(),
                 "dynamics.csv: runs", "{:d}")
    findings.add("lead/lag settings (baselines x thresholds)",
                 lags.groupby(["baseline", "threshold"]).ngroups,
                 "dynamics_lead_lag.csv: baseline, threshold", "{:d}")
    for r in robust_statements(robust).to_dict("records") if len(robust) else []:
        src = f"dynamics_lead_lag.csv via robust_statements: {r['measure']}"
        sides = ["never before the loss"] * r["never_before"] + ["never after the loss"] * r["never_after"]
        findings.add(f"{label(r['measure'])}: verdict in all runs and settings", r["all_runs"], src)
        findings.add(f"{label(r['measure'])}: one-sided statement in all runs and settings",
                     ", ".join(sides) or "none", src)
    for r in robust.to_dict("records"):
        findings.add(f"{r['run']} {label(r['measure'])}: settings before/with/after",
                     f"{r['before']}/{r['with']}/{r['after']} ({r['robust']})",
                     f"dynamics_lead_lag.csv via robust_verdicts: {r['run']}, {r['measure']}")

