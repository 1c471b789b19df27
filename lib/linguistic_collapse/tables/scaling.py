"""Does collapse develop with scale and training? (the paper's Figure 1 text and its scaling
figures, tested as pre-registered in docs/preregistration.md). No torch import.

On the primary population (the final checkpoint of each grid run, ``claims.grid_final_rows``): a
*width step* joins consecutive widths within one (depth, epochs), a *training step* consecutive
training lengths (epochs 1 -> 3) within one (depth, width). A step improves when the measure
moves in its collapse direction (``registry``: lower or higher), worsens when it moves the
other way; ties and missing values are left out. Per (measure, axis): the share of improving
steps and two one-sided exact sign tests (``scipy.stats.binomtest``, p = 1/2), each
Holm-adjusted over the pre-registered tests (``MEASURES`` x ``AXES``, 8 tests, each
direction separately). A claim holds
when its Holm p for improvement is below ``ALPHA``, fails when its Holm p for the opposite is,
and is inconclusive otherwise. Other measures are exploratory: the same numbers, no verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from linguistic_collapse.nc.registry import REGISTRY, analysis_scale, figure_measures, label
from linguistic_collapse.tables.analysis import holm
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.verdicts import SCALING_ALPHA

MEASURES = tuple(figure_measures("fig1"))  # pre-registered: Figure 1's CDNV, GNC2, UNC3 and NC4
# axis -> (the column that steps, the columns held fixed)
AXES: dict[str, tuple[str, tuple[str, str]]] = {"width": ("width", ("depth", "epochs")),
                                                "training": ("epochs", ("depth", "width"))}
ALPHA = SCALING_ALPHA


def steps(table: pd.DataFrame, measure: str, axis: str) -> pd.DataFrame:
    """One row per step of ``axis`` (``AXES``): the fixed columns, from and to (the stepping
    column), the measure before and after on its analysis scale, and ``change`` = +1 improves,
    -1 worsens, 0 tie, NaN missing. Several models in one cell (weight-decay twins) are averaged
    on the analysis scale."""
    step, fixed = AXES[axis]
    x = analysis_scale(table[measure].to_numpy(dtype=float), measure)
    cells = (table.assign(_x=x).groupby([*fixed, step], sort=True)["_x"].mean().reset_index())
    rows = []
    for key, g in cells.groupby(list(fixed), sort=True):
        at, xs = g[step].to_numpy(), g["_x"].to_numpy(dtype=float)  # sorted by the stepping column
        for i in range(len(at) - 1):
            rows.append({**dict(zip(fixed, key, strict=True)), "from": at[i], "to": at[i + 1],
                         "before": xs[i], "after": xs[i + 1]})
    out = pd.DataFrame(rows, columns=[*fixed, "from", "to", "before", "after"])
    sign = -1.0 if REGISTRY[measure].collapse == "lower" else 1.0  # improving = moving this way
    diff = sign * (out["after"] - out["before"]).to_numpy(dtype=float)
    out["change"] = np.where(np.isfinite(diff), np.sign(diff), np.nan)
    return out


def sign_test(improving: int, worsening: int) -> tuple[float, float]:
    """(p for improvement, p for the opposite): one-sided exact binomial tests of ``improving``
    successes in ``improving + worsening`` steps with p = 1/2; NaNs without steps."""
    from scipy.stats import binomtest  # heavy: imported when a test runs

    n = improving + worsening
    if n == 0:
        return float("nan"), float("nan")
    return (float(binomtest(improving, n, 0.5, alternative="greater").pvalue),
            float(binomtest(improving, n, 0.5, alternative="less").pvalue))


def scaling_verdict(holm_improve: float, holm_worsen: float, alpha: float = ALPHA) -> str:
    """holds / fails / inconclusive from the two Holm-adjusted p (n/a if both are NaN)."""
    if not (np.isfinite(holm_improve) or np.isfinite(holm_worsen)):
        return "n/a"
    if holm_improve < alpha:
        return "holds"
    if holm_worsen < alpha:
        return "fails"
    return "inconclusive"


def scaling_table(primary: pd.DataFrame, exploratory: Sequence[str] = ()) -> pd.DataFrame:
    """Per (measure, axis), pre-registered measures first: steps, improving, worsening, ties,
    share improving (of the untied), the two one-sided sign-test p, their Holm adjustments over
    the pre-registered tests and the verdict; ``exploratory`` measures (those in the table)
    after them with Holm over their own tests and no verdict. ``primary``: one model per design
    point (``claims.grid_final_rows``)."""
    rows = []
    extra = [m for m in exploratory if m in primary.columns and m in REGISTRY and m not in MEASURES]
    for role, names in (("pre-registered", [m for m in MEASURES if m in primary.columns]), ("exploratory", extra)):
        block = []
        for m in names:
            for axis in AXES:
                ch = steps(primary, m, axis)["change"].to_numpy(dtype=float)
                up, down, tie = int(np.sum(ch > 0)), int(np.sum(ch < 0)), int(np.sum(ch == 0))
                p_up, p_down = sign_test(up, down)
                block.append({"measure": m, "label": label(m), "axis": axis, "role": role,
                              "steps": up + down + tie, "improving": up, "worsening": down, "ties": tie,
                              "share_improving": up / (up + down) if up + down else np.nan,
                              "p_improve": p_up, "p_worsen": p_down})
        if block:
            b = pd.DataFrame(block)
            b["holm_improve"], b["holm_worsen"] = holm(b["p_improve"]), holm(b["p_worsen"])
            b["verdict"] = ([scaling_verdict(u, d) for u, d in zip(b["holm_improve"], b["holm_worsen"], strict=True)]
                            if role == "pre-registered" else "exploratory")
            rows.append(b)
    cols = ["measure", "label", "axis", "role", "steps", "improving", "worsening", "ties", "share_improving",
            "p_improve", "p_worsen", "holm_improve", "holm_worsen", "verdict"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


def record_findings(findings: Findings, table: pd.DataFrame) -> None:
    """Record per pre-registered (measure, axis): improving steps of untied ones, the Holm p
    for improvement and for the opposite, and the verdict."""
    for row in table[table["role"] == "pre-registered"].itertuples():
        key, src = f"scaling {row.label}, {row.axis} steps", f"scaling.csv: {row.measure}, {row.axis}"
        findings.add(f"{key}: improving / untied", f"{row.improving} / {row.improving + row.worsening}",
                     f"{src}, improving / (improving + worsening)")
        findings.add(f"{key}: Holm p improvement", row.holm_improve, f"{src}, holm_improve", fmt="{:.2g}")
        findings.add(f"{key}: Holm p opposite", row.holm_worsen, f"{src}, holm_worsen", fmt="{:.2g}")
        findings.add(f"{key}: verdict", row.verdict, f"{src}, verdict")
