"""The decision rule of the claims, fixed before the data: strength bands, three-way verdicts on
95 % intervals, an equivalence test against the authors' R², the primary population, and the
rule as one text (printed above the claims table and quoted in docs/reference.md). No torch import.

A verdict reads the whole interval, so a wider interval can no longer make a claim "hold": it
can only make it inconclusive.
"""

from __future__ import annotations

import numpy as np

from linguistic_collapse.nc.registry import BANDS, MEASURES
from linguistic_collapse.tables.authors_facts import AUTHORS_R2_CI
from linguistic_collapse.tables.clusters import N_EFF_RULE

PRIMARY = "all"
PRIMARY_REASON = ("every measured model, intermediate checkpoints included, as the authors pooled "
                  "their 230, and no selection made from the data")
LEVEL = 0.95  # claims' intervals
EQUIVALENCE_MARGIN = 0.10  # |ΔR²| below this counts as "as strong as the authors'"
EQUIVALENCE_LEVEL = 0.90  # two one-sided tests at 5 % each
AUTHORS_SEED = 20240
Z95 = 3.92  # width of a normal 95 % interval in standard deviations (2 x 1.96)


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


def authors_r2_draws(measure: str, point: float | None, n: int, seed: int = AUTHORS_SEED) -> np.ndarray | None:
    """(n,) draws of the authors' R² of ``measure``: normal around ``point`` with sd = width of
    their 95 % interval / 3.92 (their runs resampled; ``AUTHORS_R2_CI``), independent of ours,
    seeded per measure; None where their interval or point is not known."""
    ci = AUTHORS_R2_CI.get(measure)
    if ci is None or point is None:
        return None
    rng = np.random.default_rng((seed, MEASURES.index(measure) if measure in MEASURES else 0))
    return point + (ci[1] - ci[0]) / Z95 * rng.standard_normal(n)


def equivalence(ours: float, ours_boot: np.ndarray, measure: str, authors: float | None
                ) -> dict[str, float | str]:
    """ΔR² = R²(here) - R²(authors): point, ``EQUIVALENCE_LEVEL`` interval (our cluster-bootstrap
    replicates minus independent draws of theirs) and ``equivalence_verdict``."""
    draws = authors_r2_draws(measure, authors, len(ours_boot))
    if draws is None or not np.isfinite(ours):
        return {"dr2": np.nan, "dr2_low": np.nan, "dr2_high": np.nan, "equivalence": "n/a"}
    diff = ours_boot - draws
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return {"dr2": ours - authors, "dr2_low": np.nan, "dr2_high": np.nan, "equivalence": "n/a"}
    tail = 100 * (1 - EQUIVALENCE_LEVEL) / 2
    low, high = (float(v) for v in np.percentile(diff, [tail, 100 - tail]))
    return {"dr2": ours - authors, "dr2_low": low, "dr2_high": high,
            "equivalence": equivalence_verdict(low, high)}


def _bands_text() -> str:
    names = list(BANDS)
    parts = [f"{names[0]} < {BANDS[names[0]][1]:g}"]
    parts += [f"{n} {BANDS[n][0]:g}–{BANDS[n][1]:g}" for n in names[1:-1]]
    parts.append(f"{names[-1]} ≥ {BANDS[names[-1]][0]:g}")
    return ", ".join(parts)


def rule_text(n_claims: int, populations: tuple[str, ...]) -> str:
    """The decision rule in words, from the constants above (one paragraph, no line breaks)."""
    secondary = " and ".join(p for p in populations if p != PRIMARY)
    return (
        f"Decision rule, fixed before the data. Strength words are R² bands: {_bands_text()}. "
        f"A claim holds when the whole {LEVEL * 100:.0f} % cluster-bootstrap interval lies in the claimed "
        "band (a direction: on the claimed side of 0; a comparison: ΔR² above 0), fails when it "
        "lies wholly outside, and is inconclusive otherwise. Clusters are design points (depth × "
        "width × training length): seed replicas, weight-decay twins and the checkpoints of a run "
        f"are resampled together; {N_EFF_RULE}. As strong as the authors': ΔR² = R²(here) − "
        "R²(authors), ours by the cluster bootstrap, theirs drawn independently (fixed seed) from "
        f"a normal around their value with sd = their 95 % interval width / {Z95} (their runs "
        f"resampled); equivalent when the {EQUIVALENCE_LEVEL * 100:.0f} % interval of ΔR² lies within "
        f"±{EQUIVALENCE_MARGIN:.2f} (two one-sided tests at 5 %), different when it lies wholly "
        f"beyond +{EQUIVALENCE_MARGIN:.2f} or −{EQUIVALENCE_MARGIN:.2f}, inconclusive otherwise. "
        f"Primary population: {PRIMARY} ({PRIMARY_REASON}); {secondary} are secondary robustness "
        f"checks. Intervals are per claim, not adjusted for the {n_claims} claims: the primary "
        "verdicts are the findings, a secondary verdict that differs marks a fragile one."
    )
