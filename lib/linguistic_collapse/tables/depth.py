"""Collapse through depth as tables: one row per model x layer from the metrics files, and
whether each measure is monotone in depth and where it changes most (``07_layers``).

The statistics and per-layer measures come from ``linguistic_collapse.stages.layers``; no torch."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from linguistic_collapse.core.paths import Layout, read_json, resolve
from linguistic_collapse.lm.runs import RunName
from linguistic_collapse.nc.registry import GEOMETRY, analysis_scale, label
from linguistic_collapse.tables.findings import Findings

SPEC_COLUMNS = ["name", "run", "depth", "width", "epochs", "weight_decay", "seed", "checkpoint"]
LAYER_COLUMNS = ["n_layer", "layer", "site", "relative_depth", "num_classes"]
SITES = ("residual", "head_input")  # the residual stream at an index; the final norm's output
# The headline through depth: Galanti's CDNV, (var_c + var_c') / (2 ||mu_c - mu_c'||^2), is
# scale-free; the paper's CDNV divides by ||mu_c - mu_c'||^4, so it scales as 1/s^2 when the
# features are multiplied by s and falls through depth partly because the un-normalised residual
# stream grows.
HEADLINE = "nc1_cdnv_galanti"
RATIO_MEASURES = ("nc1_cdnv", "nc1_cdnv_galanti")  # head input against the last residual stream


def _rows(metrics: dict, ck: RunName) -> list[dict]:
    spec = {"name": str(ck), "run": str(ck.run), **ck.as_dict()}
    n_layer = int(metrics.get("n_layer", ck.depth))
    rows = [{**spec, "n_layer": n_layer, "layer": int(i), "site": "residual",
             "relative_depth": int(i) / n_layer, **values}
            for i, values in sorted(metrics["layers"].items(), key=lambda kv: int(kv[0]))]
    top = {k: metrics[k] for k in (*GEOMETRY, "num_classes") if k in metrics}
    return rows + [{**spec, "n_layer": n_layer, "layer": n_layer, "site": "head_input",
                    "relative_depth": 1.0, **top}]


def layers_table(out_dir: str | os.PathLike, checkpoints: Sequence[RunName]) -> pd.DataFrame:
    """One row per model x layer of the checkpoints whose metrics hold a ``layers`` section: run
    spec, ``n_layer``, ``layer`` (residual-stream index), ``site`` ("residual", or "head_input"
    for the top features), ``relative_depth`` = layer / n_layer, ``num_classes`` and every
    ``GEOMETRY`` measure. Checkpoints measured without layers are left out (empty table if all)."""
    layout = Layout(resolve(out_dir))
    missing = [str(layout.metrics(ck)) for ck in checkpoints if not layout.metrics(ck).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} metrics files missing, e.g. {missing[0]}; run "
                                "the measure stage first")
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

