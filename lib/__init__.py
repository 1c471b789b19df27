"""Linguistic collapse: neural-collapse statistics and measures for causal language models.

Modules by concern: ``paths`` (repository paths, atomic writes), ``data`` (corpora, tokenizers,
token blocks), ``model`` (GPT-Neo configs, run names, loading any causal LM), ``train``,
``collect`` (the three statistics passes), ``measure`` (NC measures), ``analysis``
(correlations, permutation test, token analysis), ``plots``, ``profiles`` and ``dispatch``.
"""
