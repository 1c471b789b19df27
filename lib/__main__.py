"""Shell interface: ``python -m lib SUBCOMMAND ...`` (train, grid, collect, merge-stats, measure, paper).

Every per-model step runs here without a notebook, so a cluster job can call it directly.
Each module with a command defines ``register_cli(subparsers)``; this file only gathers them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

CLI_MODULES = ("data", "pipeline", "collect", "measure", "analysis", "plots", "paper")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in CLI_MODULES:
        module = importlib.import_module(f"lib.{name}")
        register = getattr(module, "register_cli", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = args.func(args)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
