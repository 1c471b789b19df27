"""Linguistic collapse: neural-collapse statistics and measures for causal language models.

``lib`` is layered; a module imports only from its own subpackage or from those below it, and
nothing imports in a circle (``tests/test_architecture.py`` checks both, function-local imports
included). ``LAYERS`` is the order, ground floor first; docs/architecture.md draws it.
"""

# Subpackages of lib, lowest first: each may import from itself and the ones before it.
LAYERS = ("core", "nc", "lm", "pipeline", "tables", "figures", "series")
