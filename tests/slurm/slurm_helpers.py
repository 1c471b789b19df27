"""Helpers of the SLURM tier: profiles written to a temporary folder, the CLI as a subprocess
(as a user runs it), squeue/scontrol polls and output comparisons."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# measured (timings) or where, not what: left out of bit-identity checks. stats_sha256 is the
# hash of a stats file, compared by content itself (header and tensor bytes, ``comparable``).
TIMING_KEYS = re.compile(r"(seconds|_per_s|wall_s|_device|^stats_path|^stats_sha256)$")


def write_profile(tmp: Path, name: str, **changes) -> Path:
    """profiles/smoke.yaml with ``out_dir`` in ``tmp``, no GPU, and section ``changes``."""
    data = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
    data.update(name=name, out_dir=str(tmp / name))
    data["cluster"].update(gpus_per_node=0, cpus_per_task=1, mem_gb=2, timeout_min=10)
    for section, value in changes.items():
        if section != "grid" and isinstance(value, dict) and isinstance(data.get(section), dict):
            data[section].update(value)
        else:
            data[section] = value
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def tiny_grid(epochs: int = 1, width: int = 16, depth: int = 1) -> dict:
    """A one-run grid (no replicas, sensitivity or dynamics reference other runs)."""
    return {"widths": [width], "depths": [depth],
            "variants": [{"epochs": epochs, "weight_decay": 0.1}], "seed": 0}


def one_run(**grid) -> dict:
    return {"grid": tiny_grid(**grid), "sensitivity": {"runs": []}, "dynamics": {"runs": []},
            "collect": {"layers": None}}


def cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m linguistic_collapse ARGS`` from the repository root, as a user runs it, on one CPU thread
    (sbatch passes the environment on, so local runs and array tasks sum floats alike)."""
    full = {**os.environ, "PYTHONPATH": str(REPO / "lib"), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "linguistic_collapse", *args], capture_output=True, text=True,
                          cwd=REPO, env=full, timeout=timeout)


def job_ids(out: str) -> tuple[str | None, str | None]:
    """(preparation job id, array id or the single job's id) from the CLI's lines."""
    prep = re.search(r"preparation job (\d+)", out)
    array = re.search(r"submitted (?:array|job) (\d+)", out)
    return (prep.group(1) if prep else None), (array.group(1) if array else None)


def log_of(out_dir: Path, job: str, stream: str = "out") -> str:
    """The submitit log of a job or array task (``12`` or ``12_0``)."""
    return (out_dir / "slurm" / job / f"{job}_0_log.{stream}").read_text()


def queued(job: str) -> list[tuple[str, str]]:
    """[(job id, state)] of the jobs or array tasks of ``job`` that squeue lists."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %A %T"], capture_output=True,
                         text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()]
    return [(r[0], r[2]) for r in rows if r[0] == job or r[0].startswith(f"{job}_") or r[1] == job]


def wait_gone(job: str, timeout: float) -> None:
    """Wait until no task of ``job`` is queued or running."""
    end = time.monotonic() + timeout
    while queued(job):
        if time.monotonic() > end:
            pytest.fail(f"job {job} still queued after {timeout:.0f} s: {queued(job)}")
        time.sleep(2)


def job_field(job: str, key: str) -> str:
    """One ``scontrol show job`` field (e.g. JobState, Restarts, Reason)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True)
    found = re.search(rf"\b{key}=(\S*)", out.stdout)
    return found.group(1) if found else ""


def comparable(path: Path) -> object:
    """A file's content for bit-identity checks: JSON without timings; safetensors as header
    (metadata, dtypes, shapes) and tensor bytes; anything else as bytes."""
    raw = path.read_bytes()
    if path.suffix == ".json":
        def strip(obj: object) -> object:
            if isinstance(obj, dict):
                return {k: strip(v) for k, v in obj.items() if not TIMING_KEYS.search(k)}
            return [strip(v) for v in obj] if isinstance(obj, list) else obj
        return strip(json.loads(raw))
    if path.suffix == ".safetensors":
        n = int.from_bytes(raw[:8], "little")
        return json.loads(raw[8:8 + n]), raw[8 + n:]
    return raw


def outputs(out_dir: Path) -> dict[str, object]:
    """Every trained, collected and measured file of an output folder, comparable."""
    files = [*out_dir.glob("models/*/checkpoint-*/model.safetensors"),
             *out_dir.glob("models/*/results.json"), *out_dir.glob("stats/**/stats.safetensors"),
             *out_dir.glob("metrics/*.json")]
    return {str(f.relative_to(out_dir)): comparable(f) for f in sorted(files)}
