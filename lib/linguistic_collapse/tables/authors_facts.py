"""What the authors" own measurements say, as numbers this project compares with.

Facts from Wu & Papyan"s published files ``artifacts/lc-2024_10_24.csv`` (every measure but the
interference cosines) and ``artifacts/lc-2024_05_18.csv`` (``interfere_mean``/``interfere_std``
as cosines), not in this repository (their code states no licence). Computed by
``scripts/authors_facts.py`` (``linguistic_collapse.tables.authors_stats``): the files imported with
``linguistic_collapse.tables.authors.import_authors`` (230 models, 170 training runs) and this project"s own
statistics, each measure on its analysis scale (log10 where the registry says):

- ``AUTHORS_R2_CI``: 95 % percentile interval of R² of validation loss on the measure over all
  230 models, from 2000 bootstrap resamples of their training runs (model names without the
  ``@k`` checkpoint suffix; a run"s checkpoints are drawn together), seed 0. The point values are
  the registry"s ``authors_r2``.
- ``AUTHORS_BY_EPOCHS``: (r, R², models) on their runs trained 1, 3 and 10 epochs (every
  checkpoint of those runs), like for like with a grid of 1- and 3-epoch runs.
- ``AUTHORS_DESIGN_N_EFF``: Kish's effective number of design points (depth x width x epochs)
  among their models of each training length: 1 epoch, 30 design points of 2 weight-decay twins
  and one of 22 (the 21 seed replicas and the twin), 80² / (29·2² + 22²); 3 epochs, 30 design
  points of one model; 10 epochs, 30 of 4 (twins x 2 checkpoints).
- ``AUTHORS_R2_QUANTILES``: per measure and training length (1, 3), 101 quantiles of R² from
  10,000 bootstrap resamples of their design points (``authors_stats.r2_design_quantiles``),
  their side of the pre-registered like-for-like equivalence test. **Empty**: their per-model
  files were not available offline when the pre-registered analysis was written, so that test
  falls back to a large-sample normal for their side (``verdicts.authors_epochs_draws``) and
  says so; ``scripts/authors_facts.py`` prints this dict from their files.
- ``AUTHORS_REPLICAS``: (r, models) on their 21 seed replicas (``02x0768_01d00@0`` to
  ``02x0768_01d19@0`` and the grid"s ``02x0768_01d@0``), the population of their Table 1.
- ``AUTHORS_REPLICA_P``: (permutation p, Holm-adjusted p) of ``analysis.permutation_test`` on
  those replicas, 10,000 permutations, seed 0, Holm over the 13 measures listed.

No torch import.
"""

from __future__ import annotations

# measure -> 95 % interval of R² over their 230 models, their 170 runs resampled
AUTHORS_R2_CI: dict[str, tuple[float, float]] = {
    "nc1_cdnv": (0.878, 0.942),
    "nc2_norm_cv": (0.028, 0.157),
    "nc2_lognorm_cv": (0.802, 0.912),
    "nc2_interference_mean": (0.683, 0.822),
    "nc2_interference_std": (0.830, 0.906),
    "nc2_interference_cv": (0.255, 0.452),
    "gnc2_logkernel_mean": (0.780, 0.849),
    "gnc2_logkernel_var": (0.862, 0.925),
    "nc3_duality_mean": (0.201, 0.424),
    "unc3_duality_cv": (0.610, 0.768),
    "nc4_agreement": (0.861, 0.918),
    "nc2_etf_error": (0.672, 0.796),
    "nc3_duality_error": (0.592, 0.738),
}

# measure -> {epochs trained: (r, R², number of models)} on their runs of that training length
AUTHORS_BY_EPOCHS: dict[str, dict[int, tuple[float, float, int]]] = {
    "nc1_cdnv": {1: (0.980, 0.961, 80), 3: (0.991, 0.981, 30), 10: (0.912, 0.832, 120)},
    "nc2_norm_cv": {1: (0.116, 0.014, 80), 3: (0.342, 0.117, 30), 10: (0.327, 0.107, 120)},
    "nc2_lognorm_cv": {1: (0.986, 0.973, 80), 3: (0.952, 0.906, 30), 10: (0.810, 0.656, 120)},
    "nc2_interference_mean": {1: (0.940, 0.884, 80), 3: (0.908, 0.824, 30), 10: (0.875, 0.765, 120)},
    "nc2_interference_std": {1: (0.959, 0.921, 80), 3: (0.944, 0.892, 30), 10: (0.892, 0.795, 120)},
    "nc2_interference_cv": {1: (-0.733, 0.537, 80), 3: (-0.711, 0.506, 30), 10: (-0.627, 0.394, 120)},
    "gnc2_logkernel_mean": {1: (0.932, 0.869, 80), 3: (0.919, 0.844, 30), 10: (0.902, 0.813, 120)},
    "gnc2_logkernel_var": {1: (0.976, 0.952, 80), 3: (0.955, 0.912, 30), 10: (0.885, 0.784, 120)},
    "nc3_duality_mean": {1: (-0.918, 0.843, 80), 3: (-0.617, 0.380, 30), 10: (0.061, 0.004, 120)},
    "unc3_duality_cv": {1: (0.939, 0.881, 80), 3: (0.898, 0.806, 30), 10: (0.567, 0.322, 120)},
    "nc4_agreement": {1: (-0.982, 0.964, 80), 3: (-0.979, 0.959, 30), 10: (-0.937, 0.878, 120)},
    "nc2_etf_error": {1: (0.950, 0.902, 80), 3: (0.889, 0.790, 30), 10: (0.795, 0.632, 120)},
    "nc3_duality_error": {1: (0.911, 0.831, 80), 3: (0.883, 0.781, 30), 10: (0.681, 0.463, 120)},
}

# epochs trained -> Kish's n_eff of their design points among the models of that training length
AUTHORS_DESIGN_N_EFF: dict[int, float] = {1: 10.667, 3: 30.0, 10: 30.0}

# measure -> {epochs: 101 quantiles of R² over design-point resamples}; empty: not computed offline
AUTHORS_R2_QUANTILES: dict[str, dict[int, tuple[float, ...]]] = {}

# measure -> (r, number of models) on their 21 seed replicas
AUTHORS_REPLICAS: dict[str, tuple[float, int]] = {
    "nc1_cdnv": (0.441, 21),
    "nc2_norm_cv": (0.107, 21),
    "nc2_lognorm_cv": (0.162, 21),
    "nc2_interference_mean": (0.643, 21),
    "nc2_interference_std": (0.421, 21),
    "nc2_interference_cv": (-0.468, 21),
    "gnc2_logkernel_mean": (0.533, 21),
    "gnc2_logkernel_var": (0.510, 21),
    "nc3_duality_mean": (-0.568, 21),
    "unc3_duality_cv": (0.006, 21),
    "nc4_agreement": (-0.700, 21),
    "nc2_etf_error": (0.460, 21),
    "nc3_duality_error": (0.282, 21),
}

# measure -> (permutation p, Holm-adjusted p) on their 21 seed replicas
AUTHORS_REPLICA_P: dict[str, tuple[float, float]] = {
    "nc1_cdnv": (0.046, 0.27),
    "nc2_norm_cv": (0.64, 1.0),
    "nc2_lognorm_cv": (0.48, 1.0),
    "nc2_interference_mean": (0.0021, 0.025),
    "nc2_interference_std": (0.057, 0.29),
    "nc2_interference_cv": (0.032, 0.26),
    "gnc2_logkernel_mean": (0.012, 0.12),
    "gnc2_logkernel_var": (0.017, 0.15),
    "nc3_duality_mean": (0.0089, 0.098),
    "unc3_duality_cv": (0.98, 1.0),
    "nc4_agreement": (0.0004, 0.0052),
    "nc2_etf_error": (0.037, 0.26),
    "nc3_duality_error": (0.22, 0.89),
}
