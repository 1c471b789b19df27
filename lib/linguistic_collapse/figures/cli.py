"""The shell command ``figures``: Figures 1-3 of the paper from a results table."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from linguistic_collapse.core.paths import cli_path, resolve
from linguistic_collapse.figures.loss import loss_vs_measures
from linguistic_collapse.figures.save import save_figure
from linguistic_collapse.figures.style import apply_style
from linguistic_collapse.nc.registry import figure_measures
from linguistic_collapse.tables.analysis import correlate

PAPER_FIGURES = {  # file name -> the measures the registry puts in that paper figure
    f"{fig}_loss_vs_{suffix}": figure_measures(fig)
    for fig, suffix in (("fig1", "nc"), ("fig2", "nc2"), ("fig3", "nc3"))
}


def _cli_figures(args: argparse.Namespace) -> int:
    apply_style()
    table = pd.read_csv(resolve(args.table))
    correlations = correlate(table, n_bootstrap=100, seed=0)
    for name, measures in PAPER_FIGURES.items():
        paths = save_figure(loss_vs_measures(table, measures, correlations), name, args.profile,
                            figures_dir=args.figures_dir)
        print("wrote", ", ".join(str(p) for p in paths))
    return 0


def register_cli(subparsers: Any) -> None:
    """``figures``: Figures 1-3 from a results table CSV into figures/<profile>/."""
    p = subparsers.add_parser("figures", help="draw Figures 1-3 from a results.csv")
    p.add_argument("--table", required=True, type=cli_path,
                   help="results.csv written by `analyze` (from your directory)")
    p.add_argument("--profile", required=True, help="figures go to figures/<profile>/")
    p.add_argument("--figures-dir", default=None, type=cli_path,
                   help="override the figures root (default figures/; from your directory)")
    p.set_defaults(func=_cli_figures)
