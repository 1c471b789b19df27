"""Shell commands of the core ``linguistic_collapse.nc``: ``python -m linguistic_collapse measure`` (the measures of a stats
file) and ``python -m linguistic_collapse merge-stats`` (merge the shard files of one pass)."""

from __future__ import annotations

import argparse

from linguistic_collapse.core.paths import (
    atomic_write,
    atomic_write_json,
    check_out,
    cli_path,
    is_csv_with,
    is_json_with,
    positive_int,
    resolve,
)
from linguistic_collapse.nc.measure import measure_stats_file
from linguistic_collapse.nc.merge import merge_stats
from linguistic_collapse.nc.stats_file import PASSES, is_stats_file


def _cli_measure(args: argparse.Namespace) -> int:
    check_out(args.out, suffix=".json", inputs=[args.stats],
              ours=lambda p: is_json_with(p, "stats_path"))
    if args.per_class is not None:
        check_out(args.per_class, suffix=".csv", inputs=[args.stats, args.out], flag="--per-class",
                  ours=lambda p: is_csv_with(p, ["token_id", "count"]))
    result, table = measure_stats_file(resolve(args.stats), args.device, args.tile,
                                       per_class=args.per_class is not None)
    atomic_write_json(resolve(args.out), result)
    if table is not None:
        atomic_write(resolve(args.per_class), lambda tmp: table.to_csv(tmp, index=False))
    return 0


def _cli_merge(args: argparse.Namespace) -> None:
    check_out(args.out, suffix=".safetensors", inputs=args.parts, ours=is_stats_file)
    print(merge_stats(args.parts, args.out, args.pass_))


def register_cli(subparsers) -> None:
    """Add ``measure`` and ``merge-stats`` to the ``python -m linguistic_collapse`` subcommands."""
    p = subparsers.add_parser("measure", help="neural-collapse measures of a stats file")
    p.add_argument("stats", type=cli_path, help="path to a stats.safetensors written by linguistic_collapse.pipeline.collect")
    p.add_argument("--out", required=True, type=cli_path, help="metrics JSON to write")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--tile", type=positive_int, default=2048, help="Gram tile size (default: 2048)")
    p.add_argument("--per-class", default=None, type=cli_path, help="also write a per-class CSV here")
    p.set_defaults(func=_cli_measure)
    m = subparsers.add_parser("merge-stats", help="merge the shard files of one pass")
    m.add_argument("out", type=cli_path, help="merged stats file (relative to your directory)")
    m.add_argument("parts", type=cli_path, nargs="+", help="the shard files of one pass")
    m.add_argument("--pass", dest="pass_", type=int, choices=PASSES,
                   help="the pass to merge (default: the parts' last pass)")
    m.set_defaults(func=_cli_merge)
