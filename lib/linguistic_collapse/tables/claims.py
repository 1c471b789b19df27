"""The paper's claims about Figures 1-3, tested as it states them (docs/paper.md section 6) under
the pre-registered rule (docs/preregistration.md, ``linguistic_collapse.tables.verdicts``).

Every claim comes from ``linguistic_collapse.nc.registry``: for each measure with a stated relation to loss,
a *direction* claim (more collapse goes with lower loss: r has the registry's expected sign)
where the paper states a strong or clear relation (for equiangularity's "some relationship" it
states no direction, and on the authors' own models its CV *rises* as loss falls, r = -0.59),
a *strength* claim (R² in the band of the paper's word, ``registry.BANDS``) with r and its sign
beside it and ΔR² against the authors' models of our training lengths; and each comparative
claim (``registry.COMPARISONS``) as a difference of R². Each is evaluated on the primary
population (the final checkpoint of each grid run: one model per design point, seed replicas
left out) and on the same without the loss-plateau models (``plateau_mask``), with 95 %
intervals from a bootstrap over design points and the Monte-Carlo error of each limit. No torch
import.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from linguistic_collapse.nc.registry import (
    BANDS,
    COMPARISONS,
    PINV_MEASURES,
    PINV_RTOLS,
    REGISTRY,
    Comparison,
    band,
    claimed_measures,
    label,
)
from linguistic_collapse.tables.analysis import (
    cluster_bootstrap_weights,
    pearson_rows,
    percentile_ci_se,
    transformed,
    weighted_pearson,
)
from linguistic_collapse.tables.authors_facts import AUTHORS_BY_EPOCHS, AUTHORS_R2_CI
from linguistic_collapse.tables.clusters import cluster_counts, design_point_ids
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.results import LOSS, final_rows
from linguistic_collapse.tables.verdicts import (
    EQUIVALENCE_LEVEL,
    LEVEL,
    LIKE_FOR_LIKE,
    POPULATIONS,
    PRIMARY,
    SECONDARY,
    at_edge,
    authors_epochs_draws,
    authors_r2_draws,
    band_verdict,
    difference,
    rule_text,
    side_verdict,
    with_edge,
)

# (U) of docs/preregistration.md: "hyperspherical uniformity rather than an ETF", judged like a comparison
UNIFORMITY_VS_ETF = Comparison("gnc2_logkernel_var", "nc2_etf_error", "fig2",
                               "hyperspherical uniformity (GNC2) tracks loss better than a simplex ETF "
                               "(NC2 ETF error)")
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


def grid_final_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The final checkpoint of each grid run: runs with the lowest seed of their depth, width,
    epochs and weight decay (the grid's seed, 0; seed replicas have other seeds, 1-20 in the
    profiles), at checkpoint == epochs."""
    final = final_rows(table)
    spec = [c for c in ("depth", "width", "epochs", "weight_decay") if c in final.columns]
    if "seed" not in final.columns or not spec:
        return final.reset_index(drop=True)
    lowest = final.groupby(spec, dropna=False)["seed"].transform("min")
    return final[final["seed"] == lowest].reset_index(drop=True)


def populations(table: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], str]:
    """The two populations of the claims (``POPULATIONS``): the grid's final checkpoints and the
    same without its plateau models (``plateau_mask`` on that population), and the plateau
    description."""
    primary = grid_final_rows(table)
    plateau, how = plateau_mask(primary)
    return {PRIMARY: primary, SECONDARY: primary[~plateau].reset_index(drop=True)}, how


# ---------------------------------------------------------------------------------------------
# Statistics of one claim on one population: (point, bootstrap replicates, rows used)


Stat = Callable[[pd.DataFrame, np.ndarray], tuple[float, np.ndarray, np.ndarray]]


def _r(measure: str) -> Stat:
    def stat(pop: pd.DataFrame, W: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        x, mask, _ = transformed(pop, measure)
        y = pop.loc[mask, LOSS].to_numpy(dtype=float)
        if len(x) < 3:
            return np.nan, np.full(len(W), np.nan), mask
        return float(pearson_rows(x, y[None])[0]), weighted_pearson(x, y, W[:, mask]), mask
    return stat


def _r2(measure: str) -> Stat:
    def stat(pop: pd.DataFrame, W: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        r, boot, mask = _r(measure)(pop, W)
        return r * r, boot**2, mask
    return stat


def _delta_r2(better: str, worse: str) -> Stat:
    def stat(pop: pd.DataFrame, W: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        keep = transformed(pop, better)[1] & transformed(pop, worse)[1]  # the same models for both
        both = pop[keep]
        a, boot_a, _ = _r2(better)(both, W[:, keep])
        b, boot_b, _ = _r2(worse)(both, W[:, keep])
        return a - b, boot_a - boot_b, keep
    return stat


def _claims() -> list[dict]:
    """Every claim: text, figure, statistic, its function, claimed statement, the authors'
    pooled value, their (r, R², n) by training length, and how a 95 % interval is judged."""
    out = []
    for name in claimed_measures():
        m = REGISTRY[name]
        fig = ", ".join(m.figures)
        by_epochs = AUTHORS_BY_EPOCHS.get(name, {})
        if m.claim in ("strong", "clear"):  # "some" and "negligible" state no direction
            side = "> 0" if m.expected_sign > 0 else "< 0"
            out.append({"claim": f"{label(name)}: more collapse, lower loss", "figure": fig,
                        "statistic": "r", "stat": _r(name), "claimed": f"r {side}",
                        "measure": name, "authors": None, "by_epochs": by_epochs,
                        "verdict": lambda lo, hi, s=m.expected_sign: side_verdict(lo, hi, s)})
        lo_band, hi_band = BANDS[m.claim]
        claimed = (f"R² < {hi_band:g}" if lo_band == 0 else f"R² ≥ {lo_band:g}" if hi_band >= 1
                   else f"{lo_band:g} ≤ R² < {hi_band:g}")
        out.append({"claim": f"{label(name)}: {m.claim} relation to loss", "figure": fig,
                    "statistic": "R²", "stat": _r2(name), "claimed": f"{m.claim}: {claimed}",
                    "measure": name, "authors": m.authors_r2, "by_epochs": by_epochs,
                    "verdict": lambda lo, hi, c=m.claim: band_verdict(lo, hi, c)})
    for c in (*COMPARISONS, UNIFORMITY_VS_ETF):
        a, b = REGISTRY[c.better].authors_r2, REGISTRY[c.worse].authors_r2
        ea, eb = AUTHORS_BY_EPOCHS.get(c.better, {}), AUTHORS_BY_EPOCHS.get(c.worse, {})
        out.append({"claim": c.text, "figure": c.figure, "statistic": "ΔR²",
                    "stat": _delta_r2(c.better, c.worse), "claimed": "ΔR² > 0", "measure": None,
                    "authors": None if a is None or b is None else a - b,
                    "by_epochs": {e: (np.nan, ea[e][1] - eb[e][1], min(ea[e][2], eb[e][2]))
                                  for e in sorted(set(ea) & set(eb))},
                    "verdict": lambda lo, hi: side_verdict(lo, hi, +1)})
    return out


def _interval(value: float, boot: np.ndarray, verdict: Callable[[float, float], str], prefix: str = ""
              ) -> dict[str, float | str | bool]:
    """Point, 95 % interval, the limits' MC standard errors, verdict and whether it is at the edge."""
    lo, hi, se_lo, se_hi = percentile_ci_se(boot, LEVEL)
    v = verdict(lo, hi) if np.isfinite(value) else "n/a"
    return {f"{prefix}value": value, f"{prefix}ci_low": lo, f"{prefix}ci_high": hi,
            f"{prefix}se_low": se_lo, f"{prefix}se_high": se_hi, f"{prefix}verdict": v,
            f"{prefix}edge": v != "n/a" and at_edge(verdict, lo, hi, se_lo, se_hi)}


def _r2_extras(c: dict, pop: pd.DataFrame, W: np.ndarray, value: float, boot: np.ndarray) -> dict:
    """For an R² claim: r with its interval (the sign), the authors' r on their 1- and 3-epoch
    models and whether the sign differs, ΔR² against each of those subsets (equivalence) and
    against their 230 models (reference)."""
    name, sign = c["measure"], REGISTRY[c["measure"]].expected_sign
    r, r_boot, _ = _r(name)(pop, W)
    row = {"band": band(min(max(value, 0.0), 1.0)) if np.isfinite(value) else "n/a",
           **_interval(r, r_boot, lambda lo, hi: side_verdict(lo, hi, sign), "r_")}
    for e in LIKE_FOR_LIKE:
        theirs_r, theirs_r2, _ = c["by_epochs"].get(e, (np.nan, np.nan, 0))
        row[f"authors_r_e{e}"] = theirs_r
        row[f"sign_differs_e{e}"] = bool(np.isfinite(r) and np.isfinite(theirs_r) and np.sign(r) != np.sign(theirs_r))
        draws, how = authors_epochs_draws(name, theirs_r, theirs_r2, e, len(boot))
        row.update({f"{k}_e{e}": v for k, v in difference(value, boot, theirs_r2, draws).items()})
        row[f"authors_side_e{e}"] = how
    row.update({f"{k}_230": v for k, v in difference(
        value, boot, c["authors"], authors_r2_draws(name, c["authors"], len(boot))).items()})
    return row


def claims_long(table: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """One row per (claim, population): the statistic, its 95 % interval from a bootstrap over
    design points with each limit's MC standard error, n models, n clusters and Kish's n_eff,
    the verdict (``verdicts``) and whether it is at the edge; for R² claims also r with its
    interval and sign verdict, the authors' like-for-like r, and ΔR² against their 1- and
    3-epoch models (equivalence) and their 230 (reference)."""
    pops, _ = populations(table)
    rows = []
    for pop_name, pop in pops.items():
        clusters = design_point_ids(pop)
        W = cluster_bootstrap_weights(clusters, n_bootstrap, seed) if len(pop) else np.zeros((n_bootstrap, 0))
        for c in _claims():
            value, boot, used = c["stat"](pop, W)
            row = {"claim": c["claim"], "figure": c["figure"], "statistic": c["statistic"],
                   "claimed": c["claimed"], "population": pop_name, **cluster_counts(clusters[used]),
                   **_interval(value, boot, c["verdict"])}
            if c["statistic"] == "R²":
                row.update(_r2_extras(c, pop, W, value, boot))
            rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: float, lo: float, hi: float, statistic: str) -> str:
    if not np.isfinite(value):
        return "n/a"
    fmt = "{:+.2f}" if statistic in ("r", "ΔR²") else "{:.2f}"
    return f"{fmt.format(value)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _se_cell(se_lo: float, se_hi: float) -> str:
    return f"±{se_lo:.3f} / ±{se_hi:.3f}" if np.isfinite(se_lo) and np.isfinite(se_hi) else ""


def _authors_pooled(c: dict) -> str:
    """The authors' value on their 230 models, with their 95 % interval where known."""
    if c["authors"] is None:
        return ""
    if c["statistic"] == "ΔR²":
        return f"{c['authors']:+.3f}"
    ci = AUTHORS_R2_CI.get(c["measure"])
    return f"{c['authors']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _authors_epochs(c: dict, epochs: int) -> str:
    """The authors' value on their models trained ``epochs`` epochs: "r +0.98 (n 80)";
    for R² claims their r beside it."""
    got = c["by_epochs"].get(epochs)
    if got is None:
        return "n/a"
    r, r2, n = got
    if c["statistic"] == "r":
        return f"r {r:+.2f} (n {n})"
    if c["statistic"] == "ΔR²":
        return f"ΔR² {r2:+.3f} (n {n})"
    return f"R² {r2:.3f}, r {r:+.2f} (n {n})"


def _dr2_cell(g: pd.Series, suffix: str) -> str:
    if g.get(f"equivalence{suffix}", "n/a") == "n/a":
        return ""
    cell = _cell(g[f"dr2{suffix}"], g[f"dr2_low{suffix}"], g[f"dr2_high{suffix}"], "ΔR²")
    return f"{cell}: {with_edge(g[f'equivalence{suffix}'], g[f'equivalence_edge{suffix}'])}"


def _sign_cell(g: pd.Series) -> str:
    """Our r with its interval, and which of the authors' like-for-like signs differ from ours."""
    cell = _cell(g["r_value"], g["r_ci_low"], g["r_ci_high"], "r")
    differs = [f"{e}-epoch" for e in LIKE_FOR_LIKE if g.get(f"sign_differs_e{e}", False)]
    return cell + (f"; sign differs from the authors' {' and '.join(differs)} r" if differs else "")


VERDICT = f"verdict ({PRIMARY})"
SE = f"MC SE of the limits ({PRIMARY})"
R_COLUMN = f"r [95 %] ({PRIMARY})"


AS_STRONG = "as strong as the authors'"


def _as_strong(g: pd.Series) -> str:
    """One verdict where the like-for-like equivalence verdicts agree, else each quoted."""
    each = [with_edge(g[f"equivalence_e{e}"], g[f"equivalence_edge_e{e}"]) for e in LIKE_FOR_LIKE]
    if len(set(each)) == 1:
        return each[0]
    return "; ".join(f"{e}-epoch: {v}" for e, v in zip(LIKE_FOR_LIKE, each, strict=True))


def _dr2_column(e: int | str) -> str:
    who = "230 models, reference" if e == 230 else f"{e}-epoch models"
    return f"ΔR² vs authors' {who} ({PRIMARY}, {EQUIVALENCE_LEVEL * 100:.0f} %)"


def claims_table(table: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """The claims of Figures 1-3 as a table: claim, figure, statistic, what is claimed, the
    authors' values on their 1- and 3-epoch models and their 230, the value and 95 % interval
    on each population with the primary limits' MC standard errors, the verdicts ("at the edge"
    where noise could turn them), r with its interval and sign beside each R², ΔR² against the
    authors' like-for-like models with its equivalence verdict, and models / clusters / n_eff.
    ``attrs["rule"]`` and ``attrs["plateau"]`` say how verdicts and plateau models were decided
    (print them above the table)."""
    long = claims_long(table, n_bootstrap, seed)
    specs = {c["claim"]: c for c in _claims()}
    rows = []
    for (claim, _), group in long.groupby(["claim", "statistic"], sort=False):
        c, by_pop = specs[claim], group.set_index("population")
        first = by_pop.loc[PRIMARY]
        row = {"claim": claim, "figure": c["figure"], "statistic": c["statistic"], "claimed": c["claimed"]}
        row.update({f"authors' {e}-epoch models": _authors_epochs(c, e) for e in LIKE_FOR_LIKE})
        row["authors' 230 models"] = _authors_pooled(c)
        for pop in POPULATIONS:
            g = by_pop.loc[pop]
            row[pop] = _cell(g["value"], g["ci_low"], g["ci_high"], g["statistic"])
        row[SE] = _se_cell(first["se_low"], first["se_high"])
        row[VERDICT] = with_edge(first["verdict"], first["edge"])
        row[f"verdict ({SECONDARY})"] = with_edge(by_pop.loc[SECONDARY, "verdict"], by_pop.loc[SECONDARY, "edge"])
        is_r2 = c["statistic"] == "R²"
        row[R_COLUMN] = _sign_cell(first) if is_r2 else ""
        for e in (*LIKE_FOR_LIKE, 230):
            row[_dr2_column(e)] = _dr2_cell(first, f"_e{e}" if e != 230 else "_230") if is_r2 else ""
        row[AS_STRONG] = _as_strong(first) if is_r2 else ""
        for key, name in (("n", "models"), ("n_clusters", "design points"), ("n_eff", "n_eff")):
            fmt = "{:.1f}" if key == "n_eff" else "{:.0f}"
            row[f"{name} ({' / '.join(POPULATIONS)})"] = " / ".join(fmt.format(by_pop.loc[p, key])
                                                                   for p in POPULATIONS)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["rule"] = rule_text(len(specs), n_bootstrap)
    sides = sorted({v for e in LIKE_FOR_LIKE for v in long.get(f"authors_side_e{e}", pd.Series(dtype=str)).dropna() if v})
    out.attrs["authors_side"] = "authors' side of ΔR²: " + ("; ".join(sides) or "not drawn")
    out.attrs["plateau"] = populations(table)[1]
    return out


def record_claim_findings(findings: Findings, claims_df: pd.DataFrame) -> None:
    """Record, per claim of ``claims_table``: its value and interval on each population, the
    limits' MC errors, the verdicts, r with its sign, ΔR² against the authors with its
    equivalence verdict and the authors' like-for-like values; the counts once."""
    counts = [c for c in claims_df.columns if c.startswith(("models (", "design points (", "n_eff ("))]
    quoted = [*POPULATIONS, SE, VERDICT, f"verdict ({SECONDARY})", R_COLUMN, AS_STRONG,
              *(c for c in claims_df.columns if c.startswith(("ΔR² vs authors", "authors'")))]
    for _, row in claims_df.iterrows():
        claim = row["claim"]
        for col in quoted:
            if isinstance(row[col], str) and row[col] and row[col] != "n/a":
                findings.add(f"{claim}: {col}", row[col], f"claims.csv: {claim}, {col}")
    for col in counts:  # the same for every claim unless a measure drops models
        findings.add(col, " · ".join(sorted(set(claims_df[col]))), f"claims.csv: {col}")
    findings.add("plateau models", claims_df.attrs["plateau"], "claims.csv: attrs plateau (printed above the table)")
    findings.add("authors' side of the like-for-like ΔR²", claims_df.attrs["authors_side"],
                 "claims.csv: attrs authors_side (printed above the table)")


def record_correlation_findings(findings: Findings, corr: pd.DataFrame) -> None:
    """Record, per measure of ``analysis.correlate``: R² and r with their intervals and the
    authors' R² (registry), and the design-point clusters and n_eff of all models."""
    for _, row in corr.iterrows():
        name, where = label(row["measure"]), f"correlations.csv: {row['measure']}"
        findings.add(f"R² {name}", f"{row['r2']:.2f} [{row['r2_ci_low']:.2f}, {row['r2_ci_high']:.2f}]",
                     f"{where}, r2 [r2_ci_low, r2_ci_high]")
        findings.add(f"r {name}", f"{row['r']:+.2f} [{row['r_ci_low']:+.2f}, {row['r_ci_high']:+.2f}]",
                     f"{where}, r [r_ci_low, r_ci_high]")
        if (theirs := REGISTRY[row["measure"]].authors_r2) is not None:
            findings.add(f"authors' R² {name}", theirs, "lib/linguistic_collapse/nc/registry.py: authors_r2 (their 230 models)",
                         fmt="{:.3g}")
    findings.add("design-point clusters (all models)", int(corr["n_clusters"].max()),
                 "correlations.csv: n_clusters", fmt="{:d}")
    findings.add("Kish n_eff (all models)", corr["n_eff"].max(), "correlations.csv: n_eff", fmt="{:.1f}")


def record_units_findings(findings: Findings, units: pd.DataFrame) -> None:
    """Record each CDNV's fold change from the narrowest to the widest models (``cdnv_units_table``)."""
    for _, row in units.iterrows():
        findings.add(f"{row['measure']}: fold change narrowest to widest", row["fold change"],
                     f"cdnv_units: {row['column']}, fold change", fmt="{:.3g}")


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


# ---------------------------------------------------------------------------------------------
# r with its sign for every measure, and nc1_pinv under its eigenvalue cut-offs


# nc1_pinv's registered measure per relative eigenvalue cut-off of Σ_B's pseudo-inverse
PINV_CUTOFFS: dict[str, float] = dict(zip(PINV_MEASURES, PINV_RTOLS, strict=True))
PINV_DEPENDS = "depends on the cut-off"


def measure_columns(table: pd.DataFrame) -> list[str]:
    """The registry's measures (nc1_pinv's cut-off variants among them) that ``table`` has."""
    return [m for m in REGISTRY if m in table.columns]


def _label_of(column: str) -> str:
    """A measure's label; nc1_pinv's for each of its cut-off variants (the ``cutoff`` column
    tells them apart)."""
    return label("nc1_pinv" if column in PINV_CUTOFFS else column)


def signs_table(table: pd.DataFrame, n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Per measure (nc1_pinv's cut-off variants among them) on the primary population:
    r and R² with 95 % design-point intervals and the limits' MC errors, the direction verdict
    (r on the registry's collapse side of 0, ``side_verdict``, at the edge or not), the authors'
    r on their 1- and 3-epoch models and whether its sign differs from ours."""
    pop = populations(table)[0][PRIMARY]
    W = cluster_bootstrap_weights(design_point_ids(pop), n_bootstrap, seed)
    rows = []
    for m in measure_columns(pop):
        sign = REGISTRY[m].expected_sign
        r, boot, used = _r(m)(pop, W)
        ri = _interval(r, boot, lambda lo, hi, s=sign: side_verdict(lo, hi, s))
        r2 = _interval(r * r, boot**2, lambda lo, hi: "")
        row = {"measure": m, "label": _label_of(m), "cutoff": PINV_CUTOFFS.get(m, np.nan),
               "n": int(used.sum()), "r": r, "r_low": ri["ci_low"], "r_high": ri["ci_high"],
               "r_se_low": ri["se_low"], "r_se_high": ri["se_high"], "r2": r * r,
               "r2_low": r2["ci_low"], "r2_high": r2["ci_high"], "collapse_side": "+" if sign > 0 else "−",
               "direction": with_edge(ri["verdict"], ri["edge"])}
        for e in LIKE_FOR_LIKE:
            theirs = AUTHORS_BY_EPOCHS.get(m, {}).get(e, (np.nan,))[0]
            row[f"authors_r_e{e}"] = theirs
            row[f"sign_differs_e{e}"] = bool(np.isfinite(r) and np.isfinite(theirs) and np.sign(r) != np.sign(theirs))
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["pinv"] = pinv_direction(out)
    return out


def pinv_direction(signs: pd.DataFrame) -> str:
    """The statement about nc1_pinv's direction with loss: its verdict where every cut-off of
    ``PINV_CUTOFFS`` is in ``signs`` and all give the same one, else ``PINV_DEPENDS`` (or which
    cut-offs are missing)."""
    got = signs.set_index("measure")["direction"] if len(signs) else pd.Series(dtype=str)
    missing = [f"{PINV_CUTOFFS[c]:g}" for c in PINV_CUTOFFS if c not in got.index]
    if missing:
        return f"nc1_pinv's direction not stated: no column for cut-off(s) {', '.join(missing)}"
    verdicts = {got[c] for c in PINV_CUTOFFS}
    cutoffs = ", ".join(f"{v:g}" for v in PINV_CUTOFFS.values())
    if len(verdicts) == 1:
        return f"nc1_pinv, more collapse with lower loss: {verdicts.pop()} under every cut-off ({cutoffs})"
    return f"nc1_pinv, more collapse with lower loss: {PINV_DEPENDS} ({cutoffs}: " + \
        ", ".join(got[c] for c in PINV_CUTOFFS) + ")"


def record_signs_findings(findings: Findings, signs: pd.DataFrame) -> None:
    """Record each measure's r and R² with intervals, its direction verdict and any sign that
    differs from the authors' like-for-like r; and the nc1_pinv statement."""
    for row in signs.itertuples():
        src = f"signs.csv: {row.measure}"
        findings.add(f"{row.label} [{row.measure}]: r [95 %] ({PRIMARY})",
                     _cell(row.r, row.r_low, row.r_high, "r"), f"{src}, r [r_low, r_high]")
        findings.add(f"{row.label} [{row.measure}]: R² [95 %] ({PRIMARY})",
                     _cell(row.r2, row.r2_low, row.r2_high, "R²"), f"{src}, r2 [r2_low, r2_high]")
        findings.add(f"{row.label} [{row.measure}]: direction ({PRIMARY})", row.direction, f"{src}, direction")
        for e in LIKE_FOR_LIKE:
            if getattr(row, f"sign_differs_e{e}"):
                findings.add(f"{row.label} [{row.measure}]: sign differs from the authors' {e}-epoch r",
                             getattr(row, f"authors_r_e{e}"), f"{src}, authors_r_e{e}", fmt="{:+.2f}")
    findings.add("nc1_pinv direction under the cut-offs", signs.attrs["pinv"], "signs.csv: direction of nc1_pinv*")
