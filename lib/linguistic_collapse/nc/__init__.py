"""The neural-collapse core: per-class accumulation, the ``stats.safetensors`` format, the
measures, their plain reference definitions and the registry that lists them.

Imports nothing of ``lib`` but ``linguistic_collapse.core.errors``, ``linguistic_collapse.core.provenance``
and ``linguistic_collapse.core.paths`` (``ClassStats.save``'s output rule). Public contract::

    from linguistic_collapse.nc import ClassStats
    stats = ClassStats(num_classes=V, dim=D)        # empty float64 accumulators
    stats.add(features, labels)                     # pass 1, any number of batches (-100 skipped)
    stats.all_reduce_()                             # under torch.distributed: combine the ranks
    stats.add_validation(features, labels, W)       # optional pass 2 (NC4); freezes the means
    stats.measures(W)                               # every measure the passes allow
    stats.save("stats.safetensors", model="name"); ClassStats.load("stats.safetensors")

The per-property functions take tensors: ``nc1_measures(counts, means, sq_dev, sw)``,
``nc2_measures(counts, means)``, ``gnc2_measures(counts, means)``,
``nc3_measures(counts, means, W)``, ``nc4_measure(val_counts, val_agree)``; ``measure_stats``
measures a stats mapping (``ClassStats.tensors``-keyed) and ``measure_stats_file`` a file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time loaded on first use
    from linguistic_collapse.nc.classstats import ClassStats
    from linguistic_collapse.nc.measure import (
        gnc2_measures,
        measure_stats,
        measure_stats_file,
        nc1_measures,
        nc2_measures,
        nc3_measures,
        nc4_measure,
    )
    from linguistic_collapse.nc.registry import MEASURES

# name -> submodule. Loaded on first use, so that torch-free modules (registry, reference)
# can be imported without torch.
_EXPORTS = {
    "ClassStats": "classstats",
    "nc1_measures": "measure", "nc2_measures": "measure", "gnc2_measures": "measure",
    "nc3_measures": "measure", "nc4_measure": "measure", "measure_stats": "measure",
    "measure_stats_file": "measure", "MEASURES": "registry",
}
__all__ = [
    "MEASURES",
    "ClassStats",
    "gnc2_measures",
    "measure_stats",
    "measure_stats_file",
    "nc1_measures",
    "nc2_measures",
    "nc3_measures",
    "nc4_measure",
]


def __getattr__(name: str) -> Any:
    """The public names of ``_EXPORTS``, imported from their submodule on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'linguistic_collapse.nc' has no attribute {name!r}")
    return getattr(importlib.import_module(f"linguistic_collapse.nc.{_EXPORTS[name]}"), name)
