"""Shell interface: ``python -m linguistic_collapse COMMAND ...``; every per-model step runs without a notebook.

``--device`` of every command is checked (``check_device``) before anything is loaded.
``--help`` imports nothing heavy: the command table below names each command's module, and only
the chosen command's module is imported (it adds its own arguments with ``register_cli``).
Mistakes a user can fix (``UserError``, a missing file, a bad value) and operating-system errors
(disk full, read-only, permission denied, a folder where a file belongs: the path and the
errno's meaning), also when a library wraps them (safetensors' "(os error N)"), print one line and exit with status 2; set ``LC_TRACEBACK=1`` to see the
traceback instead.

Profiles, notebooks, runs, figures and data are found in the checkout you work in: the nearest
folder at or above the working directory holding ``profiles/`` and ``notebooks/``, or the one
``--root DIR`` (before the command) or ``$LC_ROOT`` names; never where the code is installed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from linguistic_collapse.core.openmp import default_wait_policy

default_wait_policy()  # before any command imports torch: OpenMP reads it once, when it loads

from linguistic_collapse.core.errors import UserError, as_os_error, os_error_line  # noqa: E402
from linguistic_collapse.core.paths import ROOT_ENV, checked_root  # noqa: E402
from linguistic_collapse.lm.device_names import check_device  # noqa: E402

# command -> (module defining register_cli, one-line help); order = order in --help
COMMANDS: dict[str, tuple[str, str]] = {
    "paper": ("series.paper", "execute the notebook series for a profile (make paper)"),
    "grid": ("pipeline.grid", "train, collect and measure a profile's whole grid (local or SLURM)"),
    "train": ("pipeline.grid", "train one run of a profile (resumes; no-op when current)"),
    "prepare-corpus": ("lm.data", "tokenize a corpus into cached token blocks"),
    "collect": ("pipeline.collect_cli", "statistics passes of one model: a checkpoint folder or hub name"),
    "merge-stats": ("pipeline.stats_cli", "merge the shard files of one statistics pass"),
    "measure": ("pipeline.stats_cli", "neural-collapse measures of a stats file"),
    "analyze": ("tables.analysis", "results table, correlations and permutation test as CSVs"),
    "figures": ("figures.cli", "Figures 1-3 from a results table"),
    "import-authors": ("tables.authors", "the authors' published lc-*.csv as a results table"),
    "pretrained": ("pipeline.pretrained", "measure hub or local pretrained causal LMs on a corpus"),
}
USER_ERRORS = (ValueError, OSError)  # OSError: every errno, through errors.os_error_line


def _summary_parser() -> argparse.ArgumentParser:
    """Every command with its help line, without importing any command module."""
    parser = argparse.ArgumentParser(prog="python -m linguistic_collapse", description=__doc__.splitlines()[0])
    _add_root(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _add_root(parser: argparse.ArgumentParser) -> None:
    """``--root DIR`` (given before the command), shown in ``--help``."""
    parser.add_argument("--root", metavar="DIR",
                        help=f"the checkout to work in (default: ${ROOT_ENV}, else the nearest "
                             "folder at or above this one holding profiles/ and notebooks/)")


def take_root(argv: list[str]) -> list[str]:
    """``argv`` without a leading ``--root DIR`` / ``--root=DIR``, whose checked checkout is put
    in ``$LC_ROOT`` (so notebook kernels and subprocesses get it too)."""
    if argv and argv[0].startswith("--root="):
        given, rest = argv[0].split("=", 1)[1], argv[1:]
    elif argv and argv[0] == "--root" and len(argv) > 1:
        given, rest = argv[1], argv[2:]
    else:
        return argv
    os.environ[ROOT_ENV] = str(checked_root(given, "--root"))
    return rest


def build_parser(command: str) -> argparse.ArgumentParser:
    """The full parser for one command: its module registers the arguments."""
    module = importlib.import_module(f"linguistic_collapse.{COMMANDS[command][0]}")
    parser = argparse.ArgumentParser(prog="python -m linguistic_collapse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        argv = take_root(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not argv or argv[0] not in COMMANDS:
        _summary_parser().parse_args(argv)  # prints help or a usage error and exits
        return 2
    try:
        args = build_parser(argv[0]).parse_args(argv)
        if getattr(args, "device", None) is not None:  # every command, before any loading
            args.device = check_device(args.device)
        result = args.func(args)
    except Exception as err:  # noqa: BLE001 (a library's wrapped OSError is one line too)
        wrapped = err if isinstance(err, USER_ERRORS) else as_os_error(err)
        if wrapped is None or os.environ.get("LC_TRACEBACK"):
            raise
        message = (os_error_line(wrapped) if isinstance(wrapped, OSError)
                   else " ".join(str(wrapped).split()) or type(wrapped).__name__)
        print(f"error: {message}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
