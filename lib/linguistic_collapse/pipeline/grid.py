"""The shell commands ``grid`` (a profile's whole grid, locally or on SLURM) and ``train`` (one
run of a profile); they choose between ``linguistic_collapse.pipeline.jobs`` and ``linguistic_collapse.pipeline.slurm``."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.profiles import load_profile, profile_arg
from linguistic_collapse.pipeline.costs import cpu_summary, dry_run
from linguistic_collapse.pipeline.jobs import run_local, train_profile_run
from linguistic_collapse.pipeline.slurm import submit_slurm


def _cli_grid(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    if args.dry_run:
        table = dry_run(profile)
        with pd.option_context("display.max_rows", None, "display.width", 200):
            print(table.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
        print(cpu_summary(profile))
        return 0
    if args.slurm:
        print(submit_slurm(profile, only_train=args.only_train, retrain=args.retrain)
              .summary(profile))
        return 0
    run_local(profile, progress=not args.no_progress, only_train=args.only_train,
              retrain=args.retrain)
    return 0


def _cli_train(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    result = train_profile_run(profile, ModelName.parse(args.run), progress=not args.no_progress,
                               device=args.device, retrain=args.retrain)
    last = result["checkpoints"][-1]
    print(f"{result['run']}: {result['status']}, val_loss {last['val_loss']:.4f}, "
          f"val_acc {last['val_acc']:.4f}")
    return 0


def register_cli(subparsers: Any) -> None:
    """``python -m linguistic_collapse train --profile NAME --run RUN [--retrain]`` and ``python -m linguistic_collapse grid
    --profile NAME [--dry-run] [--slurm] [--only-train] [--retrain]``."""
    p = subparsers.add_parser("train", help="train one run of a profile (resumes; no-op if done)")
    p.add_argument("--profile", required=True, type=profile_arg,
                   help="profile name (profiles/<name>.yaml) or YAML path (from your directory)")
    p.add_argument("--run", required=True, help="run name, e.g. L1-d16-e1-wd0.0005-s0")
    p.add_argument("--device", default=None, help="override the profile's device")
    p.add_argument("--retrain", action="store_true",
                   help="discard the run if it was trained from other inputs, and train it again")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cli_train)

    p = subparsers.add_parser("grid", help="train, collect and measure a profile's whole grid")
    p.add_argument("--profile", required=True, type=profile_arg,
                   help="profile name (profiles/<name>.yaml) or YAML path (from your directory)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the jobs, GPU-hours, CPU minutes and peak memory only")
    p.add_argument("--slurm", action="store_true", help="submit to SLURM with submitit")
    p.add_argument("--only-train", action="store_true", help="train only (no collect/measure)")
    p.add_argument("--retrain", action="store_true",
                   help="retrain runs that were trained from other inputs (else they are refused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cli_grid)
