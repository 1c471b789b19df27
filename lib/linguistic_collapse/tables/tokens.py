"""Per-token analysis (paper section 5, per-class measures): decoded token table, first names
against the average token, the most and least collapsed tokens, nearest classes, and one
token's summary (shown by the explorer of ``linguistic_collapse.figures.tokens``).

Rankings and comparisons use only classes with at least ``min_count`` training samples (the
profile's ``analysis.min_count``, always passed: no function here has a default for it): a
class seen once has zero within-class variance by construction, and few samples make its
variability noise. No torch import (stats mappings may hold tensors or arrays).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.verdicts import NAMES_RULE

FIRST_NAMES_FILE = Path(__file__).with_name("first_names.txt")


def load_first_names(path: str | os.PathLike = FIRST_NAMES_FILE) -> frozenset[str]:
    """Common English first names, lowercase (``tables/first_names.txt``, package data)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return frozenset(s.strip().lower() for s in lines if s.strip() and not s.startswith("#"))


def name_set(names: Iterable[str] | None = None) -> frozenset[str]:
    """``names`` lowercased as a set, or ``load_first_names()`` when None (every function here
    that takes ``names``)."""
    return load_first_names() if names is None else frozenset(n.lower() for n in names)


def decode_token(tokenizer: Any, token_id: int) -> str:
    """A token's text without the byte-level BPE space marker ('Ġ') or surrounding whitespace."""
    return tokenizer.decode([int(token_id)]).replace("\u0120", " ").strip()


def token_table(per_class: pd.DataFrame, tokenizer: Any) -> pd.DataFrame:
    """Per-class measures plus the decoded ``token`` string and relative ``frequency``."""
    need = {"token_id", "count", "variability", "interference"}
    if not need <= set(per_class.columns):
        raise ValueError(f"per-class frame lacks columns {sorted(need - set(per_class.columns))}; "
                         "use linguistic_collapse.nc.measure.measure_stats(stats, per_class=True)")
    out = per_class.copy()
    out["token"] = [decode_token(tokenizer, t) for t in out["token_id"]]
    out["frequency"] = out["count"] / out["count"].sum()
    return out


def eligible(tokens_df: pd.DataFrame, *, min_count: int) -> pd.DataFrame:
    """The classes with at least ``min_count`` training samples."""
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    return tokens_df[tokens_df["count"] >= min_count]


def exclusion_note(tokens_df: pd.DataFrame, *, min_count: int) -> str:
    """One line: how many classes the rankings exclude for having fewer than ``min_count`` samples."""
    kept = len(eligible(tokens_df, min_count=min_count))
    n = len(tokens_df)
    return (f"{n - kept} of {n} classes ({(n - kept) / max(n, 1):.0%}) have fewer than {min_count} "
            f"training samples and are excluded from the rankings and name comparisons; {kept} remain")


def first_name_table(tokens_df: pd.DataFrame, names: Iterable[str] | None = None, *,
                     min_count: int) -> pd.DataFrame:
    """Tokens that are a first name (case-insensitive, whole token), most frequent first, then an
    "average token" row (mean over tokens; its count rounded) and a count-weighted average row;
    all over the classes with at least ``min_count`` samples. ``token_id`` and ``count`` are
    integers (``Int64``; the average rows have no token id)."""
    names = name_set(names)
    pool = eligible(tokens_df, min_count=min_count)
    cols = ["token", "token_id", "count", "frequency", "variability", "interference"]
    cols = [c for c in cols if c in pool.columns]
    is_name = pool["token"].str.lower().isin(names)
    found = pool.loc[is_name, cols].sort_values("count", ascending=False).assign(kind="first name")
    w = pool["count"].to_numpy(dtype=float)
    mean = {c: pool[c].mean() for c in ("count", "frequency", "variability", "interference")
            if c in pool.columns}
    weighted = {c: float(np.average(pool[c], weights=w)) if len(pool) else np.nan
                for c in ("variability", "interference")}
    averages = pd.DataFrame([
        {"token": "average token", "kind": "average", **mean},
        {"token": "average token (count-weighted)", "kind": "average", **weighted},
    ])
    table = pd.concat([found, averages], ignore_index=True)
    # token ids and counts stay whole numbers beside the average rows (no id; a mean count,
    # rounded to whole samples): pandas' nullable integers, not floats
    for c in ("token_id", "count"):
        if c in table.columns:
            table[c] = table[c].round().astype("Int64")
    return table


def word_table(tokens_df: pd.DataFrame, *, min_count: int) -> pd.DataFrame:
    """The classes with at least ``min_count`` samples merged into words: tokens whose decoded
    text agrees up to case and surrounding whitespace ("Lily", " Lily", "lily") are one word.
    Per word: ``variants`` (token classes merged), their ``token_ids``, the summed ``count`` and
    ``frequency``, and ``variability`` and ``interference`` as the count-weighted mean over its
    variants (each variant's per-class value weighted by its samples; the samples are not
    re-pooled into one class, which would change every other class's measures too)."""
    pool = eligible(tokens_df, min_count=min_count)
    key = pool["token"].str.strip().str.lower()
    rows = []
    for word, g in pool.groupby(key, sort=False):
        w = g["count"].to_numpy(dtype=float)
        rows.append({"word": word, "variants": len(g),
                     "token_ids": " ".join(str(int(i)) for i in g["token_id"]),
                     "count": int(w.sum()),
                     "frequency": float(g["frequency"].sum()) if "frequency" in g else np.nan,
                     "variability": float(np.average(g["variability"], weights=w)),
                     "interference": float(np.average(g["interference"], weights=w))})
    cols = ["word", "variants", "token_ids", "count", "frequency", "variability", "interference"]
    return pd.DataFrame(rows, columns=cols).sort_values("count", ascending=False,
                                                        ignore_index=True)


def distinct_names(tokens_df: pd.DataFrame, names: Iterable[str] | None = None, *,
                   min_count: int) -> pd.DataFrame:
    """The first names among ``word_table``'s words (variants merged), most frequent first."""
    names = name_set(names)
    words = word_table(tokens_df, min_count=min_count)
    return words[words["word"].isin(names)].reset_index(drop=True)


def log_frequency_bins(count: pd.Series, per_decade: int = 4) -> pd.Series:
    """Each count's bin on a log10 scale, ``per_decade`` bins per factor of 10 (an integer id)."""
    if per_decade < 1:
        raise ValueError(f"per_decade must be at least 1, got {per_decade}")
    return np.floor(np.log10(count.astype(float)) * per_decade).astype(int)


def name_test(tokens_df: pd.DataFrame, names: Iterable[str] | None = None, *,
              min_count: int, per_decade: int = 4,
              measures: Sequence[str] = ("variability", "interference")) -> pd.DataFrame:
    """Distinct first names against other words of similar frequency, per measure: a two-sided
    Mann-Whitney U test (scipy) of the names' values against those of the non-name words that
    fall in the log-frequency bins (``log_frequency_bins``) holding at least one name. Returns
    the sizes, both medians, U, p and the rank-biserial effect 2U/(n1 n2) - 1 (negative: the
    names are lower)."""
    # heavy (scipy): loaded only when this statistic is computed
    from scipy.stats import mannwhitneyu

    names = name_set(names)
    words = word_table(tokens_df, min_count=min_count)
    words = words.assign(bin=log_frequency_bins(words["count"], per_decade),
                         is_name=words["word"].isin(names))
    named = words[words["is_name"]]
    matched = words[~words["is_name"] & words["bin"].isin(set(named["bin"]))]
    rows = []
    for m in measures:
        a, b = named[m].to_numpy(dtype=float), matched[m].to_numpy(dtype=float)
        if len(a) and len(b):
            u, p = mannwhitneyu(a, b, alternative="two-sided")
            u, p, effect = float(u), float(p), 2 * float(u) / (len(a) * len(b)) - 1
        else:
            u = p = effect = np.nan
        rows.append({"measure": m, "names": len(a), "matched_others": len(b),
                     "bins": int(named["bin"].nunique()), "per_decade": per_decade,
                     "median_names": float(np.median(a)) if len(a) else np.nan,
                     "median_others": float(np.median(b)) if len(b) else np.nan,
                     "u": u, "p": p, "rank_biserial": effect})
    return pd.DataFrame(rows)


def record_findings(findings: Findings, model: str, tokens_df: pd.DataFrame,
                    names: pd.DataFrame, distinct: pd.DataFrame, test: pd.DataFrame,
                    min_count: int) -> None:
    """Add 06_tokens' numbers to ``findings``: the model, class and name counts, the average
    token's interference and, per measure, the frequency-matched name test."""
    findings.add("tokens model", model, "06_tokens: results.largest_model")
    findings.add("classes with at least min_count samples", len(eligible(tokens_df, min_count=min_count)),
                 "06_tokens: tokens.eligible", "{:d}")
    findings.add("first-name tokens", int((names["kind"] == "first name").sum()),
                 "06_tokens: first_name_table", "{:d}")
    findings.add("distinct first names (variants merged)", len(distinct),
                 "06_tokens: distinct_names", "{:d}")
    average = names.set_index("token").loc["average token"]
    findings.add("average token interference", float(average["interference"]),
                 "06_tokens first_name_table: average token, interference", "{:+.3f}")
    for r in test.itertuples():
        src = f"06_tokens name_test: {r.measure}"
        findings.add(f"names: median {r.measure}", r.median_names, src, "{:.3f}")
        findings.add(f"frequency-matched other words: median {r.measure}", r.median_others, src,
                     "{:.3f}")
        findings.add(f"{r.measure}: names / matched others (n)",
                     f"{r.names} / {r.matched_others}", src)
        findings.add(f"{r.measure}: Mann-Whitney p (two-sided)", r.p, src, "{:.2g}")
        findings.add(f"{r.measure}: rank-biserial effect", r.rank_biserial, src, "{:+.2f}")


def _scale(values: pd.Series, measure: str) -> np.ndarray:
    """Variability on log10 (NaN where not positive), interference as it is (a cosine)."""
    v = values.to_numpy(dtype=float)
    if measure != "variability":
        return v
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log10(v), np.nan)


def names_near_average(tokens_df: pd.DataFrame, names: Iterable[str] | None = None, *,
                       min_count: int, measure: str = "variability") -> pd.DataFrame:
    """The pre-registered test of "only a couple of very frequent names come near the average
    token" (docs/preregistration.md). Among first-name tokens with at least ``min_count``
    samples, a name *comes near* when its ``measure`` (log10 for variability) is at least the
    mean of the same over all tokens with at least ``min_count`` samples. Returns the name
    tokens, most frequent first, with their frequency rank among names (1 = most frequent),
    value, ``near`` and ``quartile`` ("top", "upper middle", "lower middle", "bottom" of the
    names' counts); ``attrs``: the threshold, the near names and the verdict of
    ``verdicts.NAMES_RULE``: holds when at most ``holds_max`` come near and each has a count at
    least the ``holds_quantile`` of the names' counts, fails when at least ``fails_min`` come
    near or any has a count below their ``fails_quantile``, inconclusive otherwise."""
    names = name_set(names)
    pool = eligible(tokens_df, min_count=min_count)
    threshold = float(np.nanmean(_scale(pool[measure], measure))) if len(pool) else np.nan
    found = pool[pool["token"].str.lower().isin(names)].sort_values("count", ascending=False, kind="stable")
    counts = found["count"].to_numpy(dtype=float)
    rule = NAMES_RULE
    q25, q50, q75 = np.quantile(counts, [0.25, 0.5, 0.75]) if len(counts) else (np.nan,) * 3
    q_hold, q_fail = np.quantile(counts, [rule["holds_quantile"], rule["fails_quantile"]]) if len(counts) else (np.nan,) * 2
    value = _scale(found[measure], measure)
    out = pd.DataFrame({"token": found["token"].to_numpy(), "token_id": found["token_id"].to_numpy(),
                        "count": found["count"].to_numpy(), "rank": np.arange(1, len(found) + 1),
                        "value": value, "near": value >= threshold,
                        "quartile": np.select([counts >= q75, counts >= q50, counts >= q25],
                                              ["top", "upper middle", "lower middle"], "bottom")})
    near = out[out["near"]]
    if len(near) >= rule["fails_min"] or (near["count"] < q_fail).any():
        verdict = "fails"
    elif len(near) <= rule["holds_max"] and (near["count"] >= q_hold).all():
        verdict = "holds"
    else:
        verdict = "inconclusive"
    out.attrs.update({"measure": measure, "threshold": threshold, "n_names": len(out),
                      "near": ", ".join(f"{t} (rank {r})" for t, r in zip(near["token"], near["rank"], strict=True)),
                      "n_near": len(near), "verdict": verdict if len(out) else "n/a"})
    return out


def record_near_findings(findings: Findings, near: pd.DataFrame, exploratory: bool) -> None:
    """Add the names-near-the-average test (``names_near_average``) to ``findings``."""
    a = near.attrs
    key = f"names near the average token ({a['measure']}{', exploratory' if exploratory else ''})"
    src = f"06_tokens names_near_average: {a['measure']}"
    findings.add(f"{key}: name tokens tested", a["n_names"], src, "{:d}")
    findings.add(f"{key}: threshold (mean over tokens{', log10' if a['measure'] == 'variability' else ''})",
                 a["threshold"], src, "{:.3f}")
    findings.add(f"{key}: near names", a["n_near"], src, "{:d}")
    findings.add(f"{key}: which (frequency rank among names)", a["near"] or "none", src)
    findings.add(f"{key}: verdict", "exploratory" if exploratory else a["verdict"], src)


def most_and_least_collapsed(tokens_df: pd.DataFrame, *, k: int, min_count: int,
                             by: str = "variability") -> pd.DataFrame:
    """The ``k`` tokens with the lowest and the ``k`` with the highest ``by`` (among tokens seen at
    least ``min_count`` times), labelled by ``group``."""
    if by not in tokens_df.columns:
        raise ValueError(f"no column {by!r} in the token frame")
    pool = eligible(tokens_df, min_count=min_count).sort_values(by)
    low = pool.head(k).assign(group="most collapsed")
    high = pool.tail(k).iloc[::-1].assign(group="least collapsed")
    return pd.concat([low, high], ignore_index=True)


def _class_means(stats_or_means: Any) -> tuple[np.ndarray, np.ndarray]:
    """(token_ids (K,), means (K, D)) of the classes present: from a stats mapping (counts, sums)
    or a (V, D) array of means (rows with non-finite entries are absent classes)."""
    if isinstance(stats_or_means, Mapping):
        counts = np.asarray(stats_or_means["counts"], dtype=float)  # (V,)
        sums = np.asarray(stats_or_means["sums"], dtype=float)  # (V, D)
        ids = np.flatnonzero(counts >= 1)
        return ids, sums[ids] / counts[ids, None]
    M = np.asarray(stats_or_means, dtype=float)
    if M.ndim != 2:
        raise ValueError(f"class means must be a (V, D) array, got shape {M.shape}")
    ids = np.flatnonzero(np.isfinite(M).all(axis=1))
    return ids, M[ids]


def nearest_classes(stats_or_means: Any, token_id: int, k: int = 5) -> pd.DataFrame:
    """The ``k`` classes whose centred means m_c = mu_c - mu_G have the highest cosine with the
    centred mean of ``token_id`` (mu_G: unweighted mean of the present class means)."""
    ids, means = _class_means(stats_or_means)
    pos = np.flatnonzero(ids == token_id)
    if len(pos) == 0:
        raise ValueError(f"token {token_id} is not a class (never a train target)")
    m = means - means.mean(axis=0)  # (K, D)
    norms = np.linalg.norm(m, axis=1)
    cos = m @ m[pos[0]] / np.maximum(norms * norms[pos[0]], 1e-300)  # (K,)
    cos[pos[0]] = -np.inf
    order = np.argsort(-cos, kind="stable")[: min(k, len(ids) - 1)]
    return pd.DataFrame({"token_id": ids[order], "cosine": cos[order]})


# ---------------------------------------------------------------------------------------------
# One token (shown by linguistic_collapse.figures.tokens.token_explorer)


def token_summary(tokens: pd.DataFrame, stats: Mapping[str, Any], token_id: int, k: int = 5) -> pd.DataFrame:
    """One token's count, variability, interference and its ``k`` nearest classes by cosine."""
    row = tokens.loc[tokens["token_id"] == token_id]
    if row.empty:
        raise ValueError(f"token id {token_id} is not a class of this model (never a train target)")
    near = nearest_classes(stats, token_id, k=k)
    near = near.merge(tokens[["token_id", "token", "count"]], on="token_id", how="left")
    head = row[["token_id", "token", "count", "variability", "interference"]].assign(cosine=float("nan"))
    return pd.concat([head.assign(role="token"), near.assign(role="nearest")], ignore_index=True)
