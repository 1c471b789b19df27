"""The shell command ``collect``: the statistics passes of one model (a checkpoint folder or a hub
name) into a stats file, resumable and shardable."""

from __future__ import annotations

import argparse
from pathlib import Path

from linguistic_collapse.core.paths import check_out, cli_path, positive_int
from linguistic_collapse.lm import identity as ident
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.pipeline import layers as lay
from linguistic_collapse.pipeline.blocks import parse_shard
from linguistic_collapse.pipeline.collect import collect_model_stats, relative_to_stats


def _model_arg(text: str) -> Path | str:
    """A checkpoint folder relative to the caller's directory, else a hub name as given."""
    path = Path(text).expanduser()
    return path.absolute() if path.exists() else text


def _stats_of(path: Path, model: Path | str) -> bool:
    """True when ``path`` is a stats file of ``model`` (a file of another model is not ours to
    replace)."""
    if not sf.is_stats_file(path):
        return False
    recorded = sf.load_stats_metadata(path).get("model")
    return not recorded or recorded == (relative_to_stats(ident.name_of_path(model), path)
                                        if isinstance(model, Path) else model)


def _cli_collect(args: argparse.Namespace) -> None:
    inputs = [p for p in (args.train_blocks, args.val_blocks, args.base) if p is not None]
    if isinstance(args.model_dir, Path):
        inputs += sorted(Path(args.model_dir).glob("*")) if Path(args.model_dir).is_dir() else []
    check_out(args.out, suffix=".safetensors", inputs=inputs,
              ours=lambda p: _stats_of(p, args.model_dir))
    out = collect_model_stats(
        args.model_dir, args.train_blocks, args.val_blocks, args.out,
        batch_size=args.batch_size, device=args.device, max_train_blocks=args.max_train_blocks,
        max_val_blocks=args.max_val_blocks, checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress, shard=args.shard, passes=args.passes,
        base=args.base, layers=args.layers,
    )
    print(out)


def _passes_arg(text: str) -> str | tuple[int, ...]:
    if text == "all":
        return "all"
    if text not in ("1", "2"):
        raise argparse.ArgumentTypeError(f"--pass must be 1 (train), 2 (validation) or all, "
                                         f"got {text!r}")
    return (int(text),)


def _shard_arg(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register_cli(subparsers) -> None:
    """Add ``collect`` to the ``python -m linguistic_collapse`` subcommands."""
    p = subparsers.add_parser("collect", help="statistics passes of one model checkpoint")
    p.add_argument("model_dir", type=_model_arg,
                   help="checkpoint folder (save_pretrained) or hub name, e.g. gpt2")
    p.add_argument("--train-blocks", type=cli_path, help="train_blocks.npy (pass 1)")
    p.add_argument("--val-blocks", type=cli_path, help="val_blocks.npy (pass 2)")
    p.add_argument("--out", type=cli_path, required=True, help="stats.safetensors to write")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-train-blocks", type=positive_int)
    p.add_argument("--max-val-blocks", type=positive_int)
    p.add_argument("--checkpoint-every", type=positive_int, default=50, help="batches between saves")
    p.add_argument("--shard", type=_shard_arg, help="i/n: process shard i of n (one pass)")
    p.add_argument("--pass", dest="passes", type=_passes_arg, default="all",
                   help="1 (train), 2 (validation) or all (default)")
    p.add_argument("--base", type=cli_path, help="merged pass-1 stats (sharded pass 2)")
    p.add_argument("--layers", type=lay.parse_layers_arg, default=None,
                   help="also each residual stream's statistics (pass 1): all, or indices "
                   "0,2,4 (0 = embeddings, n_layer = last block's output before the final norm)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cli_collect)
