"""Linguistic collapse: neural-collapse statistics and measures for causal language models.

The pipeline, by module: ``profiles`` -> ``pipeline`` (``data``, ``train``, ``collect``,
``measure``) -> files -> ``results`` -> ``analysis``/``claims``/``tokens`` -> notebooks run by
``paper``. docs/architecture.md draws the data flow and lists every module.
"""
