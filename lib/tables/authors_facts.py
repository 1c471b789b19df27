"""What the authors' own measurements say, as numbers this project compares with.

Computed from Wu & Papyan's published ``artifacts/lc-*.csv`` (not in this repository; see
``lib.tables.authors``): R² of validation loss on each measure (on its analysis scale) over their
230 models with a 95 % bootstrap interval that resamples their training runs, and the same on
their models of each training length. No torch import.
"""

from __future__ import annotations

# measure -> 95 % interval of R² over their 230 models, their 170 runs resampled
AUTHORS_R2_CI: dict[str, tuple[float, float]] = {
    "nc1_cdnv": (0.879, 0.943),
    "gnc2_logkernel_var": (0.861, 0.927),
    "unc3_duality_cv": (0.608, 0.769),
    "nc4_agreement": (0.860, 0.918),
    "nc2_norm_cv": (0.030, 0.153),
    "nc3_duality_mean": (0.202, 0.425),
    "nc2_interference_cv": (0.254, 0.450),
}

# measure -> {epochs trained: (r, R², number of models)} on their models of that training length
AUTHORS_BY_EPOCHS: dict[str, dict[int, tuple[float, float, int]]] = {}
