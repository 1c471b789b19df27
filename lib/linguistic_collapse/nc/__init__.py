"""The neural-collapse core: per-class accumulation, the ``stats.safetensors`` format, the
measures, their plain reference definitions and the registry that lists them.

Imports nothing of ``lib`` but ``linguistic_collapse.core.errors`` and ``linguistic_collapse.core.provenance``. Public contract::

    from linguistic_collapse.nc import ClassStats
    stats = ClassStats(num_classes=V, dim=D)        # empty float64 accumulators
    stats.add(features, labels)                     # pass 1, any number of batches
    stats.add_validation(features, labels, W)       # optional pass 2 (NC4); freezes the means
    stats.measures(W)                               # every measure the passes allow
    stats.save("stats.safetensors", model="name"); ClassStats.load("stats.safetensors")

``nc1_measures``, ``nc2_measures``, ``gnc2_measures``, ``nc3_measures``, ``nc4_measure`` and
``select_measures`` take a stats mapping (``ClassStats.tensors`` with ``lm_head``).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule. Loaded on first use, so that torch-free modules (registry, reference)
# can be imported without torch.
_EXPORTS = {
    "ClassStats": "classstats",
    "nc1_measures": "measure", "nc2_measures": "measure", "gnc2_measures": "measure",
    "nc3_measures": "measure", "nc4_measure": "measure", "select_measures": "measure",
    "MEASURES": "registry",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    """The public names of ``_EXPORTS``, imported from their submodule on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'linguistic_collapse.nc' has no attribute {name!r}")
    return getattr(importlib.import_module(f"linguistic_collapse.nc.{_EXPORTS[name]}"), name)
