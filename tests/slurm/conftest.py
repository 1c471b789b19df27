"""The SLURM tier: ``lib.slurm`` against a real single-node cluster (``make test-slurm`` starts
one with scripts/slurm_cluster.sh and points ``SLURM_CONF`` at it)."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture(scope="session", autouse=True)
def cluster() -> str:
    """The running cluster's node (the tier fails at once, with the fix, without one)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True)
    if out.returncode or "idle" not in out.stdout and "mix" not in out.stdout \
            and "alloc" not in out.stdout:
        pytest.fail(f"no SLURM cluster answers (sinfo: {out.stderr.strip() or out.stdout!r}); "
                    "run the tier with `make test-slurm`, which starts one")
    return out.stdout.split()[0]
