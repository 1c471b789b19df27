"""Which models are dependent: design points as bootstrap clusters, and the effective number of
independent models they leave. No torch import.

Seed replicas (same initialisation, another data order) and weight-decay twins (same
initialisation and data order) of one architecture and training length share their data and
end within hundredths of a nat of each other;
resampling them as separate clusters treats near-copies as independent evidence. A design point
(depth x width x training length of the run) holds all of them, and all checkpoints of each run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from linguistic_collapse.tables.results import run_ids

DESIGN_COLUMNS = ("depth", "width", "epochs")  # epochs: the run's training length
N_EFF_RULE = ("n_eff is Kish's effective sample size of the clusters, (Σ n_g)² / Σ n_g² over "
              "cluster sizes n_g: the number of equal clusters that would weigh the same")


def design_point_ids(table: pd.DataFrame) -> np.ndarray:
    """One id per design point, depth x width x the run's training length (``epochs``): seed
    replicas, weight-decay twins and every checkpoint of a run share it, so a run is never split.
    Tables without those columns fall back to one cluster per run (``results.run_ids``)."""
    if set(DESIGN_COLUMNS) <= set(table.columns):
        return table[list(DESIGN_COLUMNS)].astype(str).agg("-".join, axis=1).to_numpy()
    return run_ids(table)


def kish_n_eff(clusters: Sequence[Any]) -> float:
    """Kish's effective n of the cluster sizes, (Σ n_g)² / Σ n_g² (``N_EFF_RULE``); 0 if empty."""
    _, sizes = np.unique(np.asarray(clusters), return_counts=True)
    return float(sizes.sum() ** 2 / (sizes**2).sum()) if len(sizes) else 0.0


def cluster_counts(clusters: Sequence[Any]) -> dict[str, float]:
    """n models, n clusters and Kish's n_eff of one set of rows."""
    clusters = np.asarray(clusters)
    return {"n": len(clusters), "n_clusters": len(set(clusters.tolist())), "n_eff": kish_n_eff(clusters)}
