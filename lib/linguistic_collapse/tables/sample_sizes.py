"""The sample the statistics rest on, as tables (``01_train``, ``02_collect``): a prepared
corpus's sizes, what a stats file holds, the stats files of a profile at a glance, how many
classes fall under sample thresholds, and the collection's numbers in the findings. Their figures: ``linguistic_collapse.figures.class_counts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm.data import PreparedCorpus
from linguistic_collapse.nc.accumulate import class_means, means_hash
from linguistic_collapse.nc.stats_file import PASSES, load_stats, load_stats_metadata
from linguistic_collapse.tables.findings import Findings


def corpus_sizes(corpus: PreparedCorpus) -> pd.DataFrame:
    """Sizes of a prepared corpus (``linguistic_collapse.lm.data.PreparedCorpus``) as a small table."""
    T = corpus.context_len
    rows = [("vocabulary (classes)", corpus.vocab_size), ("context length (tokens per block)", T),
            ("training blocks", corpus.n_train_blocks), ("training tokens", corpus.n_train_blocks * T),
            ("training next-token targets", corpus.n_train_blocks * (T - 1)),
            ("validation blocks", corpus.n_val_blocks), ("validation tokens", corpus.n_val_blocks * T)]
    return pd.DataFrame(rows, columns=["quantity", "value"]).set_index("quantity")


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


def stats_overview(stats_dir: str | Path) -> pd.DataFrame:
    """One row per ``<name>/stats.safetensors`` under ``stats_dir``: classes seen (count >= 1),
    tokens per pass, and whether the file verifies (``passes_tied``: its ``means_hash`` is the
    hash of its own means, so pass 2 used the finished train means)."""
    rows = []
    for path in sorted(Path(stats_dir).glob("*/stats.safetensors")):
        meta, tensors = load_stats_metadata(path), load_stats(path)
        counts, sums = tensors["counts"], tensors["sums"]
        rows.append({"model": path.parent.name, "classes": int((counts > 0).sum()),
                     **{f"pass{i}_tokens": int(meta.get(f"pass{i}_tokens", 0)) for i in PASSES},
                     "passes_tied": meta.get("means_hash") == means_hash(class_means(counts, sums))})
    if not rows:
        raise UserError(f"no <model>/stats.safetensors under {stats_dir}; collect first")
    return pd.DataFrame(rows)


def class_count_thresholds(counts: np.ndarray, thresholds: Sequence[int]) -> pd.DataFrame:
    """How many classes have fewer than each threshold of training samples."""
    c = np.asarray(counts)
    return pd.DataFrame({"classes with count <": list(thresholds),
                         "classes": [int((c < t).sum()) for t in thresholds],
                         "of vocabulary": [f"{(c < t).mean():.1%}" for t in thresholds]}
                        ).set_index("classes with count <")


def record_findings(findings: Findings, counts: np.ndarray, metadata: Mapping[str, str]) -> pd.DataFrame:
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
