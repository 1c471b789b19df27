"""Run the notebook series for a profile with papermill: ``python -m lib paper --profile cpu``.

Each stage's executed copy goes to ``runs/<profile>/<stage>.ipynb``. A stage is skipped when its
stamp (a hash of the notebook source, its parameters, the profile file, the ``lib`` sources and
the previous stage's stamp) matches the one recorded in ``<out_dir>/stamps/`` after its last
successful run. A failing stage stops the series with the notebook and cell named.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lib.paths import FIGURES_DIR, NOTEBOOKS_DIR, REPO_ROOT, RUNS_DIR, atomic_write_text, resolve

STAGES = ("01_train", "02_extract", "03_measure", "04_correlate", "05_permutation", "06_tokens")


def profile_parameters(profile) -> dict[str, Any]:
    """Everything a notebook may declare, derived from one profile (the single source)."""
    run_dir = RUNS_DIR / profile.name
    return {
        "profile": profile.name,
        "out_dir": str(profile.out_dir),
        "run_dir": str(run_dir.relative_to(REPO_ROOT)),
        "figures_dir": str((FIGURES_DIR / profile.name).relative_to(REPO_ROOT)),
        "results_table": str((run_dir / "results.csv").relative_to(REPO_ROOT)),
        "progress": False,
        **{f"analysis_{k}": v for k, v in profile.section("analysis").items()},
    }


def stage_parameters(notebook: Path, available: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a notebook declares, taken from ``available``; refuses undeclared gaps."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(declared) - set(available))
    if unknown:
        raise ValueError(
            f"{notebook.name} declares parameters {unknown} that no profile provides; "
            f"available: {sorted(available)}"
        )
    return {name: available[name] for name in declared}


def _lib_digest() -> str:
    h = hashlib.sha256()
    for path in sorted((REPO_ROOT / "lib").glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def stage_stamp(notebook: Path, params: Mapping[str, Any], profile_file: Path, previous: str,
                lib_digest: str) -> str:
    h = hashlib.sha256()
    for part in (notebook.read_bytes(), json.dumps(params, sort_keys=True).encode(),
                 profile_file.read_bytes(), lib_digest.encode(), previous.encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def execute_stage(notebook: Path, output: Path, params: Mapping[str, Any]) -> None:
    """Execute one notebook with papermill; on failure name the notebook and cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=dict(params), kernel_name="python3",
            progress_bar=False, cwd=str(NOTEBOOKS_DIR),
        )
    except PapermillExecutionError as err:
        raise RuntimeError(
            f"notebook {notebook.name} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"the executed copy with the traceback is {output}"
        ) from err


def run_paper(profile_name: str, stages: tuple[str, ...] = STAGES, force: bool = False) -> list[str]:
    """Run the given stages in order for a profile; returns the stages that actually ran."""
    from lib.profiles import load_profile, profile_path

    profile = load_profile(profile_name)
    available = profile_parameters(profile)
    stamp_dir = resolve(profile.out_dir) / "stamps"
    previous, ran, lib_digest = "", [], _lib_digest()
    for stage in STAGES:
        notebook = NOTEBOOKS_DIR / f"{stage}.ipynb"
        params = stage_parameters(notebook, available)
        stamp = stage_stamp(notebook, params, profile_path(profile_name), previous, lib_digest)
        previous = stamp
        stamp_file = stamp_dir / f"{stage}.sha256"
        output = RUNS_DIR / profile.name / f"{stage}.ipynb"
        up_to_date = stamp_file.exists() and stamp_file.read_text().strip() == stamp and output.exists()
        if stage not in stages or (up_to_date and not force):
            print(f"[paper] {stage}: {'up to date' if up_to_date else 'not selected'}", flush=True)
            continue
        start = time.perf_counter()
        print(f"[paper] {stage}: running ({profile.name})", flush=True)
        execute_stage(notebook, output, params)
        atomic_write_text(stamp_file, stamp + "\n")
        print(f"[paper] {stage}: done in {time.perf_counter() - start:.0f} s -> {output}", flush=True)
        ran.append(stage)
    return ran


def register_cli(subparsers) -> None:
    p = subparsers.add_parser("paper", help="execute the notebook series for a profile")
    p.add_argument("--profile", default="cpu", help="profile name (profiles/<name>.yaml)")
    p.add_argument("--stage", action="append", choices=STAGES, help="run only these stages")
    p.add_argument("--force", action="store_true", help="re-run stages even when up to date")
    p.set_defaults(func=_cli_paper)


def _cli_paper(args) -> int:
    try:
        run_paper(args.profile, tuple(args.stage or STAGES), args.force)
    except (RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"[paper] FAILED: {err}", flush=True)
        return 1
    return 0
