"""Linguistic collapse: neural-collapse statistics and measures for causal language models.

The core, ``lib.nc`` (``ClassStats``, the stats file, the measures, the registry), depends on
nothing else of ``lib``. The pipeline, by module: ``profiles`` -> ``pipeline`` (``data``,
``train``, ``collect``, ``nc.measure``) -> files -> ``results`` -> ``analysis``/``claims``/
``tokens`` -> notebooks run by ``paper``. docs/architecture.md draws the data flow and lists
every module.
"""
