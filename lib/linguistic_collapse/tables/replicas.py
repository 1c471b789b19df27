"""Table 1 as a reviewer reads it: intervals, the comparison with the authors, and what the
seed replicas can tell apart.

Beside each measure's permutation test (``analysis.table1``): a Fisher 95 % interval on r; a
two-sided test of the difference between our r and the authors' r on their own 21 seed replicas
(Fisher z, independent samples); the authors' permutation and Holm p (``authors_facts``); and the
first principal component of the standardised measures across our replicas with its r with loss.
Pure functions on pandas DataFrames; no torch import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from linguistic_collapse.nc.registry import MEASURES, analysis_scale, label
from linguistic_collapse.tables import analysis
from linguistic_collapse.tables.authors_facts import AUTHORS_REPLICA_P, AUTHORS_REPLICAS
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.results import LOSS

PC1_NOTE = ("The first principal component of the {k} standardised measures explains {share:.0%} "
            "of their variance across the {n} replicas and correlates r = {r:.2f} with loss: the "
            "replicas differ mainly along one factor that every measure follows, so a small p says "
            "that a measure moves with that factor, not that it tracks loss better than another.")


def _z(level: float) -> float:
    # heavy (scipy): loaded only when this statistic is computed
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def fisher_ci(r: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Interval on a Pearson r of ``n`` pairs from Fisher's z = atanh(r), se 1/sqrt(n - 3);
    NaNs when n < 4 or r is not finite; (r, r) when |r| = 1."""
    if n < 4 or not np.isfinite(r):
        return float("nan"), float("nan")
    if abs(r) >= 1:
        return float(r), float(r)
    half = _z(level) / np.sqrt(n - 3)
    z = np.arctanh(r)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def fisher_diff(r1: float, n1: int, r2: float, n2: int) -> tuple[float, float]:
    """(z, two-sided p) for H0 rho1 = rho2 from two independent samples: z = (atanh r1 -
    atanh r2) / sqrt(1/(n1 - 3) + 1/(n2 - 3)); NaNs when a sample is too small or |r| = 1."""
    # heavy (scipy): loaded only when this statistic is computed
    from scipy.stats import norm

    if min(n1, n2) < 4 or not (np.isfinite(r1) and np.isfinite(r2)) or max(abs(r1), abs(r2)) >= 1:
        return float("nan"), float("nan")
    z = (np.arctanh(r1) - np.arctanh(r2)) / np.sqrt(1 / (n1 - 3) + 1 / (n2 - 3))
    return float(z), float(2 * norm.sf(abs(z)))


def first_component(table: pd.DataFrame, measures: Sequence[str] = MEASURES) -> dict[str, object]:
    """PC1 of the measures (analysis scale, each standardised) across the rows: ``share`` of
    the total variance, ``r_loss`` of its scores with loss (sign oriented so r_loss >= 0; a
    component's sign is arbitrary), ``loadings`` per measure (NaN for measures left out: not
    finite on every row, or constant) and ``k`` measures used."""
    cols, used = [], []
    for m in measures:
        if m not in table.columns:
            continue
        x = analysis_scale(table[m].to_numpy(dtype=float), m)  # (n,)
        if np.all(np.isfinite(x)) and np.std(x) > 0:
            cols.append((x - x.mean()) / x.std())
            used.append(m)
    loadings = dict.fromkeys(measures, float("nan"))
    if len(used) < 2 or len(table) < 3:
        return {"share": float("nan"), "r_loss": float("nan"), "loadings": loadings, "k": len(used)}
    Z = np.column_stack(cols)  # (n, k), columns mean 0 and variance 1
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    scores = Z @ vt[0]  # (n,)
    r = float(analysis.pearson_rows(scores, table[LOSS].to_numpy(dtype=float)[None])[0])
    sign = -1.0 if r < 0 else 1.0
    loadings.update({m: float(sign * v) for m, v in zip(used, vt[0], strict=True)})
    return {"share": float(s[0] ** 2 / np.sum(s**2)), "r_loss": abs(r), "loadings": loadings, "k": len(used)}


def reviewed_table1(perm: pd.DataFrame, replicas: pd.DataFrame,
                    authors_r: Mapping[str, tuple[float, int]] = AUTHORS_REPLICAS,
                    authors_p: Mapping[str, tuple[float, float]] = AUTHORS_REPLICA_P,
                    level: float = 0.95) -> pd.DataFrame:
    """``perm`` (``analysis.table1`` of ``replicas``) with, per measure: ``r_ci_low/high``
    (Fisher), ``authors_r``/``authors_n`` (their replicas), ``diff_z``/``diff_p`` (ours
    against theirs), ``authors_p``/``authors_p_holm``, ``pc1_loading``; and ``pc1_share`` and
    ``pc1_r_loss`` (one value, repeated on every row). NaN where the authors lack a measure."""
    out = perm.copy()
    ci = [fisher_ci(r, int(n), level) for r, n in zip(out["r"], out["n"], strict=True)]
    out["r_ci_low"], out["r_ci_high"] = [c[0] for c in ci], [c[1] for c in ci]
    nan2 = (float("nan"), 0)
    out["authors_r"] = [authors_r.get(m, nan2)[0] for m in out["measure"]]
    out["authors_n"] = [authors_r.get(m, nan2)[1] for m in out["measure"]]
    diff = [fisher_diff(r, int(n), ra, int(na)) for r, n, ra, na in
            zip(out["r"], out["n"], out["authors_r"], out["authors_n"], strict=True)]
    out["diff_z"], out["diff_p"] = [d[0] for d in diff], [d[1] for d in diff]
    out["authors_p"] = [authors_p.get(m, (np.nan, np.nan))[0] for m in out["measure"]]
    out["authors_p_holm"] = [authors_p.get(m, (np.nan, np.nan))[1] for m in out["measure"]]
    pc = first_component(replicas, list(out["measure"]))
    out["pc1_loading"] = [pc["loadings"].get(m, np.nan) for m in out["measure"]]
    out["pc1_share"], out["pc1_r_loss"] = pc["share"], pc["r_loss"]
    out.attrs["pc1"] = {k: pc[k] for k in ("share", "r_loss", "k")} | {"n": len(replicas)}
    return out


def pc1_note(table: pd.DataFrame) -> str:
    """The sentence on what the first component means for the test (empty when undefined)."""
    pc = table.attrs.get("pc1") or {}
    if not np.isfinite(pc.get("share", np.nan)):
        return ""
    return PC1_NOTE.format(k=pc["k"], share=pc["share"], n=pc["n"], r=pc["r_loss"])


def record_findings(findings: Findings, table: pd.DataFrame, *, alpha: float) -> None:
    """Record in ``findings`` what the README quotes of Table 1 (``reviewed_table1``): per
    measure our r with its Fisher interval, our Holm p, the authors' replica r and the p of the
    difference; the first component's share and r with loss; the authors' Holm p below ``alpha``."""
    src = "permutation.csv"
    for row in table.itertuples():
        name = label(row.measure)
        if np.isfinite(row.r):
            findings.add(f"{name}: r [95% CI]", f"{row.r:+.2f} [{row.r_ci_low:+.2f}, {row.r_ci_high:+.2f}]",
                         f"{src}: {row.measure} r, r_ci_low, r_ci_high")
            findings.add(f"{name}: Holm p", analysis.format_p(row.p_holm, int(row.m)),
                         f"{src}: {row.measure} p_holm (analysis.format_p)")
        if np.isfinite(row.authors_r):
            findings.add(f"{name}: authors' replica r", row.authors_r, f"{src}: {row.measure} authors_r",
                         fmt="{:+.2f}")
        if np.isfinite(row.diff_p):
            findings.add(f"{name}: difference p (Fisher z)", row.diff_p, f"{src}: {row.measure} diff_p",
                         fmt="{:.2g}")
        if np.isfinite(row.authors_p_holm) and row.authors_p_holm < alpha:
            findings.add(f"{name}: authors' Holm p (survives)", row.authors_p_holm,
                         f"{src}: {row.measure} authors_p_holm", fmt="{:.2g}")
    pc = table.attrs.get("pc1") or {}
    if np.isfinite(pc.get("share", np.nan)):
        findings.add("PC1 share of standardised variance", 100 * pc["share"], f"{src}: pc1_share", fmt="{:.0f}%")
        findings.add("PC1 r with loss", pc["r_loss"], f"{src}: pc1_r_loss", fmt="{:.2f}")
