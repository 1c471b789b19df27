"""Whether an existing stats file belongs to this pipeline's model and inputs.

The file format (``linguistic_collapse.nc.stats_file``) records what a file was made from: the
model's identity (``MODEL_KEYS``) and the hashes of its weights, corpus blocks and tokenizer
(``PROVENANCE_KEYS``, computed by ``linguistic_collapse.core.provenance``). The pipeline decides
with them: ``stale_reasons`` says why a finished file cannot be reused (``pipeline.refresh``
collects it again), ``check_same_model`` and ``check_provenance`` refuse a pass made from
another model or inputs, and ``read_train_pass`` gives the finished pass 1 a validation pass
builds on, after both checks (``pipeline.collect``).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc.accumulate import class_means
from linguistic_collapse.nc.stats_file import (
    FORMAT_VERSION,
    MODEL_KEYS,
    PASSES,
    PROVENANCE_KEYS,
    REFRESH,
    check_means,
    done_passes,
    earlier_meta,
    load_stats,
    load_stats_metadata,
    pass1_keys,
)


def stale_reasons(path: str | Path, *, lm_head_sha256: str | None = None,
                  weights_sha256: str | None = None, state_dict_sha256: str | None = None,
                  train_blocks_sha256: str | None = None,
                  val_blocks_sha256: str | None = None, tokenizer_sha256: str | None = None,
                  pass1_blocks: int | None = None) -> list[str]:
    """Why ``path`` cannot be reused: [] when it is finished and records every given hash (and
    ``pass1_blocks``, the train blocks used after any cap, when given)."""
    path = Path(path)
    if not path.is_file():
        return [f"no stats file at {path}"]
    try:
        meta = load_stats_metadata(path)
    except UserError as err:
        return [str(err)]
    if meta.get("format_version") != FORMAT_VERSION:
        return [f"format version {meta.get('format_version')!r} != {FORMAT_VERSION!r} (an older "
                f"file lacks the hashes of its tensors): {REFRESH}"]
    reasons = []
    if done_passes(meta) != {p: "" for p in PASSES}:
        reasons.append(f"unfinished: holds passes {done_passes(meta)} of {list(PASSES)}")
    given = {"lm_head_sha256": lm_head_sha256, "weights_sha256": weights_sha256,
             "state_dict_sha256": state_dict_sha256,
             "train_blocks_sha256": train_blocks_sha256, "val_blocks_sha256": val_blocks_sha256,
             "tokenizer_sha256": tokenizer_sha256}
    for key, want in given.items():
        if want is not None and meta.get(key) != want:
            reasons.append(f"{key} {str(meta.get(key))[:12]}... != current {want[:12]}...")
    if pass1_blocks is not None and meta.get("pass1_blocks") != str(pass1_blocks):
        reasons.append(f"pass1_blocks {meta.get('pass1_blocks')} != current {pass1_blocks}")
    return reasons


def check_same_model(meta: dict[str, str], info: dict[str, str], where: Path) -> None:
    """UserError when ``where`` (metadata ``meta``) was made from another model than ``info``."""
    for key in MODEL_KEYS:
        if meta.get(key) != info[key]:
            raise UserError(
                f"{where} belongs to another model: its {key} is {str(meta.get(key))[:40]!r}, "
                f"this model's is {info[key][:40]!r}; use another output path or delete the file"
            )


def check_provenance(meta: dict[str, str], prov: dict[str, str], where: Path) -> None:
    """UserError when ``where`` records another weights/blocks/tokenizer hash than ``prov``."""
    for key, want in prov.items():
        if meta.get(key) and want and meta[key] != want:
            raise UserError(f"{where} was made from other inputs: its {key} is "
                            f"{meta[key][:12]}..., this run's {want[:12]}...; use another "
                            "output path, or delete the file to collect again")


def read_train_pass(path: str | Path, info: dict[str, str], prov: dict[str, str]
                    ) -> tuple[dict[str, Tensor], dict[str, str], str, Tensor]:
    """The finished pass 1 a validation pass builds on, checked to belong to this model and
    inputs: (pass-1 tensors, metadata to carry over, means_hash, means (V, D) float64)."""
    meta = load_stats_metadata(path)
    check_same_model(meta, info, Path(path))
    check_provenance(meta, prov, Path(path))
    if done_passes(meta).get(1) != "" or meta.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"pass 2 must use the finished pass-1 means: {path} holds no finished, merged pass 1 "
            f"of format {FORMAT_VERSION} (passes: {done_passes(meta)}); run pass 1 or merge its "
            "shards first"
        )
    tensors = {k: v for k, v in load_stats(path).items() if k in pass1_keys(meta)}
    means = class_means(tensors["counts"], tensors["sums"])
    check_means(means, meta.get("means_hash", ""))
    keep = {**earlier_meta(meta, 2),
            **{k: meta[k] for k in (*PROVENANCE_KEYS, "layers", "n_layer") if meta.get(k)}}
    return tensors, keep, meta["means_hash"], means
