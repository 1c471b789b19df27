"""Two checks of ``01_train`` that size what the training population can show: how far decoupled
weight decay alone shrinks the weights over a run (the power of the weight-decay contrast), and
the unigram cross-entropy of the training split beside the loss-plateau threshold (so "near the
unigram plateau" is measured, not asserted). No torch import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.profiles import Profile
from linguistic_collapse.tables.claims import plateau_mask
from linguistic_collapse.tables.findings import Findings
from linguistic_collapse.tables.results import LOSS

PAIR_KEYS = ["depth", "width", "epochs", "seed", "checkpoint"]


def lr_schedule(lr: float, total_steps: int, warmup_steps: int = 0,
                kind: str = "linear") -> np.ndarray:
    """The learning rate of each optimiser step 0..total_steps-1 (total_steps,), as
    ``transformers.get_linear_schedule_with_warmup`` (or the constant one) sets it: linear
    warm-up to ``lr``, then (linear) decay to 0 at ``total_steps``."""
    if total_steps < 1 or warmup_steps < 0 or lr < 0:
        raise ValueError(f"need total_steps >= 1, warmup_steps >= 0, lr >= 0; got "
                         f"{total_steps}, {warmup_steps}, {lr}")
    if kind not in ("linear", "constant"):
        raise ValueError(f"lr schedule must be 'linear' or 'constant', got {kind!r}")
    t = np.arange(total_steps, dtype=float)
    warm = t / max(1, warmup_steps)
    if kind == "constant":
        after = np.ones_like(t)
    else:
        after = np.maximum(0.0, (total_steps - t) / max(1, total_steps - warmup_steps))
    return lr * np.where(t < warmup_steps, warm, after)


def decay_shrink(lrs: Sequence[float], weight_decay: float) -> float:
    """prod_t (1 - lr_t * wd): the factor by which decoupled (AdamW) decay alone multiplies a
    weight over the steps with learning rates ``lrs``, gradients aside; 1 - factor is the most the
    decay can have pulled the weights towards 0."""
    lrs = np.asarray(lrs, dtype=float)
    return float(np.exp(np.sum(np.log1p(-lrs * weight_decay))))


def profile_decay_shrink(profile: Profile, n_train_blocks: int) -> pd.DataFrame:
    """Per (epochs, weight decay, batch size) of the profile's runs: optimiser steps, the decay
    factor of ``decay_shrink`` over the profile's schedule and the shrink in percent."""
    t = profile.training
    rows = {}
    for run in profile.runs():
        b = profile.batch_size(run)
        key = (run.epochs, run.weight_decay, b)
        if key in rows:
            continue
        steps = run.epochs * math.ceil(n_train_blocks / b)
        factor = decay_shrink(lr_schedule(t.lr, steps, t.warmup_steps, t.lr_schedule),
                              run.weight_decay)
        rows[key] = {"epochs": run.epochs, "weight_decay": run.weight_decay, "batch_size": b,
                     "steps": steps, "lr": t.lr, "decay_factor": factor,
                     "shrink_percent": 100 * (1 - factor)}
    return pd.DataFrame(list(rows.values())).sort_values(["weight_decay", "epochs"],
                                                         ignore_index=True)


def weight_decay_pairs(table: pd.DataFrame, low: float, high: float) -> pd.DataFrame:
    """Models differing only in weight decay (``low`` against ``high``; same depth, width,
    epochs, seed and checkpoint): both losses and ``delta`` = loss(high) - loss(low); no rows
    when ``low`` equals ``high`` (a profile with one weight decay)."""
    wd = table["weight_decay"].astype(float)
    if math.isclose(low, high, rel_tol=1e-9):
        table = table.iloc[:0]
        wd = wd.iloc[:0]
    a = table[np.isclose(wd, low, rtol=1e-9, atol=0)][PAIR_KEYS + [LOSS]]
    b = table[np.isclose(wd, high, rtol=1e-9, atol=0)][PAIR_KEYS + [LOSS]]
    pairs = a.merge(b, on=PAIR_KEYS, suffixes=("_low", "_high"))
    return pairs.assign(delta=pairs[f"{LOSS}_high"] - pairs[f"{LOSS}_low"])


def unigram_cross_entropy(blocks: np.ndarray) -> float:
    """Entropy (nats/token) of the frequencies of the next-token targets of ``blocks``
    (n, context_len): every token after the first of a block. The loss of a model that predicts
    the training split's token frequencies and nothing else, in-sample."""
    blocks = np.asarray(blocks)
    if blocks.ndim != 2 or blocks.shape[1] < 2 or len(blocks) == 0:
        raise ValueError(f"no targets: need (n, context_len >= 2) blocks, got {blocks.shape}")
    counts = np.zeros(int(blocks.max()) + 1, dtype=np.int64)  # (V,) target counts
    for start in range(0, len(blocks), 65536):  # in chunks: a large split stays in its mmap
        counts += np.bincount(blocks[start:start + 65536, 1:].ravel(), minlength=len(counts))
    counts = counts[counts > 0]
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def plateau_against_unigram(table: pd.DataFrame, unigram: float) -> pd.DataFrame:
    """One row per model of ``table`` (one per measured checkpoint) with its loss, whether
    ``linguistic_collapse.tables.claims.plateau_mask`` puts it on the plateau, and loss - ``unigram``."""
    mask, _ = plateau_mask(table)
    cols = [c for c in ("run", "checkpoint", LOSS) if c in table.columns]
    return table[cols].assign(plateau=mask, above_unigram=table[LOSS] - unigram)


def plateau_summary(table: pd.DataFrame, unigram: float) -> dict[str, float | int | str]:
    """The unigram cross-entropy beside the plateau: its threshold (lowest plateau loss), the
    plateau models' loss range and the best non-plateau loss, all in nats."""
    mask, rule = plateau_mask(table)
    loss = table[LOSS].to_numpy(dtype=float)
    on, off = loss[mask], loss[~mask & np.isfinite(loss)]
    return {"unigram_ce": unigram, "plateau_models": int(mask.sum()), "models": len(loss),
            "plateau_threshold": float(on.min()) if len(on) else math.nan,
            "plateau_max": float(on.max()) if len(on) else math.nan,
            "best_other": float(off.min()) if len(off) else math.nan,
            "worst_other": float(off.max()) if len(off) else math.nan, "rule": rule}


def measured_rows(train_table: pd.DataFrame, checkpoints: Sequence[ModelName]) -> pd.DataFrame:
    """The rows of ``results.training_table`` at the measured ``checkpoints`` (as results.csv)."""
    keep = {(str(ck.run), ck.checkpoint) for ck in checkpoints}
    mask = [(r, c) in keep for r, c in zip(train_table["run"], train_table["checkpoint"],
                                           strict=True)]
    return train_table[mask].reset_index(drop=True)


def describe_pairs(pairs: pd.DataFrame, low: float, high: float) -> str:
    """One line: in how many weight-decay pairs the larger decay gives the higher loss."""
    if pairs.empty:
        return "no pairs of models that differ only in weight decay"
    return (f"{int((pairs['delta'] > 0).sum())} of {len(pairs)} pairs: weight decay {high:g} gives "
            f"a higher loss than {low:g} (median difference {pairs['delta'].median():+.4f} nats, "
            f"largest |difference| {pairs['delta'].abs().max():.4f})")


def record_findings(findings: Findings, unigram: float, plateau: Mapping[str, Any],
                    shrink: pd.DataFrame, pairs: pd.DataFrame, high: float) -> None:
    """Add 01_train's numbers to ``findings``: unigram CE, plateau, decay shrink, pair counts."""
    src = "01_train: plateau_mask on the measured checkpoints"
    findings.add("unigram cross-entropy of the training split (nats/token)", unigram,
                 "01_train: training_checks.unigram_cross_entropy(train blocks)", "{:.3f}")
    findings.add("plateau models (measured checkpoints)", plateau["plateau_models"], src, "{:d}")
    findings.add("plateau threshold: lowest plateau loss (nats)", plateau["plateau_threshold"],
                 src, "{:.3f}")
    findings.add("highest plateau loss (nats)", plateau["plateau_max"], src, "{:.3f}")
    findings.add("unigram CE minus lowest plateau loss (nats)",
                 unigram - plateau["plateau_threshold"], "01_train: unigram CE - threshold", "{:.2f}")
    findings.add("unigram CE minus highest plateau loss (nats)", unigram - plateau["plateau_max"],
                 "01_train: unigram CE - highest plateau loss", "{:.2f}")
    for r in shrink[shrink["weight_decay"] == shrink["weight_decay"].max()].itertuples():
        findings.add(f"weight shrink by decay alone, wd {r.weight_decay:g}, {r.epochs} epochs (%)",
                     r.shrink_percent, f"weight_decay_shrink.csv: epochs {r.epochs}, "
                     f"weight_decay {r.weight_decay:g}", "{:.1f}")
    if len(pairs):
        src = "01_train: training_checks.weight_decay_pairs on the measured checkpoints"
        findings.add(f"pairs where wd {high:g} gives the higher loss",
                     int((pairs["delta"] > 0).sum()), src, "{:d}")
        findings.add("weight-decay pairs", len(pairs), src, "{:d}")
        findings.add("largest |loss difference| between weight-decay twins (nats)",
                     float(pairs["delta"].abs().max()), src, "{:.3f}")
