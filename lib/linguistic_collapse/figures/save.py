"""Where and how figures are written: ``figures/<profile>/<name>.<fmt>`` (or the notebook's
folder), atomically and byte-stable (no software or date metadata, a fixed SVG id salt), so
unchanged numbers give unchanged files; ``show_and_save`` also displays the figure in a
notebook. Figure functions return a matplotlib Figure and never show or save it themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from linguistic_collapse.core.paths import atomic_write, figures_dir_for, resolve

SVG_SALT = "linguistic-collapse"
FORMATS = ("png", "svg", "pdf")


def show_and_save(fig: Figure, name: str, where: Any, **kwargs: Any) -> None:
    """Display ``fig`` in the notebook (so executed notebooks carry it), then ``save_figure``.

    Returns nothing, so a cell ending in this call shows the figure only, not a list of this
    machine's paths (``save_figure`` returns them)."""
    # display libraries: loaded only when shown in a notebook
    from IPython.display import display

    display(fig)
    save_figure(fig, name, where, **kwargs)


def figure_folder(where: Any, figures_dir: str | os.PathLike | None = None) -> Path:
    """The folder of a figure: ``where.figures_dir`` for a ``linguistic_collapse.series.paper.NotebookConfig``;
    for a profile name, ``<figures_dir>/<profile>/`` or else ``linguistic_collapse.core.paths.figures_dir_for``
    (``figures/<profile>/``, or under ``$LC_OUTPUT_ROOT`` when set)."""
    if hasattr(where, "figures_dir"):
        return Path(where.figures_dir)
    if not isinstance(where, str) or not where or "/" in where:
        raise ValueError(f"figures go to a profile's folder: pass a profile name or the notebook's "
                         f"cfg, not {where!r}")
    return resolve(figures_dir) / where if figures_dir is not None else figures_dir_for(where)


def save_figure(fig: Figure, name: str, where: Any, formats: Sequence[str] = ("png", "svg"),
                figures_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write ``fig`` to ``figure_folder(where, figures_dir)/<name>.<fmt>`` atomically; close it.

    Byte-stable: no software or date metadata, a fixed SVG id salt, so unchanged numbers give
    unchanged files.
    """
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"figure name {name!r} must be a plain file stem (no folders)")
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ValueError(f"unsupported figure formats {bad}; choose from {FORMATS}")
    folder = figure_folder(where, figures_dir)
    metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}
    paths = []
    try:
        with plt.rc_context({"svg.hashsalt": SVG_SALT, "svg.fonttype": "path"}):
            for fmt in formats:
                write = lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt, metadata=metadata[fmt])  # noqa: E731
                paths.append(atomic_write(folder / f"{name}.{fmt}", write))
    finally:
        plt.close(fig)
    return paths
