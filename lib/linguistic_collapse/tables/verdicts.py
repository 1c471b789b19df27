"""The decision rule of the claims (docs/preregistration.md): strength bands, three-way verdicts on
95 % intervals with the Monte-Carlo error of each limit, an equivalence test against the authors'
like-for-like models, the populations, and the rule as one text (printed above the claims
table and quoted in docs/reference.md). No torch import.

A verdict reads the whole interval, so a wider interval can never make a claim "hold": it can
only make it inconclusive. A verdict that another bootstrap seed could turn is marked "at the
edge" (``at_edge``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from linguistic_collapse.nc.registry import BANDS, MEASURES
from linguistic_collapse.tables.analysis import percentile_ci_se
from linguistic_collapse.tables.authors_facts import (
    AUTHORS_DESIGN_N_EFF,
    AUTHORS_R2_CI,
    AUTHORS_R2_QUANTILES,
)
from linguistic_collapse.tables.clusters import N_EFF_RULE

PRIMARY = "grid final"
SECONDARY = "grid final, no plateau"
POPULATIONS = (PRIMARY, SECONDARY)
PRIMARY_REASON = ("the final checkpoint of each grid run, one model per design point, plateau models "
                  "included: no selection from the data (the authors pooled too), and n_eff = the "
                  "number of design points; seed replicas are for Table 1 only")
SECONDARY_REASON = "the same without the loss-plateau models"
LEVEL = 0.95  # claims' intervals
EQUIVALENCE_MARGIN = 0.10  # |ΔR²| below this counts as "as strong as the authors'"
EQUIVALENCE_LEVEL = 0.90  # two one-sided tests at 5 % each
MC_EDGE_SE = 2.0  # a verdict whose deciding limit lies within this many Monte-Carlo standard errors of its edge is "at the edge"
SCALING_ALPHA = 0.05  # the scaling sign tests: Holm-adjusted p below this decides (improves / worsens)
# the names claim: holds if at most holds_max names come near the average token, each with a
# training count >= the holds_quantile of the names' counts (top quartile); fails if fails_min or
# more come near or one has a count below the fails_quantile (median); inconclusive otherwise
NAMES_RULE: dict[str, float] = {"holds_max": 2, "fails_min": 5, "holds_quantile": 0.75,
                                "fails_quantile": 0.5}
AUTHORS_SEED = 20240
Z95 = 3.92  # width of a normal 95 % interval in standard deviations (2 x 1.96)
LIKE_FOR_LIKE = (1, 3)  # the authors' training lengths compared with ours (their 10-epoch runs are not)

Verdict = Callable[[float, float], str]


def band_verdict(low: float, high: float, claim: str) -> str:
    """holds / fails / inconclusive for "R² is <claim>": the interval [low, high] lies wholly
    in the claim's band [a, b) of ``BANDS``, wholly outside it, or across an edge; n/a if NaN."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    a, b = BANDS[claim]
    top = b >= 1.0  # the top band includes 1
    if low >= a and (high < b or top):
        return "holds"
    if high < a or (low >= b and not top):
        return "fails"
    return "inconclusive"


def side_verdict(low: float, high: float, sign: int) -> str:
    """holds / fails / inconclusive for "the statistic has sign ``sign``" (+1 or -1): the interval
    lies wholly on that side of 0, wholly on the other, or contains 0; n/a if NaN."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    if (low > 0) if sign > 0 else (high < 0):
        return "holds"
    if (high < 0) if sign > 0 else (low > 0):
        return "fails"
    return "inconclusive"


def equivalence_verdict(low: float, high: float, margin: float = EQUIVALENCE_MARGIN) -> str:
    """equivalent / different / inconclusive from the ``EQUIVALENCE_LEVEL`` interval of a
    difference: wholly inside (-margin, margin) (TOST), wholly beyond one of the margins, or
    neither; n/a if NaN."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    if -margin < low and high < margin:
        return "equivalent"
    if low > margin or high < -margin:
        return "different"
    return "inconclusive"


def at_edge(verdict: Verdict, low: float, high: float, se_low: float, se_high: float,
            k: float = MC_EDGE_SE) -> bool:
    """Whether moving either limit by up to ``k`` Monte-Carlo standard errors can change
    ``verdict(low, high)``: a deciding limit lies within k SE of an edge. Every verdict here is
    monotone in each limit, so the four corners of that box are enough. False if not finite."""
    if not all(np.isfinite(v) for v in (low, high, se_low, se_high)):
        return False
    here = verdict(low, high)
    for lo in (low - k * se_low, low + k * se_low):
        for hi in (high - k * se_high, high + k * se_high):
            if verdict(min(lo, hi), max(lo, hi)) != here:
                return True
    return False


def with_edge(verdict: str, edge: bool) -> str:
    """The verdict as reported: itself, or at the edge "at the edge (holds by its limits)",
    counted neither as holds nor as fails (docs/preregistration.md, section 3)."""
    return f"at the edge ({verdict} by its limits)" if edge and verdict != "n/a" else verdict


def r2_sd(r: float, n_eff: float) -> float:
    """Large-sample standard deviation of R² = r² from ``n_eff`` independent pairs (delta
    method on Var(r) ≈ (1 - r²)² / n): 2 |r| (1 - r²) / sqrt(n_eff)."""
    return 2 * abs(r) * (1 - r * r) / np.sqrt(n_eff)


def _rng(key: str, epochs: int, seed: int) -> np.random.Generator:
    index = MEASURES.index(key) if key in MEASURES else sum(map(ord, key))
    return np.random.default_rng((seed, index, epochs))


def authors_r2_draws(measure: str, point: float | None, n: int, seed: int = AUTHORS_SEED) -> np.ndarray | None:
    """(n,) draws of the authors' R² of ``measure`` over their 230 models: normal around
    ``point`` with sd = width of their 95 % interval / 3.92 (their runs resampled;
    ``AUTHORS_R2_CI``), independent of ours, seeded per measure; None where not known."""
    ci = AUTHORS_R2_CI.get(measure)
    if ci is None or point is None:
        return None
    return point + (ci[1] - ci[0]) / Z95 * _rng(measure, 0, seed).standard_normal(n)


AUTHORS_BOOTSTRAP = ("bootstrap over the authors' design points (10,000 resamples, their R² "
                     "stored as 101 quantiles in authors_facts.AUTHORS_R2_QUANTILES)")
AUTHORS_NORMAL = ("large-sample normal, sd 2|r|(1 − r²)/√n_eff over their design points (their "
                  "per-model files are not in this repository)")


def authors_epochs_draws(key: str, r: float | None, r2: float | None, epochs: int, n: int,
                         seed: int = AUTHORS_SEED) -> tuple[np.ndarray | None, str]:
    """((n,) draws of the authors' R² on their models trained ``epochs`` epochs, how they were
    drawn), independent of ours and seeded per measure and length. Where
    ``AUTHORS_R2_QUANTILES`` holds their design-point bootstrap distribution, draws from it
    (inverse CDF, linear between its quantiles: ``AUTHORS_BOOTSTRAP``); else a normal around
    ``r2`` with sd ``r2_sd(r, n_eff)``, n_eff = Kish's over their design points of that length
    (``AUTHORS_DESIGN_N_EFF``; ``AUTHORS_NORMAL``). (None, "") where nothing is known."""
    rng = _rng(key, epochs, seed)
    q = AUTHORS_R2_QUANTILES.get(key, {}).get(epochs)
    if q is not None:
        return np.interp(rng.uniform(size=n), np.linspace(0, 1, len(q)), q), AUTHORS_BOOTSTRAP
    n_eff = AUTHORS_DESIGN_N_EFF.get(epochs)
    if r is None or r2 is None or n_eff is None or not (np.isfinite(r) and np.isfinite(r2)):
        return None, ""
    return r2 + r2_sd(r, n_eff) * rng.standard_normal(n), AUTHORS_NORMAL


def difference(ours: float, ours_boot: np.ndarray, theirs: float | None,
               theirs_draws: np.ndarray | None) -> dict[str, float | str | bool]:
    """ΔR² = ours - theirs: point, ``EQUIVALENCE_LEVEL`` interval of ours_boot - theirs_draws
    (independent), its limits' MC standard errors, ``equivalence_verdict`` and ``at_edge``."""
    nan = {"dr2": np.nan, "dr2_low": np.nan, "dr2_high": np.nan, "dr2_se_low": np.nan,
           "dr2_se_high": np.nan, "equivalence": "n/a", "equivalence_edge": False}
    if theirs_draws is None or theirs is None or not np.isfinite(ours):
        return nan
    low, high, se_low, se_high = percentile_ci_se(ours_boot - theirs_draws, EQUIVALENCE_LEVEL)
    verdict = equivalence_verdict(low, high)
    return {"dr2": ours - theirs, "dr2_low": low, "dr2_high": high, "dr2_se_low": se_low,
            "dr2_se_high": se_high, "equivalence": verdict,
            "equivalence_edge": at_edge(equivalence_verdict, low, high, se_low, se_high)}


def _bands_text() -> str:
    names = list(BANDS)
    parts = [f"{names[0]} < {BANDS[names[0]][1]:g}"]
    parts += [f"{n} {BANDS[n][0]:g}–{BANDS[n][1]:g}" for n in names[1:-1]]
    parts.append(f"{names[-1]} ≥ {BANDS[names[-1]][0]:g}")
    return ", ".join(parts)


def rule_text(n_claims: int, n_bootstrap: int) -> str:
    """The decision rule in words, from the constants above (one paragraph, no line breaks)."""
    epochs = " and ".join(f"{e}-epoch" for e in LIKE_FOR_LIKE)
    return (
        f"Decision rule (docs/preregistration.md). Strength words are R² bands: {_bands_text()}. "
        f"A claim holds when the whole {LEVEL * 100:.0f} % bootstrap interval ({n_bootstrap:,} resamples "
        "of design points) lies in the claimed band (a direction: on the claimed side of 0; a "
        "comparison: ΔR² above 0), fails when it lies wholly outside, and is inconclusive "
        f"otherwise; a verdict is at the edge, counted neither as holds nor as fails, when a deciding limit lies within {MC_EDGE_SE:g} "
        "Monte-Carlo standard errors of an edge (binomial formula for a quantile). "
        f"{N_EFF_RULE}. Primary population: {PRIMARY_REASON}; secondary ({SECONDARY}): "
        f"{SECONDARY_REASON}. As strong as the authors': ΔR² = R²(here) − R²(authors) against "
        f"their {epochs} models separately (like for like; their 230 models for reference only), "
        "ours by the design-point bootstrap, theirs drawn independently (fixed seed) from their "
        "design-point bootstrap where their files gave it, else from a normal around their value "
        "with the large-sample sd 2|r|(1 − r²)/√n_eff over their design points (the claims table "
        "says which); equivalent when the "
        f"{EQUIVALENCE_LEVEL * 100:.0f} % interval of ΔR² lies within ±{EQUIVALENCE_MARGIN:.2f} (two "
        f"one-sided tests at 5 %), different when it lies wholly beyond +{EQUIVALENCE_MARGIN:.2f} or "
        f"−{EQUIVALENCE_MARGIN:.2f}, inconclusive otherwise. Intervals are per claim, not adjusted "
        f"for the {n_claims} claims: the primary verdicts are the findings, a secondary verdict that "
        "differs marks a fragile one."
    )
