"""Content hashes that tie every artifact to what it was made from (text, tokenizer, blocks,
weights, statistics, metrics). Each artifact records these; each step compares them before it
reuses anything. No torch import here: hashing tensors takes their bytes via ``numpy()``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

CORPUS_HASHES = ("train_blocks_sha256", "val_blocks_sha256", "tokenizer_sha256")  # manifest keys
# that identify a corpus: its token blocks and tokenizer, recorded by every artifact made from it


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no spaces): settings dictionaries."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())


def sha256_texts(texts: Iterable[str]) -> str:
    """sha256 of a list of texts, each terminated by NUL (so boundaries count)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def sha256_array(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and C-order bytes (token blocks, weights)."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def sha256_tensor(tensor: Any) -> str:
    """sha256 of a torch tensor as float32 on the CPU (the LM head's identity)."""
    return sha256_array(tensor.detach().float().cpu().contiguous().numpy())


def tokenizer_sha256(tokenizer_or_dir: Any) -> str:
    """Identity of a tokenizer: sha256 of its canonical ``tokenizer.json`` serialisation.

    Accepts a fast tokenizer object (``backend_tokenizer.to_str()``) or a directory holding
    ``tokenizer.json``. Two tokenizers with the same vocabulary size but other merges differ.
    """
    if isinstance(tokenizer_or_dir, (str, os.PathLike)):
        path = Path(tokenizer_or_dir)
        path = path / "tokenizer.json" if path.is_dir() else path
        text = json.loads(path.read_text(encoding="utf-8"))
    else:
        backend = getattr(tokenizer_or_dir, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(f"cannot hash tokenizer {type(tokenizer_or_dir).__name__}: "
                            "need a fast tokenizer or a folder with tokenizer.json")
        text = json.loads(backend.to_str())
    return sha256_json(text)


def weights_sha256(checkpoint_dir: str | os.PathLike) -> str:
    """Identity of a saved model's weights: sha256 of its ``model*.safetensors`` files.

    One file (``model.safetensors``) hashes as ``sha256_file`` of it; shards
    (``model-0000k-of-0000n.safetensors``) as ``sha256_json`` of {name: sha256}.
    """
    files = sorted(Path(checkpoint_dir).glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{checkpoint_dir} holds no model*.safetensors weights")
    if len(files) == 1:
        return sha256_file(files[0])
    return sha256_json({f.name: sha256_file(f) for f in files})


def changed_paths(recorded: Mapping[str, Any], current: Mapping[str, Any],
                  prefix: str = "") -> list[str]:
    """Keys whose value differs between two mappings (missing counts as changed), descending
    into nested mappings: ``["training.lr", ...]``."""
    out: list[str] = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key), current.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out += changed_paths(old, new, f"{prefix}{key}.")
        elif old != new:
            out.append(f"{prefix}{key}")
    return out
