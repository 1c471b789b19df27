"""What stepping through ``01_train`` and ``02_collect`` shows: the corpus (sizes, token
frequencies) and what a statistics file accumulates (tensors, class counts against sample
thresholds). Figures use the style of ``linguistic_collapse.figures.plots``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from linguistic_collapse.lm.data import PreparedCorpus
from linguistic_collapse.tables.findings import Findings


def corpus_sizes(corpus: PreparedCorpus) -> pd.DataFrame:
    """Sizes of a prepared corpus (``linguistic_collapse.lm.data.PreparedCorpus``) as a small table."""
    T = corpus.context_len
    rows = [("vocabulary (classes)", corpus.vocab_size), ("context length (tokens per block)", T),
            ("training blocks", corpus.n_train_blocks), ("training tokens", corpus.n_train_blocks * T),
            ("training next-token targets", corpus.n_train_blocks * (T - 1)),
            ("validation blocks", corpus.n_val_blocks), ("validation tokens", corpus.n_val_blocks * T)]
    return pd.DataFrame(rows, columns=["quantity", "value"]).set_index("quantity")


def token_frequency_rank(blocks: np.ndarray, tokenizer: Any = None, label_top: int = 8) -> Figure:
    """Next-token target counts of the training blocks by frequency rank (log-log), the most
    frequent tokens named; the classes' sample sizes every later statistic rests on."""
    targets = np.asarray(blocks)[:, 1:].ravel()
    counts = np.bincount(targets)
    order = np.argsort(-counts, kind="stable")
    ranked = counts[order]
    seen = ranked[ranked > 0]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.plot(np.arange(1, len(seen) + 1), seen, color="tab:blue", lw=1.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for rank in range(min(label_top, len(seen))):
        tok = order[rank]
        text = tokenizer.decode([int(tok)]) if tokenizer is not None else str(tok)
        ax.annotate(repr(text), (rank + 1, seen[rank]), fontsize="x-small", rotation=30,
                    xytext=(3, 3), textcoords="offset points")
    vocab = len(counts) if tokenizer is None else max(len(counts), len(tokenizer))
    ax.set(xlabel="frequency rank of token (log scale)", ylabel="training targets (log scale)",
           title=f"Token frequency: {len(seen):,} of {vocab:,} classes occur, "
                 f"{len(targets):,} targets")
    return fig


def stats_contents(stats: Mapping[str, Any], metadata: Mapping[str, str]) -> pd.DataFrame:
    """What a stats file holds: each tensor's shape, dtype and a one-line summary, then the
    pass metadata (blocks and tokens per pass)."""
    rows = []
    for name, t in stats.items():
        a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        summary = (f"total {a.sum():,.0f}, {int((a > 0).sum()):,} nonzero" if a.ndim == 1
                   else f"mean |x| {np.abs(a).mean():.3g}")
        rows.append({"entry": name, "shape": " × ".join(map(str, a.shape)), "dtype": str(a.dtype),
                     "summary": summary})
    for key in sorted(k for k in metadata if k.startswith("pass") and k.endswith(("_blocks", "_tokens"))):
        value = str(metadata[key])
        rows.append({"entry": key, "shape": "", "dtype": "metadata",
                     "summary": f"{int(value):,}" if value.isdigit() else value})
    return pd.DataFrame(rows).set_index("entry")


def class_count_thresholds(counts: np.ndarray, thresholds: Sequence[int] = (1, 5, 20)) -> pd.DataFrame:
    """How many classes have fewer than each threshold of training samples."""
    c = np.asarray(counts)
    return pd.DataFrame({"classes with count <": list(thresholds),
                         "classes": [int((c < t).sum()) for t in thresholds],
                         "of vocabulary": [f"{(c < t).mean():.1%}" for t in thresholds]}
                        ).set_index("classes with count <")


def class_count_figure(counts: np.ndarray, thresholds: Sequence[int] = (1, 5, 20)) -> Figure:
    """Histogram of per-class sample counts (log bins) with the sample thresholds marked."""
    c = np.asarray(counts)
    seen = c[c > 0]
    fig, ax = plt.subplots(figsize=(8, 4))
    if len(seen):
        bins = np.unique(np.geomspace(1, seen.max() + 1, 40).astype(int))
        ax.hist(seen, bins=bins, color="tab:blue", alpha=0.8)
    ax.set_xscale("log")
    for t in thresholds:
        ax.axvline(t, color="tab:red", lw=1, ls="--")
        ax.text(t, 0.97, f" < {t}: {int((c < t).sum()):,}", transform=ax.get_xaxis_transform(),
                color="tab:red", fontsize="x-small", va="top")
    ax.set(xlabel="training samples per class (log scale)", ylabel="classes",
           title=f"Class counts: {len(seen):,} of {len(c):,} classes seen, {int(c.sum()):,} samples")
    return fig


def record_collection(findings: Findings, counts: np.ndarray, metadata: Mapping[str, str]) -> pd.DataFrame:
    """Record the sample the statistics rest on (samples, classes seen, median samples per
    seen class, share seen once, validation tokens) in ``findings``; returns them as a table."""
    seen = counts[counts > 0]
    rows = [("training samples per model", int(metadata["pass1_tokens"]), "{:,d}"),
            ("classes seen", int(seen.size), "{:,d}"),
            ("median samples per seen class", float(np.median(seen)), "{:.0f}"),
            ("classes seen once (% of seen)", 100 * float(np.mean(seen == 1)), "{:.1f}"),
            ("validation tokens per model", int(metadata["pass2_tokens"]), "{:,d}")]
    source = "02_collect: stats of the largest model (counts, pass metadata)"
    return pd.DataFrame([{"finding": key, "value": findings.add(key, value, source, fmt)}
                         for key, value, fmt in rows])
