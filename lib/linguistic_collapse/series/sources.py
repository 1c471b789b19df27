"""Notebook sources: notebooks/NN_name.py (jupytext py:percent) <-> notebooks/NN_name.ipynb, kept
in step without losing an edit (the twin changed since the last sync wins; both changed: refused).

The .py twins are the only tracked sources; the .ipynb twins are working copies, git-ignored,
built from them here (``make notebooks``, ``make lab``, the start of ``make paper``), so nothing
JupyterLab saves into a notebook (outputs, metadata) can change a tracked file."""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.paths import atomic_write_text, notebooks_dir, repo_root, short

# The kernel display name is the one ipykernel's spec gives, so saving in JupyterLab keeps it.
NOTEBOOK_METADATA = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                    "name": "python3"},
                     "language_info": {"name": "python"}}
SYNC_KEY = "twin_sync"  # notebook metadata: digest of the cells both twins had when last in sync


def _cells_digest(cells: Any) -> str:
    """sha256 of what a .py twin defines of each cell: its type, source and tags."""
    data = [[c.cell_type, c.source, c.metadata.get("tags", [])] for c in cells]
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def notebook_from_source(source: Path) -> Any:
    """The source notebook a py:percent file defines: no outputs, no execution counts, cell ids
    ``<stem>-NN``, only ``tags`` kept in cell metadata, and the digest of its cells (what
    ``sync_notebooks`` compares against), so it is a pure function of the .py."""
    # notebook tooling: loaded only when notebooks are run or synced
    import jupytext

    nb = jupytext.read(source, fmt="py:percent")
    nb.metadata = json.loads(json.dumps(NOTEBOOK_METADATA))
    nb.nbformat, nb.nbformat_minor = 4, 5
    for i, cell in enumerate(nb.cells):
        cell.id = f"{source.stem}-{i:02d}"
        tags = cell.metadata.get("tags")
        cell.metadata = {"tags": list(tags)} if tags else {}
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata[SYNC_KEY] = {"cells_sha256": _cells_digest(nb.cells)}
    return nb


def notebook_text(nb: Any) -> str:
    """Canonical JSON text of a notebook (what ``sync_notebooks`` writes)."""
    # notebook tooling: loaded only when notebooks are run or synced
    import nbformat

    return nbformat.writes(nb) + "\n"


@dataclass(frozen=True)
class TwinSync:
    """One pair brought in step: ``direction`` is ``py->ipynb`` (the .py changed), ``new`` (no
    notebook yet), ``outputs`` (same cells; outputs or metadata cleared) or ``ipynb->py``."""

    source: Path
    notebook: Path
    direction: str

    def describe(self) -> str:
        """The line ``make notebooks`` prints: what it did to which file."""
        if self.direction == "ipynb->py":
            return (f"wrote the edits of {short(self.notebook)} back to {self.source.name}, "
                    f"then rebuilt the notebook from it")
        if self.direction == "new":
            return f"built {short(self.notebook)} from {self.source.name}"
        if self.direction == "outputs":
            return (f"cleared the outputs and metadata saved in {short(self.notebook)} "
                    f"(its cells match {self.source.name})")
        return f"rebuilt {short(self.notebook)} from {self.source.name}"


def sync_direction(source: Path, notebook: Path) -> str | None:
    """Which twin changed since the pair was last in sync: ``py->ipynb`` (the .py, or no
    notebook yet), ``ipynb->py`` (the notebook only), ``None`` (same cells). Both changed, or no
    record of the last sync and different cells: ``UserError``, since either choice loses an edit."""
    if not notebook.exists():
        return "py->ipynb"
    py_cells = notebook_from_source(source).cells
    nb_cells = _clean_cells(notebook)
    if _cells_digest(py_cells) == _cells_digest(nb_cells):
        return None
    try:
        recorded = json.loads(notebook.read_text(encoding="utf-8"))["metadata"][SYNC_KEY]["cells_sha256"]
    except (ValueError, KeyError, TypeError):
        recorded = None
    py_changed = _cells_digest(py_cells) != recorded
    nb_changed = _cells_digest(nb_cells) != recorded
    if py_changed and not nb_changed:
        return "py->ipynb"
    if nb_changed and not py_changed:
        return "ipynb->py"
    raise UserError(
        f"{short(source)} and {short(notebook)} both changed since they were last in sync; "
        f"keep the one you want (`git diff` shows both), delete or `git checkout` the other, "
        f"then run `make notebooks` again")


def sync_notebooks(folder: Path | None = None, check: bool = False,
                   keep_outputs: bool = False) -> list[TwinSync]:
    """Bring each ``<folder>/NN_*.py`` and its ``.ipynb`` twin in step; returns what changed.
    The twin edited since the last sync wins: a .py edit rebuilds the .ipynb (outputs stripped),
    a .ipynb edit (JupyterLab without pairing) is written back to the .py first. When both were
    edited, no file of any pair is written (``UserError``). ``check``: change nothing, only report.
    ``keep_outputs`` (``make lab``): a notebook whose cells match its .py keeps what Lab saved in
    it (outputs, metadata); ``make paper`` clears them, since it executes the notebooks as the
    .py files define them."""
    # notebook tooling: loaded only when notebooks are run or synced
    import jupytext

    changes = []
    sources = sorted((folder or notebooks_dir()).glob("[0-9][0-9]_*.py"))
    # every pair is judged before any is written: a refusal leaves all files as they were
    directions = [sync_direction(source, source.with_suffix(".ipynb")) for source in sources]
    for source, direction in zip(sources, directions, strict=True):
        notebook = source.with_suffix(".ipynb")
        if direction == "ipynb->py" and not check:
            write_source(jupytext.read(notebook), source)
        text = notebook_text(notebook_from_source(source))
        if keep_outputs and direction is None and notebook.exists():
            continue
        if direction == "ipynb->py" or not notebook.exists() or notebook.read_text(encoding="utf-8") != text:
            kind = direction or "outputs"
            if not notebook.exists():
                kind = "new"
            changes.append(TwinSync(source, notebook, kind))
            if not check:
                atomic_write_text(notebook, text)
    return changes


def write_source(nb: Any, source: Path) -> None:
    """Write ``nb``'s cells as a py:percent twin exactly as JupyterLab's jupytext does under
    ``jupytext.toml`` (its metadata filters: no YAML header, only cell tags)."""
    # notebook tooling: loaded only when notebooks are run or synced
    import jupytext
    from jupytext.config import load_jupytext_configuration_file

    config = load_jupytext_configuration_file(str(repo_root() / "jupytext.toml"))
    nb = copy.deepcopy(nb)
    nb.metadata = {"jupytext": {"notebook_metadata_filter": config.notebook_metadata_filter,
                                "cell_metadata_filter": config.cell_metadata_filter}}
    jupytext.write(nb, source, fmt="py:percent", config=config)


def _clean_cells(notebook: Path) -> Any:
    """The cells of a .ipynb as its .py would define them (outputs and ids dropped)."""
    # notebook tooling: loaded only when notebooks are run or synced
    import jupytext

    with tempfile.TemporaryDirectory() as tmp:
        py = Path(tmp) / f"{notebook.stem}.py"
        write_source(jupytext.read(notebook), py)
        return notebook_from_source(py).cells


def main(argv: list[str] | None = None) -> int:
    """``python -m linguistic_collapse.series.sources [--keep-outputs]``: ``sync_notebooks`` for
    ``make lab`` (which keeps what Lab saved), one line per change, one line on a refusal."""
    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--keep-outputs", action="store_true",
                        help="leave notebooks whose cells match their .py as they are")
    args = parser.parse_args(argv)
    try:
        changes = sync_notebooks(keep_outputs=args.keep_outputs)
    except UserError as err:
        print(f"error: {err}")
        return 2
    for change in changes:
        print(change.describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
