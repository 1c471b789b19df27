"""The paper's claims about Figures 1-3, tested as it states them (docs/paper.md section 6).

Every claim comes from ``linguistic_collapse.nc.registry``: for each measure with a stated relation to loss,
a *direction* claim (more collapse goes with lower loss: r has the registry's expected sign)
where the paper states a strong or clear relation (for equiangularity's "some relationship" it
states no direction, and on the authors' own models its CV *rises* as loss falls, r = -0.59),
a *strength* claim (R² in the band of the paper's word, ``registry.BANDS``) set beside the same
statistic over the authors' 230 models and over their models of our training lengths; and each
comparative claim (``registry.COMPARISONS``) as a difference of R². Each is evaluated on two
populations (docs/preregistration.md): the final checkpoint of each grid run, seed replicas
excluded (primary, ``verdicts.PRIMARY``), and the same without the loss-plateau models
(``plateau_mask``), with 95 % intervals from a bootstrap over design points, judged by the rule
of ``linguistic_collapse.tables.verdicts``. No torch import.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from linguistic_collapse.nc.registry import (
    BANDS,
    COMPARISONS,
    REGISTRY,
    band,
    claimed_measures,
    label,
)
from linguistic_collapse.tables.analysis import (
    cluster_bootstrap_weights,
    pearson_rows,
    percentile_ci,
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
    PRIMARY,
    band_verdict,
    equivalence,
    rule_text,
    side_verdict,
)

POPULATIONS = ("grid final", "grid final, no plateau")  # the first is ``verdicts.PRIMARY``
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
        return final
    lowest = final.groupby(spec, dropna=False)["seed"].transform("min")
    return final[final["seed"] == lowest]


def populations(table: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], str]:
    """The two populations of the claims (``POPULATIONS``): the grid's final checkpoints and the
    same without its plateau models (``plateau_mask`` on that population), and the plateau
    description."""
    primary = grid_final_rows(table)
    plateau, how = plateau_mask(primary)
    return {POPULATIONS[0]: primary, POPULATIONS[1]: primary[~plateau]}, how


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
    pooled value, their value by training length, and how a 95 % interval is judged."""
    out = []
    for name in claimed_measures():
        m = REGISTRY[name]
        fig = ", ".join(m.figures)
        by_epochs = AUTHORS_BY_EPOCHS.get(name, {})
        if m.claim in ("strong", "clear"):  # "some" and "negligible" state no direction
            side = "> 0" if m.expected_sign > 0 else "< 0"
            out.append({"claim": f"{label(name)}: more collapse, lower loss", "figure": fig,
                        "statistic": "r", "stat": _r(name), "claimed": f"r {side}",
                        "measure": name, "authors": None,
                        "by_epochs": {e: (v[0], v[2]) for e, v in by_epochs.items()},
                        "verdict": lambda lo, hi, s=m.expected_sign: side_verdict(lo, hi, s)})
        lo_band, hi_band = BANDS[m.claim]
        claimed = (f"R² < {hi_band:g}" if lo_band == 0 else f"R² ≥ {lo_band:g}" if hi_band >= 1
                   else f"{lo_band:g} ≤ R² < {hi_band:g}")
        out.append({"claim": f"{label(name)}: {m.claim} relation to loss", "figure": fig,
                    "statistic": "R²", "stat": _r2(name), "claimed": f"{m.claim}: {claimed}",
                    "measure": name, "authors": m.authors_r2,
                    "by_epochs": {e: (v[1], v[2]) for e, v in by_epochs.items()},
                    "verdict": lambda lo, hi, c=m.claim: band_verdict(lo, hi, c)})
    for c in COMPARISONS:
        a, b = REGISTRY[c.better].authors_r2, REGISTRY[c.worse].authors_r2
        ea, eb = AUTHORS_BY_EPOCHS.get(c.better, {}), AUTHORS_BY_EPOCHS.get(c.worse, {})
        out.append({"claim": c.text, "figure": c.figure, "statistic": "ΔR²",
                    "stat": _delta_r2(c.better, c.worse), "claimed": "ΔR² > 0", "measure": None,
                    "authors": None if a is None or b is None else a - b,
                    "by_epochs": {e: (ea[e][1] - eb[e][1], min(ea[e][2], eb[e][2]))
                                  for e in sorted(set(ea) & set(eb))},
                    "verdict": lambda lo, hi: side_verdict(lo, hi, +1)})
    return out


def claims_long(table: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (claim, population): the statistic and its 95 % interval from a bootstrap
    over design points, n models, n clusters and Kish's n_eff of the models used, the verdict
    (``verdicts``), and for R² claims the band of the point value and ΔR² against the authors'
    230 with its equivalence verdict."""
    pops, _ = populations(table)
    rows = []
    for pop_name, pop in pops.items():
        pop = pop.reset_index(drop=True)
        clusters = design_point_ids(pop)
        W = cluster_bootstrap_weights(clusters, n_bootstrap, seed) if len(pop) else np.zeros((n_bootstrap, 0))
        for c in _claims():
            value, boot, used = c["stat"](pop, W)
            lo, hi = percentile_ci(boot, LEVEL)
            row = {"claim": c["claim"], "figure": c["figure"], "statistic": c["statistic"],
                   "claimed": c["claimed"], "authors": c["authors"], "population": pop_name,
                   **cluster_counts(clusters[used]), "value": value, "ci_low": lo, "ci_high": hi,
                   "verdict": c["verdict"](lo, hi) if np.isfinite(value) else "n/a"}
            if c["statistic"] == "R²":
                row["band"] = band(min(max(value, 0.0), 1.0)) if np.isfinite(value) else "n/a"
                row.update(equivalence(value, boot, c["measure"], c["authors"]))
            rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: float, lo: float, hi: float, statistic: str) -> str:
    if not np.isfinite(value):
        return "n/a"
    fmt = "{:+.2f}" if statistic in ("r", "ΔR²") else "{:.2f}"
    return f"{fmt.format(value)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _authors_pooled(c: dict) -> str:
    """The authors' value on their 230 models, with their 95 % interval where known."""
    if c["authors"] is None:
        return ""
    if c["statistic"] == "ΔR²":
        return f"{c['authors']:+.3f}"
    ci = AUTHORS_R2_CI.get(c["measure"])
    return f"{c['authors']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _authors_epochs(c: dict, epochs: int) -> str:
    """The authors' value on their models trained ``epochs`` epochs: "r −0.92 (n 80)"."""
    got = c["by_epochs"].get(epochs)
    if got is None:
        return "n/a"
    fmt = "{:.3f}" if c["statistic"] == "R²" else "{:+.2f}"
    return f"{c['statistic']} {fmt.format(got[0])} (n {got[1]})"


def _epochs_label(e: int) -> str:
    return f"authors' {e}-epoch models"


def claims_table(table: pd.DataFrame, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The claims of Figures 1-3 as a table: claim, figure, statistic, what is claimed, the
    authors' value on their 230 models and on their models of our training lengths, the value
    and 95 % interval on each population, the verdicts (primary first), ΔR² against the
    authors' with its equivalence verdict (primary population), and models / clusters / n_eff.
    ``attrs["rule"]`` and ``attrs["plateau"]`` say how verdicts and plateau models were decided
    (print them above the table)."""
    long = claims_long(table, n_bootstrap, seed)
    specs = {c["claim"]: c for c in _claims()}
    epochs = sorted(int(e) for e in table["epochs"].unique()) if "epochs" in table else []
    secondary = [p for p in POPULATIONS if p != PRIMARY]
    rows = []
    for (claim, _), group in long.groupby(["claim", "statistic"], sort=False):
        c, by_pop = specs[claim], group.set_index("population")
        first = by_pop.loc[PRIMARY]
        row = {"claim": claim, "figure": c["figure"], "statistic": c["statistic"],
               "claimed": c["claimed"], "authors' 230 models": _authors_pooled(c)}
        row.update({_epochs_label(e): _authors_epochs(c, e) for e in epochs})
        for pop in POPULATIONS:
            g = by_pop.loc[pop]
            row[pop] = _cell(g["value"], g["ci_low"], g["ci_high"], g["statistic"])
        row[f"verdict ({PRIMARY}, primary)"] = first["verdict"]
        row[f"verdicts ({' / '.join(secondary)})"] = " / ".join(by_pop.loc[p, "verdict"] for p in secondary)
        eq = f"ΔR² vs authors' 230 ({PRIMARY}, {EQUIVALENCE_LEVEL * 100:.0f} %)"
        row[eq] = (f"{_cell(first['dr2'], first['dr2_low'], first['dr2_high'], 'ΔR²')}: "
                   f"{first['equivalence']}" if c["statistic"] == "R²" and first["equivalence"] != "n/a"
                   else "")
        for key, name in (("n", "models"), ("n_clusters", "clusters"), ("n_eff", "n_eff")):
            fmt = "{:.1f}" if key == "n_eff" else "{:.0f}"
            row[f"{name} ({' / '.join(POPULATIONS)})"] = " / ".join(fmt.format(by_pop.loc[p, key])
                                                                   for p in POPULATIONS)
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["rule"] = rule_text(len(specs), POPULATIONS)
    out.attrs["plateau"] = populations(table)[1]
    return out


def add_claim_findings(found: Findings, claims_df: pd.DataFrame) -> None:
    """Record, per claim of ``claims_table``: its value and interval on each population, the
    verdicts, ΔR² against the authors with its equivalence verdict and the cluster counts."""
    primary, secondary = f"verdict ({PRIMARY}, primary)", [p for p in POPULATIONS if p != PRIMARY]
    sec_col = f"verdicts ({' / '.join(secondary)})"
    eq_col = next(c for c in claims_df.columns if c.startswith("ΔR² vs authors"))
    counts = [c for c in claims_df.columns if c.startswith(("models (", "clusters (", "n_eff ("))]
    for _, row in claims_df.iterrows():
        claim = row["claim"]
        for pop in POPULATIONS:
            found.add(f"{claim}: {pop}", row[pop], f"claims.csv: {claim}, {pop}")
        for col in (c for c in claims_df.columns if c.startswith("authors'")):
            if isinstance(row[col], str) and row[col]:  # the authors' like-for-like values
                found.add(f"{claim}: {col}", row[col], f"claims.csv: {claim}, {col}")
        found.add(f"{claim}: verdict ({PRIMARY}, primary)", row[primary], f"claims.csv: {claim}, {primary}")
        found.add(f"{claim}: verdicts ({' / '.join(secondary)})", row[sec_col], f"claims.csv: {claim}, {sec_col}")
        if row[eq_col]:
            found.add(f"{claim}: {eq_col}", row[eq_col], f"claims.csv: {claim}, {eq_col}")
    for col in counts:  # the same for every claim unless a measure drops models
        found.add(col, " · ".join(sorted(set(claims_df[col]))), f"claims.csv: {col}")
    found.add("plateau models", claims_df.attrs["plateau"], "claims.csv: attrs plateau (printed above the table)")


def add_correlation_findings(found: Findings, corr: pd.DataFrame) -> None:
    """Record, per measure of ``analysis.correlate``: R² and r with their intervals and the
    authors' R² (registry), and the design-point clusters and n_eff of all models."""
    for _, row in corr.iterrows():
        name, where = label(row["measure"]), f"correlations.csv: {row['measure']}"
        found.add(f"R² {name}", f"{row['r2']:.2f} [{row['r2_ci_low']:.2f}, {row['r2_ci_high']:.2f}]",
                  f"{where}, r2 [r2_ci_low, r2_ci_high]")
        found.add(f"r {name}", f"{row['r']:+.2f} [{row['r_ci_low']:+.2f}, {row['r_ci_high']:+.2f}]",
                  f"{where}, r [r_ci_low, r_ci_high]")
        if (theirs := REGISTRY[row["measure"]].authors_r2) is not None:
            found.add(f"authors' R² {name}", theirs, "lib/linguistic_collapse/nc/registry.py: authors_r2 (their 230 models)",
                      fmt="{:.3g}")
    found.add("design-point clusters (all models)", int(corr["n_clusters"].max()),
              "correlations.csv: n_clusters", fmt="{:d}")
    found.add("Kish n_eff (all models)", corr["n_eff"].max(), "correlations.csv: n_eff", fmt="{:.1f}")


def add_units_findings(found: Findings, units: pd.DataFrame) -> None:
    """Record each CDNV's fold change from the narrowest to the widest models (``cdnv_units_table``)."""
    for _, row in units.iterrows():
        found.add(f"{row['measure']}: fold change narrowest to widest", row["fold change"],
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
