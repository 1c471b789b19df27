"""Collapse through depth as tables: one row per model x layer from the metrics files, and
whether each measure is monotone in depth and where it changes most (``07_layers``); how the
features and the distances between class means grow through the residual stream, read from the
statistics files (``growth_table``), so the paper's CDNV's fall can be split into growth and the
scale-free part; and the scale-free CDNV's fall per depth (``by_depth``).

The statistics and per-layer measures come from ``linguistic_collapse.pipeline.layers``; torch only
to read the statistics files (``nc.stats_file.read_layers``, verified, one layer at a time)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import Layout, read_json, resolve
from linguistic_collapse.nc.registry import GEOMETRY, analysis_scale, label
from linguistic_collapse.nc.stats_file import read_layers
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.results import SPEC_COLUMNS

LAYER_COLUMNS = ["n_layer", "layer", "site", "relative_depth", "num_classes"]
SITES = ("residual", "head_input")  # the residual stream at an index; the final norm's output
# The headline through depth: Galanti's CDNV, (var_c + var_c') / (2 ||mu_c - mu_c'||^2), is
# scale-free; the paper's CDNV divides by ||mu_c - mu_c'||^4, so it scales as 1/s^2 when the
# features are multiplied by s and falls through depth partly because the un-normalised residual
# stream grows.
HEADLINE = "nc1_cdnv_galanti"
RATIO_MEASURES = ("nc1_cdnv", "nc1_cdnv_galanti")  # head input against the last residual stream


def _rows(metrics: dict, ck: ModelName) -> list[dict]:
    spec = {"name": str(ck), "run": str(ck.run), **ck.as_dict()}
    n_layer = int(metrics.get("n_layer", ck.depth))
    rows = [{**spec, "n_layer": n_layer, "layer": int(i), "site": "residual",
             "relative_depth": int(i) / n_layer, **values}
            for i, values in sorted(metrics["layers"].items(), key=lambda kv: int(kv[0]))]
    top = {k: metrics[k] for k in (*GEOMETRY, "num_classes") if k in metrics}
    return rows + [{**spec, "n_layer": n_layer, "layer": n_layer, "site": "head_input",
                    "relative_depth": 1.0, **top}]


def layers_table(out_dir: str | os.PathLike, checkpoints: Sequence[ModelName]) -> pd.DataFrame:
    """One row per model x layer of the checkpoints whose metrics hold a ``layers`` section: run
    spec, ``n_layer``, ``layer`` (residual-stream index), ``site`` ("residual", or "head_input"
    for the top features), ``relative_depth`` = layer / n_layer, ``num_classes`` and every
    ``GEOMETRY`` measure. Checkpoints measured without layers are left out (empty table if all)."""
    layout = Layout(resolve(out_dir))
    missing = [str(layout.metrics(ck)) for ck in checkpoints if not layout.metrics(ck).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} metrics files missing, e.g. {missing[0]}; run "
                                "the measure step first")
    rows = []
    for ck in checkpoints:
        metrics = read_json(layout.metrics(ck))
        if metrics.get("layers"):
            rows += _rows(metrics, ck)
    table = pd.DataFrame(rows, columns=SPEC_COLUMNS + LAYER_COLUMNS + GEOMETRY)
    order = table["site"].map({site: i for i, site in enumerate(SITES)})  # residual, then head
    return (table.assign(_order=order)
            .sort_values(["depth", "width", "epochs", "weight_decay", "seed", "checkpoint",
                          "_order", "layer"], ignore_index=True).drop(columns="_order"))


def headline_first(measures: Sequence[str]) -> list[str]:
    """``measures`` with the scale-free ``HEADLINE`` CDNV first (when present)."""
    return sorted(measures, key=lambda m: m != HEADLINE)


def monotone_falls(residual: pd.DataFrame, measure: str) -> tuple[int, int]:
    """(models whose ``measure`` falls monotonically along the residual stream, on its analysis
    scale, models) among the residual-stream rows ``residual`` (a model with one row: no fall)."""
    n = falling = 0
    for _, g in residual.groupby("name"):
        d = np.diff(analysis_scale(g.sort_values("layer")[measure], measure))
        n, falling = n + 1, falling + bool(len(d) and (d <= 0).all())
    return falling, n


def depth_summary(table: pd.DataFrame, measures: Sequence[str] = GEOMETRY,
                  min_blocks: int = 2) -> pd.DataFrame:
    """Per measure (the scale-free ``HEADLINE`` first), over the models with at least
    ``min_blocks`` blocks and three residual layers (a single step is trivially monotone and
    trivially the largest): how many and which fraction of models have the measure monotone in
    depth (non-increasing or non-decreasing along the residual stream), falling and rising
    monotonically, and where the largest change between consecutive layers happens (on the
    analysis scale: the most common step "i->i+1", the fraction of models with it there, and
    the median relative depth of the step's end)."""
    res = table[table["site"] == "residual"]
    rows = []
    for measure in headline_first(measures):
        falling = rising = monotone = 0
        steps, ends = [], []
        models = [g.sort_values("layer") for _, g in res.groupby("name")
                  if len(g) >= 3 and g["n_layer"].iloc[0] >= min_blocks]
        for g in models:
            d = np.diff(analysis_scale(g[measure], measure))
            falling, rising = falling + bool((d <= 0).all()), rising + bool((d >= 0).all())
            monotone += bool((d <= 0).all() or (d >= 0).all())
            j = int(np.nanargmax(np.abs(d)))
            layers = g["layer"].to_numpy()
            steps.append(f"{layers[j]}->{layers[j + 1]}")
            ends.append(layers[j + 1] / g["n_layer"].iloc[0])
        n = len(models)
        mode = pd.Series(steps).mode().iloc[0] if steps else ""
        rows.append({"measure": measure, "label": label(measure), "models": n,
                     "n_falling": falling, "n_rising": rising,
                     "monotone": monotone / n if n else np.nan,
                     "falling": falling / n if n else np.nan,
                     "rising": rising / n if n else np.nan,
                     "largest_step": mode, "largest_step_share": steps.count(mode) / n if n else np.nan,
                     "largest_step_rel_depth": float(np.median(ends)) if n else np.nan})
    return pd.DataFrame(rows)


def not_monotone(table: pd.DataFrame, measure: str = HEADLINE, min_blocks: int = 2) -> list[str]:
    """The models (as in ``depth_summary``) whose ``measure`` is not monotone along the residual
    stream, on its analysis scale."""
    res = table[table["site"] == "residual"]
    out = []
    for name, g in res.groupby("name", sort=False):
        g = g.sort_values("layer")
        if len(g) >= 3 and g["n_layer"].iloc[0] >= min_blocks:
            d = np.diff(analysis_scale(g[measure], measure))
            if not ((d <= 0).all() or (d >= 0).all()):
                out.append(str(name))
    return out


def head_vs_residual(table: pd.DataFrame, measures: Sequence[str] = RATIO_MEASURES
                     ) -> pd.DataFrame:
    """Per model: each measure at the head input (after the final layer norm) divided by its
    value at the last residual stream (index L, before the norm), columns ``<measure>_ratio``.
    The norm rescales every token: a scale-free measure barely moves, the paper's CDNV does."""
    res = table[table["site"] == "residual"]
    last = res.sort_values("layer").groupby("name").tail(1).set_index("name")
    head = table[table["site"] == "head_input"].set_index("name")
    names = [n for n in head.index if n in last.index]
    out = pd.DataFrame({"name": names})
    for m in measures:
        out[f"{m}_ratio"] = (head.loc[names, m] / last.loc[names, m]).to_numpy(dtype=float)
    return out


def ratio_summary(ratios: pd.DataFrame) -> pd.DataFrame:
    """Per measure of ``head_vs_residual``: models, median, min and max of the head/residual
    ratio, and ``fold_lower`` = 1 / median (how many times lower at the head input)."""
    rows = []
    for col in [c for c in ratios.columns if c.endswith("_ratio")]:
        v = ratios[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        med = float(np.median(v)) if len(v) else np.nan
        rows.append({"measure": col[: -len("_ratio")], "label": label(col[: -len("_ratio")]),
                     "models": len(v), "median_ratio": med,
                     "min_ratio": float(v.min()) if len(v) else np.nan,
                     "max_ratio": float(v.max()) if len(v) else np.nan,
                     "fold_lower": 1 / med if med else np.nan})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Growth through depth: feature norms and class-mean distances


GROWTH_COLUMNS = ["mean_norm", "mean_distance", "within_sd"]


def _growth_of(layer: dict) -> dict[str, float]:
    """Of one residual stream's statistics (counts, sums, sq_dev), over the K classes seen:
    ``mean_norm`` = mean_c ‖μ_c‖, ``mean_distance`` = the root-mean-square distance between
    distinct class means, sqrt(2 Σ_c ‖μ_c − μ̄‖² / (K − 1)) (μ̄ their unweighted mean; the
    identity Σ_{c≠c'} ‖μ_c − μ_c'‖² = 2K Σ_c ‖μ_c − μ̄‖²), and ``within_sd`` = sqrt(mean_c σ²_c),
    σ²_c the class's mean squared deviation from μ_c."""
    counts = layer["counts"]
    seen = counts > 0
    n = counts[seen].double()
    mu = layer["sums"][seen].double() / n[:, None]  # (K, D)
    k = int(seen.sum())
    spread = float(((mu - mu.mean(0)) ** 2).sum())
    return {"mean_norm": float(mu.norm(dim=1).mean()),
            "mean_distance": float(np.sqrt(2 * spread / (k - 1))) if k > 1 else np.nan,
            "within_sd": float(np.sqrt(float((layer["sq_dev"][seen].double() / n).mean())))}


def growth_table(out_dir: str | os.PathLike, layers: pd.DataFrame) -> pd.DataFrame:
    """Per model x residual stream of ``layers`` (``layers_table``): ``name, depth, width,
    epochs, n_layer, layer, relative_depth``, the growth columns of ``_growth_of`` (from the
    model's statistics file) and both CDNVs (from ``layers``)."""
    layout, rows = Layout(resolve(out_dir)), []
    res = layers[layers["site"] == "residual"]
    for name, g in res.groupby("name", sort=False):
        ck = ModelName.parse(str(name))
        cdnv = g.set_index("layer")[["nc1_cdnv", "nc1_cdnv_galanti"]]
        for i, layer in read_layers(layout.stats(ck)):
            if i in cdnv.index:
                first = g.iloc[0]
                rows.append({"name": name, "depth": first["depth"], "width": first["width"],
                             "epochs": first["epochs"], "n_layer": int(first["n_layer"]), "layer": i,
                             "relative_depth": i / int(first["n_layer"]), **_growth_of(layer),
                             **cdnv.loc[i].to_dict()})
    return pd.DataFrame(rows, columns=["name", "depth", "width", "epochs", "n_layer", "layer",
                                       "relative_depth", *GROWTH_COLUMNS, "nc1_cdnv", "nc1_cdnv_galanti"])


def growth_summary(growth: pd.DataFrame) -> pd.DataFrame:
    """Per model, from the embeddings (residual index 0) to the last residual stream (index L),
    in dex (log10 of last / first): ``d_norm``, ``d_distance``, ``d_within`` and both CDNVs'
    changes ``d_cdnv``, ``d_galanti``. The paper's CDNV scales as 1/s² when every feature is
    multiplied by s, so with s the class-mean distance exactly d_cdnv = −2 d_distance +
    ``d_cdnv_rescaled``, the change of CDNV x mean_distance² (the paper's CDNV at a fixed
    class-mean distance); ``distance_share`` = −2 d_distance / d_cdnv is the share of its change
    that the growth of the distances accounts for (above 1: at a fixed distance it would rise)."""
    rows = []
    for name, g in growth.groupby("name", sort=False):
        g = g.sort_values("layer")
        first, last = g.iloc[0], g.iloc[-1]

        def dex(col: str, first=first, last=last) -> float:
            return float(np.log10(last[col] / first[col]))

        d = {f"d_{k}": dex(c) for k, c in (("norm", "mean_norm"), ("distance", "mean_distance"),
                                            ("within", "within_sd"), ("cdnv", "nc1_cdnv"),
                                            ("galanti", "nc1_cdnv_galanti"))}
        rows.append({"name": name, "depth": first["depth"], "width": first["width"],
                     "epochs": first["epochs"], "n_layer": int(first["n_layer"]), **d,
                     "d_cdnv_rescaled": d["d_cdnv"] + 2 * d["d_distance"],
                     "distance_share": -2 * d["d_distance"] / d["d_cdnv"] if d["d_cdnv"] else np.nan})
    return pd.DataFrame(rows)


def by_depth(layers: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Per depth L (``n_layer``): ``models``; of the scale-free ``HEADLINE`` CDNV, how many fall
    from the embeddings to the last residual stream (``n_galanti_falls``) and how many fall
    monotonically (``n_galanti_monotone_fall``; NaN for L = 1, whose one step is trivially
    monotone); how many have the paper's CDNV falling (``n_cdnv_falls``) and, of those, the
    distances' growth accounting for more than half of the fall (``n_growth_most``); the median
    changes in dex (``growth_summary``)."""
    res = layers[layers["site"] == "residual"]
    rows = []
    for n_layer, g in summary.groupby("n_layer"):
        monotone = monotone_falls(res[res["name"].isin(g["name"])], HEADLINE)[0]
        falls = g["d_cdnv"] < 0
        rows.append({"n_layer": int(n_layer), "models": len(g),
                     "n_galanti_falls": int((g["d_galanti"] < 0).sum()),
                     "n_galanti_monotone_fall": monotone if n_layer >= 2 else np.nan,
                     "n_cdnv_falls": int(falls.sum()),
                     "n_growth_most": int((falls & (g["distance_share"] > 0.5)).sum()),
                     **{f"median_{c}": float(g[c].median()) for c in
                        ("d_galanti", "d_cdnv", "d_distance", "d_norm", "d_within", "d_cdnv_rescaled")}})
    return pd.DataFrame(rows)


def describe_growth(summary: pd.DataFrame, per_depth: pd.DataFrame) -> str:
    """Sentences from ``growth_summary`` and ``by_depth``: how much of the paper's CDNV's fall
    the growth of the class-mean distances accounts for, and the scale-free CDNV per depth."""
    if summary.empty:
        return "No per-layer statistics: set collect.layers in the profile and collect again."
    falls = summary[summary["d_cdnv"] < 0]
    most = int((falls["distance_share"] > 0.5).sum())
    lines = [f"From the embeddings to the last residual stream, over {len(summary)} models (medians, "
             f"dex): class-mean distances {summary['d_distance'].median():+.2f}, class-mean norms "
             f"{summary['d_norm'].median():+.2f}, within-class sd {summary['d_within'].median():+.2f}; "
             f"the paper's CDNV {summary['d_cdnv'].median():+.2f}, of which the distances' growth "
             f"accounts for {-2 * summary['d_distance'].median():+.2f} (at a fixed class-mean "
             f"distance it would change by {summary['d_cdnv_rescaled'].median():+.2f}); Galanti's "
             f"(scale-free) {summary['d_galanti'].median():+.2f}. The paper's CDNV falls in "
             f"{len(falls)} models; the distances' growth is more than half of that fall in {most} of them."]
    for r in per_depth.itertuples():
        mono = ("" if not np.isfinite(r.n_galanti_monotone_fall)
                else f", monotonically in {int(r.n_galanti_monotone_fall)}")
        lines.append(f"- L = {r.n_layer}: Galanti's CDNV falls from the embeddings to the last residual "
                     f"stream in {r.n_galanti_falls} of {r.models} models{mono} (median "
                     f"{r.median_d_galanti:+.2f} dex); the paper's CDNV falls in {r.n_cdnv_falls}, "
                     f"more than half of it growth in {r.n_growth_most} (median "
                     f"{r.median_d_cdnv:+.2f} dex, distances {r.median_d_distance:+.2f}).")
    return "\n".join(lines)


def describe_depth(summary: pd.DataFrame, ratios: pd.DataFrame | None = None,
                   not_monotone_names: Sequence[str] = ()) -> str:
    """The notebook's text from ``depth_summary`` (and ``ratio_summary``, ``not_monotone`` of the
    headline): the scale-free CDNV first, with the caveat on the paper's CDNV, then one sentence
    per measure."""
    if summary.empty or not summary["models"].max():
        return ("No model with per-layer statistics of at least two blocks: set collect.layers "
                "in the profile and collect again.")
    lines = []
    by = summary.set_index("measure")
    if HEADLINE in by.index:
        h = by.loc[HEADLINE]
        lines.append(f"Headline: {h['label']}, scale-free, falls monotonically through the "
                     f"residual stream in {h['n_falling']} of {h['models']} models and rises "
                     f"monotonically in {h['n_rising']}"
                     + (f"; not monotone: {', '.join(not_monotone_names)}." if not_monotone_names
                        else "."))
        if "nc1_cdnv" in by.index:
            c = by.loc["nc1_cdnv"]
            lines.append(f"The paper's CDNV divides by the fourth power of the mean difference "
                         f"and so falls partly because the un-normalised residual stream grows "
                         f"({c['n_falling']} of {c['models']} models fall monotonically).")
    if ratios is not None and len(ratios):
        parts = [f"{r.label} {r.median_ratio:.3g}× (median; {r.min_ratio:.3g}–{r.max_ratio:.3g})"
                 for r in ratios.itertuples()]
        lines.append(f"At the head input (after the final layer norm) against the last residual "
                     f"stream, over {int(ratios['models'].max())} models: " + "; ".join(parts)
                     + ".")
    for r in summary.itertuples():
        lines.append(f"- {r.label}: monotone in {r.monotone:.0%} of {r.models} models "
                     f"({r.falling:.0%} fall and {r.rising:.0%} rise all the way); largest "
                     f"change between residual indices {r.largest_step} in "
                     f"{r.largest_step_share:.0%} of models (median relative depth of the "
                     f"step's end {r.largest_step_rel_depth:.2f}).")
    return "\n".join(lines)


def record_findings(findings: Findings, summary: pd.DataFrame, ratios: pd.DataFrame,
                    exceptions: Sequence[str]) -> None:
    """Add 07_layers' numbers to ``findings``: monotone counts of both CDNVs, the headline's
    exceptions, and the head-input / last-residual ratios."""
    rows = summary.set_index("measure")
    for m in (HEADLINE, "nc1_cdnv"):
        if m in rows.index and rows.loc[m, "models"]:
            r, src = rows.loc[m], f"07_layers depth_summary: {m}"
            findings.add(f"{r['label']}: models with at least two blocks", int(r["models"]),
                         f"{src}, models", "{:d}")
            findings.add(f"{r['label']}: falls monotonically through depth (models)",
                         int(r["n_falling"]), f"{src}, n_falling", "{:d}")
            findings.add(f"{r['label']}: rises monotonically through depth (models)",
                         int(r["n_rising"]), f"{src}, n_rising", "{:d}")
    findings.add(f"{label(HEADLINE)}: models not monotone through depth",
                 ", ".join(exceptions) or "none", "07_layers depth.not_monotone")
    for r in ratios[ratios["models"] > 0].itertuples():
        src = f"07_layers ratio_summary: {r.measure}"
        findings.add(f"{r.label}: head input / last residual stream (median ratio)",
                     r.median_ratio, f"{src}, median_ratio", "{:.3g}")
        findings.add(f"{r.label}: times lower at the head input (1 / median ratio)",
                     r.fold_lower, f"{src}, fold_lower", "{:.3g}")
        findings.add(f"{r.label}: head / residual ratio range",
                     f"{r.min_ratio:.3g} to {r.max_ratio:.3g}", f"{src}, min_ratio, max_ratio")


def record_growth_findings(findings: Findings, summary: pd.DataFrame, per_depth: pd.DataFrame) -> None:
    """Add the growth numbers to ``findings``: medians of ``growth_summary`` (saved as
    ``layers_growth.csv``) and, per depth, the scale-free CDNV's falls (``layers_by_depth.csv``)."""
    if summary.empty:
        return
    src = "layers_growth.csv"
    for col, what in (("d_distance", "class-mean distance growth"), ("d_norm", "class-mean norm growth"),
                      ("d_cdnv", "paper's CDNV change"), ("d_cdnv_rescaled", "paper's CDNV change at a fixed distance"),
                      ("d_galanti", "Galanti's CDNV change")):
        findings.add(f"depth: {what}, embeddings to last residual stream (median dex)",
                     float(summary[col].median()), f"{src}: {col}, median", "{:+.2f}")
    falls = summary[summary["d_cdnv"] < 0]
    findings.add("depth: models whose paper's CDNV falls", len(falls), f"{src}: d_cdnv < 0", "{:d}")
    findings.add("depth: of those, distance growth more than half of the fall", int((falls["distance_share"] > 0.5).sum()),
                 f"{src}: distance_share > 0.5 where d_cdnv < 0", "{:d}")
    for r in per_depth.itertuples():
        where = f"layers_by_depth.csv: n_layer {r.n_layer}"
        findings.add(f"depth L={r.n_layer}: Galanti's CDNV falls (models of {r.models})", int(r.n_galanti_falls),
                     f"{where}, n_galanti_falls", "{:d}")
        if np.isfinite(r.n_galanti_monotone_fall):
            findings.add(f"depth L={r.n_layer}: Galanti's CDNV falls monotonically (models of {r.models})",
                         int(r.n_galanti_monotone_fall), f"{where}, n_galanti_monotone_fall", "{:d}")
