"""How many samples each class (next token) has, as ``01_train`` and ``02_collect`` show it:
the training targets' counts by frequency rank, the most frequent tokens named
(``token_frequency_rank``), and the histogram of a stats file's class counts with sample
thresholds marked (``class_count_figure``; the table beside it is
``linguistic_collapse.tables.sample_sizes.class_count_thresholds``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure


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


def class_count_figure(counts: np.ndarray, thresholds: Sequence[int]) -> Figure:
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
