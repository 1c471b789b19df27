"""What an executed notebook stage was run from, as one hash (``linguistic_collapse.series.paper`` skips a stage whose
stamp is unchanged): its notebook, parameters, profile, the ``lib`` sources, the previous
stage's stamp, the output root, and the content of the data files the stage reads.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import Layout, resolve
from linguistic_collapse.core.provenance import sha256_file

CODE_DIR = Path(__file__).resolve().parents[1]  # the package's own files: what runs


def lib_digest() -> str:
    """sha256 over every ``.py`` file of the package that runs (``lib/linguistic_collapse/``
    of its checkout, or its installed copy), subpackages included (path and bytes)."""
    h = hashlib.sha256()
    root = CODE_DIR.parent
    for path in sorted(CODE_DIR.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def _safetensors_header(path: Path) -> bytes:
    """A stats file's header: tensor layout plus metadata (means, weights and blocks hashes),
    enough to tell statistics apart without hashing gigabytes at paper scale."""
    with path.open("rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return f.read(size)


def stage_inputs(stage: str, profile: Any, results_table: Path) -> list[Path]:
    """The data files a stage reads (what the previous stage wrote, or the corpus text)."""
    layout = Layout(profile.out_path)
    if stage == "01_train":
        corpus = profile.corpus
        folder = resolve(corpus.path) if corpus.source == "path" and corpus.path else None
        return sorted(folder.glob("*.txt")) if folder is not None and folder.is_dir() else []
    if stage == "02_collect":
        return sorted(layout.models_dir.glob("*/results.json"))
    if stage == "03_measure":
        return sorted(layout.root.glob("stats/*/stats.safetensors"))
    if stage == "07_layers":  # the per-layer sections of the metrics
        return sorted(layout.metrics_dir.glob("*.json"))
    if stage == "08_dynamics":  # trains its own snapshots from the corpus; compares with the grid
        runs = [layout.results(ModelName.parse(str(run))) for run in profile.dynamics.runs]
        return [p for p in (layout.manifest, *runs) if p.is_file()]
    return [results_table] if results_table.is_file() else []


def inputs_digest(paths: list[Path]) -> str:
    """sha256 over the files' names and contents (stats files: their headers)."""
    h = hashlib.sha256()
    for path in paths:
        content = (hashlib.sha256(_safetensors_header(path)).hexdigest()
                   if path.suffix == ".safetensors" else sha256_file(path))
        h.update(f"{path.name}\0{content}\n".encode())
    return h.hexdigest()


def stage_stamp(notebook: Path, params: Mapping[str, Any], profile_file: Path, previous: str,
                lib_digest: str, output_root: str = "", inputs: str = "") -> str:
    """Hash of everything an executed stage depends on."""
    h = hashlib.sha256()
    for part in (notebook.read_bytes(), json.dumps(params, sort_keys=True).encode(),
                 profile_file.read_bytes(), lib_digest.encode(), previous.encode(),
                 output_root.encode(), inputs.encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()
