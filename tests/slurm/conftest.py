"""The SLURM tier: ``linguistic_collapse.pipeline.slurm`` against a real single-node cluster (``make test-slurm`` starts
one with scripts/slurm_cluster.sh and points ``SLURM_CONF`` at it)."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture(scope="session", autouse=True)
def cluster() -> str:
    """The running cluster's node, up (the tier fails at once, with the fix, without one)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True)
    node, _, state = out.stdout.strip().partition(" ")
    if out.returncode or not state or state.startswith(("down", "drain", "fail", "unk")):
        pytest.fail(f"no SLURM node is up (sinfo: {out.stderr.strip() or out.stdout.strip()!r}); "
                    "run the tier with `make test-slurm`, which starts a cluster")
    return node
