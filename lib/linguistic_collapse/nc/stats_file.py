"""The ``stats.safetensors`` format: write, read and verify, the metadata it records.

Tensors: ``counts`` [V] int64, ``sums`` [V, D] float64, ``sq_dev`` [V] float64 (pass 1, train:
sum of ||x - mu_c||^2), ``sw`` [D, D] float64 (pass 1: the pooled within-class scatter
sum_c sum_{x in c} (x - mu_c)(x - mu_c)^T of the head input, trace = sum of ``sq_dev``),
``val_counts`` [V] int64, ``val_agree`` [V] int64 (pass 2, validation),
``lm_head`` [V, D] float32. Metadata (strings): the model's identity (``model``, ``tokenizer``,
``vocab_size``, ``width``, ``lm_head_sha256``), what the file was made from
(``weights_sha256`` of saved weight files, or ``state_dict_sha256`` of a model collected in
memory, ``train_blocks_sha256``, ``val_blocks_sha256``, ``tokenizer_sha256``: see
``linguistic_collapse.core.provenance``), per pass ``pass{N}_blocks``, ``pass{N}_tokens``, ``pass{N}_shard`` ('' =
whole split, else 'i/n'), ``pass{N}_split_sha``; ``means_hash`` (sha256 of the train means that
pass 2 used, '' in a pass-1 shard), ``pass{N}_compute_dtype`` (the precision the features were
computed in, ``linguistic_collapse.lm.devices.compute_dtype``), ``tensors_sha256`` (JSON
{tensor name: sha256 of its dtype, shape and bytes} of every tensor of the file, checked on
every verified read) and ``format_version``. Optional, only when collected with
layers (``linguistic_collapse.pipeline.layers``): pass-1 tensors ``layer{i}.sums`` [V, D] float64 and ``layer{i}.sq_dev``
[V] float64 per residual-stream index i (sharing ``counts``; no pooled scatter per layer, only
the head input has ``sw``), listed in metadata ``layers`` ("0,1,2") with ``n_layer``; without
layers a file has no ``layer*`` tensors.

Shards of pass 1 merge exactly: counts and sums add, ``sq_dev`` and ``sw`` by Chan's formula
(``linguistic_collapse.nc.accumulate.merge_m2``, ``merge_scatter``); shards of pass 2 add. A file of an older
format is refused by the readers, with one line saying to collect it again. Whether a file
belongs to a pipeline's model and inputs (stale, or made from others) is decided by
``linguistic_collapse.pipeline.freshness`` from the keys recorded here.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from linguistic_collapse.core.errors import UserError, as_os_error
from linguistic_collapse.core.paths import atomic_write
from linguistic_collapse.core.provenance import sha256_array, sha256_tensor
from linguistic_collapse.nc.accumulate import class_means, means_hash

FORMAT_VERSION = "4"  # 1: three passes (sq_dev in its own pass); 2: one train pass + validation;
# 3: pass 1 also holds the pooled within-class scatter sw; 4: every tensor hashed (tensors_sha256)
REFRESH = ("collect it again with `python -m linguistic_collapse collect` (`make paper` rebuilds "
           "a profile's files)")
PASSES = (1, 2)
SPLITS = {1: "train", 2: "validation"}
PASS_TENSORS = {1: ("counts", "sums", "sq_dev", "sw"), 2: ("val_counts", "val_agree")}
STATS_KEYS = (*PASS_TENSORS[1], *PASS_TENSORS[2], "lm_head")
PASS_META = ("blocks", "tokens", "shard", "split_sha", "compute_dtype",
             "indices_sha256")  # pass{N}_<key> (the last: subsamples only)
MODEL_KEYS = ("model", "vocab_size", "width", "lm_head_sha256")
LAYER_TENSORS = ("sums", "sq_dev")  # per collected layer: layer{i}.<name> (module docstring)
# what a file was made from: shards and ClassStats parts are merged only when these agree
PROVENANCE_KEYS = ("lm_head_sha256", "weights_sha256", "state_dict_sha256", "train_blocks_sha256",
                   "val_blocks_sha256", "tokenizer_sha256")


# ---------------------------------------------------------------------------------------------
# Reading and writing.


def layer_key(layer: int, name: str) -> str:
    """Tensor name of a layer's pass-1 accumulator, e.g. ``layer2.sums``."""
    return f"layer{layer}.{name}"


def stored_layers(meta: dict[str, str]) -> tuple[int, ...]:
    """The residual-stream indices whose statistics a file holds (metadata ``layers``)."""
    text = meta.get("layers", "")
    return tuple(int(i) for i in text.split(",")) if text else ()


def pass1_keys(meta: dict[str, str]) -> tuple[str, ...]:
    """Every pass-1 tensor of a file: counts, sums, sq_dev, sw and its layers' accumulators."""
    return (*PASS_TENSORS[1], *(layer_key(i, n) for i in stored_layers(meta) for n in LAYER_TENSORS))


INT_TENSORS = ("counts", "val_counts", "val_agree")  # int64; every other tensor a float
FLOAT_DTYPES = (torch.float32, torch.float64)


def dtype_problem(tensors: dict[str, Tensor]) -> str | None:
    """What is wrong with the tensors' dtypes (counts int64, accumulators float32/64), or None:
    a float or bool count would be measured as a different, wrong number."""
    for key, t in tensors.items():
        if key in INT_TENSORS and t.dtype != torch.int64:
            return f"{key} is {str(t.dtype).removeprefix('torch.')}, expected int64 (a count)"
        if key not in INT_TENSORS and t.dtype not in FLOAT_DTYPES:
            return f"{key} is {str(t.dtype).removeprefix('torch.')}, expected float32 or float64"
    return None


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no stats file at {path}; run `python -m linguistic_collapse collect` first")
    return path


def _corrupt(path: Path, err: Exception) -> UserError:
    return UserError(f"{path} is not a readable stats file ({type(err).__name__}: "
                     f"{str(err).splitlines()[0] if str(err) else 'truncated?'}); delete it and "
                     "collect again with `python -m linguistic_collapse collect`")


def load_stats_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a stats file (model, vocab_size, passN_tokens, means_hash, ...)."""
    path = _existing(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _corrupt(path, err) from None


def load_stats(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a stats file, unverified (shards, working files; see ``read_stats``)."""
    path = _existing(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _corrupt(path, err) from None


def read_stats(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a stats file, verified: readable, this format version, every
    tensor present, ``means_hash`` equal to the hash of the means of the stored counts and sums,
    and ``lm_head_sha256`` equal to the stored LM head's. UserError naming the file otherwise."""
    meta, tensors = load_stats_metadata(path), load_stats(path)
    _check_complete(path, meta, tensors.keys())
    _check_tensors(path, meta, tensors)
    for i in stored_layers(meta):
        _check_tensors(path, meta, {"counts": tensors["counts"],
                                    **{n: tensors[layer_key(i, n)] for n in LAYER_TENSORS}})
    check_hashes(path, meta, tensors)
    return tensors, meta


def read_counts(path: str | Path) -> Tensor:
    """The ``counts`` [V] int64 of a finished stats file alone (a partial read), verified
    against the sha256 the file records for it."""
    meta, path = load_stats_metadata(path), Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            _check_complete(path, meta, set(f.keys()))
            counts = f.get_tensor("counts")
    except (SafetensorError, OSError, RuntimeError) as err:
        raise _corrupt(path, err) from None
    problem = dtype_problem({"counts": counts})
    if problem:
        raise UserError(f"{path}: {problem}; this is not a file linguistic_collapse.pipeline.collect wrote, collect it again")
    check_hashes(path, meta, {"counts": counts})
    return counts


def read_layers(path: str | Path) -> Iterator[tuple[int, dict[str, Tensor]]]:
    """(index, {counts, sums, sq_dev}) of each stored layer of a stats file, verified like
    ``read_stats`` (its layers' dtypes and shapes too) but read one layer at a time, so memory
    holds one layer's [V, D] sums (a 48-layer model's file does not fit at once)."""
    meta, path = load_stats_metadata(path), Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            _check_complete(path, meta, set(f.keys()))
            top = {k: f.get_tensor(k) for k in ("counts", "sums", "lm_head")}
            _check_tensors(path, meta, top)
            check_hashes(path, meta, top)
            check_hashes(path, meta, {k: f.get_tensor(k) for k in (
                *PASS_TENSORS[1], *PASS_TENSORS[2]) if k not in top})  # read, checked, dropped
            counts = top.pop("counts")
            del top  # the head's sums and LM head are not needed any more
            for i in stored_layers(meta):
                own = {layer_key(i, n): f.get_tensor(layer_key(i, n)) for n in LAYER_TENSORS}
                layer = {"counts": counts, **{n: own[layer_key(i, n)] for n in LAYER_TENSORS}}
                _check_tensors(path, meta, layer)
                check_hashes(path, meta, own)
                yield i, layer
    except (SafetensorError, OSError, RuntimeError) as err:
        raise _corrupt(path, err) from None


def _check_complete(path: str | Path, meta: dict[str, str], names: Collection[str]) -> None:
    """UserError unless ``path`` is of this format version and holds every tensor ``names``."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} has stats format {meta.get('format_version')!r}, this code reads "
                        f"{FORMAT_VERSION!r}; {REFRESH}")
    missing = [k for k in (*STATS_KEYS, *pass1_keys(meta)) if k not in names]
    if missing:
        raise UserError(f"{path} lacks tensors {missing} (an unfinished or sharded file); finish "
                        "its passes or merge its shards with `python -m linguistic_collapse merge-stats`")


def _check_tensors(path: str | Path, meta: dict[str, str], tensors: dict[str, Tensor]) -> None:
    """UserError unless the given tensors have their dtypes, a layer's their shapes [V, *] and
    [V], and (when given) sums and LM head the ``means_hash`` and ``lm_head_sha256`` recorded."""
    problem, V = dtype_problem(tensors), tensors["counts"].shape[0]
    sums, sq_dev = tensors["sums"], tensors.get("sq_dev")
    if not problem and (sums.dim() != 2 or len(sums) != V or sq_dev is not None and sq_dev.shape != (V,)):
        problem = f"sums {tuple(sums.shape)} or sq_dev do not fit {V} classes"
    if problem:
        raise UserError(f"{path}: {problem}; this is not a file linguistic_collapse.pipeline.collect wrote, collect it again")
    if "lm_head" not in tensors:  # a layer: no hash of its own
        return
    got = means_hash(class_means(tensors["counts"], tensors["sums"]))
    if meta.get("means_hash") != got:
        raise UserError(f"{path} is inconsistent: its means_hash {meta.get('means_hash')!r} is "
                        f"not the hash {got[:16]}... of its own means; collect it again")
    head = sha256_tensor(tensors["lm_head"])
    if meta.get("lm_head_sha256") != head:
        raise UserError(f"{path} is inconsistent: its lm_head_sha256 "
                        f"{meta.get('lm_head_sha256')!r} does not match its stored lm_head; "
                        "collect it again")


def tensor_sha256(tensor: Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes as stored (float64 stays float64)."""
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bits
        t = t.view(torch.int16)
    return sha256_array(t.numpy())


def tensor_hashes(tensors: dict[str, Tensor]) -> str:
    """The ``tensors_sha256`` metadata: canonical JSON {name: ``tensor_sha256``}."""
    return json.dumps({k: tensor_sha256(v) for k, v in sorted(tensors.items())},
                      sort_keys=True, separators=(",", ":"))


def check_hashes(path: str | Path, meta: dict[str, str], tensors: dict[str, Tensor]) -> None:
    """UserError in one line naming ``path`` and the tensor unless each of ``tensors`` has the
    sha256 its file's ``tensors_sha256`` records (a tensor altered or damaged after writing)."""
    try:
        recorded = json.loads(meta.get("tensors_sha256", ""))
    except ValueError:
        recorded = None
    if not isinstance(recorded, dict):
        raise UserError(f"{path} records no valid tensors_sha256, so its tensors cannot be "
                        f"verified; {REFRESH}")
    for key, t in tensors.items():
        if recorded.get(key) != tensor_sha256(t):
            raise UserError(f"{path}: tensor {key!r} does not match its recorded sha256 "
                            f"(altered or damaged after it was written); {REFRESH}")


def check_train_pass(path: str | Path, meta: dict[str, str]) -> dict[str, Tensor]:
    """The tensors of a file holding pass 1 (whole or a shard), verified like ``read_stats``:
    this format version, every pass-1 tensor present, ``means_hash`` (of a whole pass 1) and
    ``lm_head_sha256`` (when it stores an LM head) equal to those of its own tensors."""
    if meta.get("format_version") != FORMAT_VERSION or 1 not in done_passes(meta):
        raise UserError(f"{path} holds no pass 1 of stats format {FORMAT_VERSION} (format "
                        f"{meta.get('format_version')!r}, passes {done_passes(meta)}); collect "
                        "it again")
    tensors = load_stats(path)
    missing = [k for k in pass1_keys(meta) if k not in tensors]
    if missing:
        raise UserError(f"{path} lacks tensors {missing}; collect it again")
    if not meta.get("pass1_shard"):
        check_means(class_means(tensors["counts"], tensors["sums"]), meta.get("means_hash", ""))
    if "lm_head" in tensors and meta.get("lm_head_sha256") != sha256_tensor(tensors["lm_head"]):
        raise UserError(f"{path} is inconsistent: its lm_head_sha256 does not match its stored "
                        "lm_head; collect it again")
    check_hashes(path, meta, tensors)
    return tensors


def save_raw(path: Path, tensors: dict[str, Tensor], meta: dict[str, str]) -> Path:
    """Atomic save of tensors (moved to the CPU) and metadata, as given (working files), by
    ``linguistic_collapse.core.paths.atomic_write`` (readers see the old or the new file, its
    mode follows the umask); the header is sorted so equal statistics give equal bytes."""
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        try:
            save_file(cpu, str(tmp), metadata=meta)
        except SafetensorError as err:  # an I/O failure (disk full, ...) as the OSError it is
            raise as_os_error(err, path) or err from None
        sort_header(tmp)

    return atomic_write(path, write)


def sort_header(path: Path) -> None:
    """Rewrite a safetensors header in sorted key order, in place (safetensors writes its
    metadata in hash-map order, different on every save)."""
    with path.open("r+b") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        raw = text.encode("utf-8")
        if len(raw) > size:  # cannot happen for a header safetensors wrote compactly
            raise ValueError(f"{path}: sorted header longer than the original")
        f.seek(8)
        f.write(raw + b" " * (size - len(raw)))


def write_stats(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, str]) -> Path:
    """Write a stats file, filling ``format_version``, ``lm_head_sha256`` (from ``lm_head``) and
    ``means_hash`` (from counts and sums; '' while pass 1 is a shard) so they always agree."""
    meta = {**meta, "format_version": FORMAT_VERSION, "tensors_sha256": tensor_hashes(tensors)}
    if "lm_head" in tensors:
        meta["lm_head_sha256"] = sha256_tensor(tensors["lm_head"])
    if "counts" in tensors and "sums" in tensors and not meta.get("pass1_shard"):
        meta["means_hash"] = means_hash(class_means(tensors["counts"].cpu(),
                                                    tensors["sums"].cpu()))
    else:
        meta["means_hash"] = ""
    save_raw(Path(path), tensors, meta)
    return Path(path)


def partial_path(out_path: str | Path) -> Path:
    """The working file of a pass in progress, beside ``out_path``."""
    return Path(out_path).with_suffix(".partial.safetensors")


def pass1_path(out_path: str | Path) -> Path:
    """Where a two-pass collection keeps its finished pass 1 until pass 2 is written to
    ``out_path`` (so ``out_path`` never holds pass 1 alone), beside it."""
    return Path(out_path).with_suffix(".pass1.safetensors")


def done_passes(meta: dict[str, str]) -> dict[int, str]:
    """{pass: shard} of the passes a file holds ('' = the whole split, else 'i/n')."""
    return {p: meta[f"pass{p}_shard"] for p in PASSES if f"pass{p}_blocks" in meta}


def check_means(means: Tensor, expected_hash: str) -> str:
    """UserError unless ``means`` are the finished train means recorded as ``expected_hash``."""
    got = means_hash(means)
    if got != expected_hash:
        raise UserError(f"pass 2 must use the finished pass-1 means: hash {got} != "
                        f"{expected_hash}; collect pass 1 again or delete the stale file")
    return got


def earlier_meta(meta: dict[str, str], pass_no: int) -> dict[str, str]:
    """The pass{N}_* metadata of the passes before ``pass_no``."""
    keys = [f"pass{p}_{k}" for p in PASSES if p < pass_no for k in PASS_META]
    return {k: meta[k] for k in keys if k in meta}


def is_stats_file(path: Path) -> bool:
    """True when ``path`` is a safetensors file with this project's stats metadata."""
    try:
        return "format_version" in load_stats_metadata(path)
    except UserError:
        return False
