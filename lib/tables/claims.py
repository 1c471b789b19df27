"""The paper's claims about Figures 1-3, tested as it states them (docs/paper.md section 6).

Every claim comes from ``lib.nc.registry``: for each measure with a stated relation to loss,
a *direction* claim (more collapse goes with lower loss: r has the registry's expected sign)
where the paper states a strong or clear relation (for equiangularity's "some relationship" it
states no direction, and on the authors' own models its CV *rises* as loss falls, r = -0.59),
and a *strength* claim compared with the same statistic
(R^2 on the same scale) over the authors' own 230 models; and each comparative claim
(``registry.COMPARISONS``) as a difference of R^2. Each is evaluated on three populations:
all models, all but the loss-plateau models (``plateau_mask``), and final checkpoints only,
with 95% cluster-bootstrap intervals that resample whole training runs. No torch import.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from lib.nc.registry import COMPARISONS, REGISTRY, claimed_measures, label
from lib.tables.analysis import (
    cluster_bootstrap_weights,
    pearson_rows,
    percentile_ci,
    transformed,
    weighted_pearson,
)
from lib.tables.results import LOSS, final_rows, run_ids

POPULATIONS = ("all", "no plateau", "final")
HOLDS_RULE = (
    "holds? uses the 95% cluster-bootstrap interval (whole runs resampled): a direction claim "
    "holds when the interval of r lies on the claimed side of 0; a strong/clear/some claim when "
    "the interval of R² reaches the authors' R² (not clearly weaker than on their 230 models); "
    "a negligible claim when it reaches down to the authors' R² (not clearly stronger); a "
    "comparative claim when the interval of the R² difference lies above 0."
)
CDNV_UNITS_NOTE = (
    "Units: scaling every feature by a multiplies the within-class variance by a² and "
    "‖μ_c − μ_c'‖⁴ by a⁴, so the paper's CDNV (‖Δ‖⁴ form) scales as 1/a² and falls whenever "
    "features grow, collapse or not; Galanti's CDNV (‖Δ‖² form) is scale-free and measures "
    "variability relative to class separation only."
)


def plateau_mask(table: pd.DataFrame, min_gap: float = 0.3, max_fraction: float = 1 / 3
                 ) -> tuple[np.ndarray, str]:
    """(mask, description) of the loss-plateau models: those above the widest gap between
    consecutive sorted validation losses, when that gap is at least ``min_gap`` nats and leaves
    at most ``max_fraction`` of the models above it; no plateau otherwise.

    Why: models stuck on the early plateau (predicting little beyond token frequencies) form a
    separate cluster of high losses; ``min_gap`` = 0.3 nats (perplexity ratio 1.35) is several
    times the spread of seed-only replicas, so ordinary variation never opens such a gap.
    """
    loss = table[LOSS].to_numpy(dtype=float)
    order = np.sort(loss[np.isfinite(loss)])
    n = len(order)
    mask = np.zeros(len(loss), dtype=bool)
    if n < 3:
        return mask, "no plateau models (fewer than 3 models)"
    gaps = np.diff(order)  # gap i separates order[: i + 1] from order[i + 1:]
    allowed = (n - 1 - np.arange(n - 1)) <= max_fraction * n
    gaps = np.where(allowed, gaps, -np.inf)
    i = int(np.argmax(gaps))
    rule = (f"plateau = models above the widest gap in sorted validation loss, if it is ≥ {min_gap} "
            f"nats with at most {max_fraction:.2g} of the models above it")
    if not np.isfinite(gaps[i]) or gaps[i] < min_gap:
        return mask, f"no plateau models ({rule}; widest such gap {max(gaps[i], 0):.3g} nats)"
    mask = np.isfinite(loss) & (loss > order[i])
    return mask, (f"{int(mask.sum())} plateau models with loss ≥ {order[i + 1]:.3f} nats, above a gap "
                  f"of {gaps[i]:.3f} nats from {order[i]:.3f} ({rule})")


def populations(table: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], str]:
    """The three populations of the claims, and the plateau description."""
    plateau, how = plateau_mask(table)
    return {"all": table, "no plateau": table[~plateau], "final": final_rows(table)}, how


# ---------------------------------------------------------------------------------------------
# Statistics of one claim on one population: (point, bootstrap replicates)


Stat = Callable[[pd.DataFrame, np.ndarray], tuple[float, np.ndarray]]


def _r(measure: str) -> Stat:
    def stat(pop: pd.DataFrame, W: np.ndarray) -> tuple[float, np.ndarray]:
        x, mask, _ = transformed(pop, measure)
        y = pop.loc[mask, LOSS].to_numpy(dtype=float)
        if len(x) < 3:
            return np.nan, np.full(len(W), np.nan)
        return float(pearson_rows(x, y[None])[0]), weighted_pearson(x, y, W[:, mask])
    return stat


def _r2(measure: str) -> Stat:
    def stat(pop: pd.DataFrame, W: np.ndarray) -> tuple[float, np.ndarray]:
        r, boot = _r(measure)(pop, W)
        return r * r, boot**2
    return stat


def _delta_r2(better: str, worse: str) -> Stat:
    def stat(pop: pd.DataFrame, W: np.ndarray) -> tuple[float, np.ndarray]:
        both = pop[np.isfinite(pop[better].astype(float)) & np.isfinite(pop[worse].astype(float))]
        keep = np.isin(pop.index, both.index)
        a, boot_a = _r2(better)(both, W[:, keep])
        b, boot_b = _r2(worse)(both, W[:, keep])
        return a - b, boot_a - boot_b
    return stat


def _claims() -> list[dict]:
    """Every claim: text, figure, statistic name, its function, authors' value, holds-test."""
    out = []
    for name in claimed_measures():
        m = REGISTRY[name]
        fig = ", ".join(m.figures)
        if m.claim in ("strong", "clear"):  # "some" and "negligible" state no direction
            side = "> 0" if m.expected_sign > 0 else "< 0"
            out.append({"claim": f"{label(name)}: more collapse, lower loss", "figure": fig,
                        "statistic": "r", "stat": _r(name), "authors": f"r {side}",
                        "holds": (lambda lo, hi, s=m.expected_sign: lo > 0 if s > 0 else hi < 0)})
        out.append({"claim": f"{label(name)}: {m.claim} relation to loss", "figure": fig,
                    "statistic": "R²", "stat": _r2(name), "authors": m.authors_r2,
                    "holds": (lambda lo, hi, a=m.authors_r2: lo <= a) if m.claim == "negligible"
                    else (lambda lo, hi, a=m.authors_r2: hi >= a)})
    for c in COMPARISONS:
        a, b = REGISTRY[c.better].authors_r2, REGISTRY[c.worse].authors_r2
        out.append({"claim": c.text, "figure": c.figure, "statistic": "ΔR²",
                    "stat": _delta_r2(c.better, c.worse), "authors": a - b,
                    "holds": lambda lo, hi: lo > 0})
    return out


def claims_long(table: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (claim, population): the statistic, its 95% cluster-bootstrap interval,
    n models, n runs and whether the claim holds (``HOLDS_RULE``)."""
    pops, _ = populations(table)
    rows = []
    for pop_name, pop in pops.items():
        pop = pop.reset_index(drop=True)
        runs = run_ids(pop)
        W = cluster_bootstrap_weights(runs, n_bootstrap, seed) if len(pop) else np.zeros((n_bootstrap, 0))
        for c in _claims():
            value, boot = c["stat"](pop, W)
            lo, hi = percentile_ci(boot)
            ok = bool(c["holds"](lo, hi)) if np.isfinite(value) and np.isfinite(lo) else None
            rows.append({"claim": c["claim"], "figure": c["figure"], "statistic": c["statistic"],
                         "authors": c["authors"], "population": pop_name, "n": len(pop),
                         "n_runs": len(set(runs)), "value": value, "ci_low": lo, "ci_high": hi,
                         "holds": ok})
    return pd.DataFrame(rows)


def _cell(value: float, lo: float, hi: float, statistic: str) -> str:
    if not np.isfinite(value):
        return "n/a"
    fmt = "{:+.2f}" if statistic in ("r", "ΔR²") else "{:.2f}"
    return f"{fmt.format(value)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def claims_table(table: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The claims of Figures 1-3 as a table: claim | figure | statistic | authors' 230 models |
    all | no plateau | final | holds? (all / no plateau / final). Cells show the statistic and
    its 95% cluster-bootstrap interval; ``attrs["rule"]`` and ``attrs["plateau"]`` say how
    holds? and the plateau models were decided (print them beside the table)."""
    long = claims_long(table, n_bootstrap, seed)
    rows = []
    for (claim, _), group in long.groupby(["claim", "statistic"], sort=False):
        first = group.iloc[0]
        authors = first["authors"]
        row = {"claim": claim, "figure": first["figure"], "statistic": first["statistic"],
               "authors' 230 models": authors if isinstance(authors, str) else f"{authors:.3g}"}
        verdicts = []
        for pop in POPULATIONS:
            g = group[group["population"] == pop].iloc[0]
            row[pop] = _cell(g["value"], g["ci_low"], g["ci_high"], g["statistic"])
            verdicts.append({True: "yes", False: "no", None: "n/a"}[g["holds"]])
        row["holds? (all / no plateau / final)"] = " / ".join(verdicts)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["rule"] = HOLDS_RULE
    out.attrs["plateau"] = populations(table)[1]
    return out


def cdnv_units_table(table: pd.DataFrame) -> pd.DataFrame:
    """The paper's CDNV (‖Δ‖⁴) beside Galanti's (‖Δ‖², scale-free): R² with loss, and the fold
    change of the median from the narrowest to the widest models (see ``CDNV_UNITS_NOTE``)."""
    widths = sorted(table["width"].unique())
    rows = []
    for name in ("nc1_cdnv", "nc1_cdnv_galanti"):
        x, mask, _ = transformed(table, name)
        r = float(pearson_rows(x, table.loc[mask, LOSS].to_numpy(dtype=float)[None])[0]) if len(x) > 2 else np.nan
        lo = table.loc[table["width"] == widths[0], name].median()
        hi = table.loc[table["width"] == widths[-1], name].median()
        rows.append({"measure": label(name), "column": name, "r": r, "R²": r * r,
                     f"median at width {widths[0]}": lo, f"median at width {widths[-1]}": hi,
                     "fold change": lo / hi})
    return pd.DataFrame(rows)
