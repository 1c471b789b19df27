"""Notebook sources: notebooks/NN_name.py (jupytext py:percent) -> notebooks/NN_name.ipynb, and the
check that every .ipynb twin matches its source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lib.core.paths import (
    NOTEBOOKS_DIR,
    atomic_write_text,
)

# Notebook sources: notebooks/NN_name.py (jupytext py:percent) -> notebooks/NN_name.ipynb

NOTEBOOK_METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}}


def notebook_from_source(source: Path) -> Any:
    """The source notebook a py:percent file defines: no outputs, no execution counts, cell ids
    ``<stem>-NN`` and only ``tags`` kept in cell metadata, so it is a pure function of the .py."""
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
    return nb


def notebook_text(nb: Any) -> str:
    """Canonical JSON text of a notebook (what ``sync_notebooks`` writes)."""
    import nbformat

    return nbformat.writes(nb) + "\n"


def sync_notebooks(folder: Path = NOTEBOOKS_DIR, check: bool = False) -> list[Path]:
    """Rebuild each ``<folder>/*.ipynb`` from its ``.py`` twin; returns the notebooks that
    differed. A ``.ipynb`` edited after its ``.py`` (JupyterLab without jupytext) is first
    written back to the ``.py``, so no edit is lost. ``check``: change nothing, only report."""
    import jupytext

    stale = []
    for source in sorted(folder.glob("[0-9][0-9]_*.py")):
        notebook = source.with_suffix(".ipynb")
        if (not check and notebook.exists()
                and notebook.stat().st_mtime > source.stat().st_mtime
                and notebook_from_source(source).cells != _clean_cells(notebook)):
            jupytext.write(jupytext.read(notebook), source, fmt="py:percent")
        text = notebook_text(notebook_from_source(source))
        if not notebook.exists() or notebook.read_text(encoding="utf-8") != text:
            stale.append(notebook)
            if not check:
                atomic_write_text(notebook, text)
    return stale


def _clean_cells(notebook: Path) -> Any:
    """The cells of a .ipynb as its .py would define them (outputs and ids dropped)."""
    import tempfile

    import jupytext

    with tempfile.TemporaryDirectory() as tmp:
        py = Path(tmp) / f"{notebook.stem}.py"
        jupytext.write(jupytext.read(notebook), py, fmt="py:percent")
        return notebook_from_source(py).cells
