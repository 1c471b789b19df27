"""OpenMP's wait policy: passive by default, so training keeps its speed beside other processes.

OpenMP's worker threads spin while they wait for work (the default, ``ACTIVE``-like policy of
GNU libgomp); with one competing CPU-bound process on two cores, spinning threads take the
core the other thread needs, and 2-thread training keeps only 0.3-0.5x of its speed alone.
``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep (``scripts/bench_threads.py`` measures
both; docs/benchmarks.md records the ratios). The policy is read once, when the OpenMP runtime
loads with torch, so it must be in the environment before ``import torch``: the CLI's entry
point, the notebook kernels' environment (``series.paper``) and the Makefile set it. Neither
float results nor thread counts change; a value the user set wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"


def default_wait_policy(env: MutableMapping[str, str] | None = None) -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``env`` (default: this process's environment) unless
    it is already set; returns the value in force. Effective only before torch is imported."""
    target = os.environ if env is None else env
    return target.setdefault(WAIT_POLICY_ENV, DEFAULT_WAIT_POLICY)
