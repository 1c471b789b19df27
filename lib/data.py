"""Corpora, tokenizers and token blocks: text in, cached (n_blocks, context_len) int32 arrays out.

As in the paper, each story is tokenized with no end-of-text token between stories; the token
streams are concatenated and cut into blocks of ``context_len`` tokens, the remainder dropped.
``prepare_corpus`` caches the tokenizer and the blocks under one directory with a manifest of
the settings that produced them, so a second call with the same settings re-tokenizes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import numpy as np
from tqdm.auto import tqdm

from lib.paths import atomic_write, atomic_write_json, read_json, resolve

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOT = "<|endoftext|>"
SPLITS = ("train", "validation")
DEFAULT_HUB_DATASET = "roneneldan/TinyStories"  # source "hub" alone means this dataset
DEFAULT_GENERATED = {"train": 2000, "validation": 200}  # stories when max_stories is None
GENERATED_SEEDS = {"train": 0, "validation": 1}
TOKENIZER_SPEC_FILE = "lc_tokenizer_spec.json"  # beside the tokenizer files: what trained it
MANIFEST_VERSION = 1
_BATCH = 1000  # stories per tokenizer call
_OFFLINE_HINT = (
    "Without network, put local text under data/tinystories/ (train.txt and validation.txt, "
    "one story or paragraph per line) and use source 'data/tinystories', or run the offline "
    "profile with PROFILE=smoke."
)

# ---------------------------------------------------------------------------------------------
# A synthetic TinyStories-like corpus: tiny models learn it quickly, and it has first names.

_GIRLS = ("lily", "mia", "sara", "emma", "anna", "lucy", "amy", "zoe", "ella", "kate", "molly",
          "sue", "alice", "jane")
_BOYS = ("tom", "ben", "max", "sam", "jack", "tim", "leo", "joe", "bob", "jake", "finn", "adam",
         "nick")
_ANIMALS = ("dog", "cat", "bird", "bunny", "frog", "duck", "puppy", "kitten", "fish", "bear",
            "horse", "mouse")
_OBJECTS = ("ball", "kite", "toy car", "doll", "book", "hat", "box", "boat", "drum", "cake",
            "flower", "teddy bear", "balloon", "shovel")
_COLORS = ("red", "blue", "yellow", "green", "pink", "big", "little", "shiny", "soft")
_PLACES = ("park", "garden", "forest", "beach", "school", "lake", "farm", "house", "hill", "river")
_FEELINGS = ("happy", "sad", "scared", "excited", "proud", "angry", "tired", "surprised")
_VERBS = ("play", "run", "jump", "dance", "sing", "swim", "read", "draw", "climb")

_OPENINGS = (
    "once upon a time, there was a little {kid} named {name}.",
    "{name} was a {kid} who loved to {verb}.",
    "one day, a {kid} named {name} went to the {place}.",
)
_MIDDLES = (  # slots in story order; a story uses an ordered subset, one template per slot
    ("{name} had a {color} {object}.", "{pron} loved {pos} {color} {object} very much."),
    ("one day, {name} went to the {place} with {pos} {animal}.",
     "at the {place}, {name} saw a {animal} that was {feeling}."),
    ("{name} met {friend} and they played with the {object}.",
     "{friend} said, \"can i {verb} with you, {name}?\""),
    ("then the {object} got lost and {name} felt {feeling}.",
     "{name} said, \"let us {verb} together!\""),
    ("{friend} helped {name} find the {object}.", "the {animal} wanted to {verb} too."),
)
_ENDINGS = (
    "{name} and {friend} were very {feeling2}.",
    "they played all day and became best friends.",
    "from that day on, {name} always shared {pos} {object} with {friend}.",
)


def _pick(rng: np.random.Generator, options: tuple) -> str:
    return options[int(rng.integers(len(options)))]


def _story_context(rng: np.random.Generator) -> dict[str, str]:
    """The cast and props of one story, drawn once so that its sentences agree."""
    girl = bool(rng.integers(2))
    name = _pick(rng, _GIRLS if girl else _BOYS)
    friend = _pick(rng, tuple(n for n in _GIRLS + _BOYS if n != name))
    return {
        "name": name, "friend": friend, "kid": "girl" if girl else "boy",
        "pron": "she" if girl else "he", "pos": "her" if girl else "his",
        "animal": _pick(rng, _ANIMALS), "object": _pick(rng, _OBJECTS),
        "color": _pick(rng, _COLORS), "place": _pick(rng, _PLACES),
        "feeling": _pick(rng, _FEELINGS), "feeling2": _pick(rng, _FEELINGS),
        "verb": _pick(rng, _VERBS),
    }


def _generate_story(rng: np.random.Generator) -> str:
    ctx = _story_context(rng)
    n_middle = int(rng.integers(1, 5))  # 3-6 sentences in all
    slots = np.sort(rng.choice(len(_MIDDLES), size=n_middle, replace=False))
    sentences = [_pick(rng, _OPENINGS)] + [_pick(rng, _MIDDLES[s]) for s in slots]
    sentences.append(_pick(rng, _ENDINGS))
    return " ".join(s.format(**ctx) for s in sentences)


def generate_corpus(n_stories: int, seed: int = 0) -> list[str]:
    """``n_stories`` lowercased template stories (3-6 sentences); same seed -> same text.

    Stories are drawn one after another from one generator, so a shorter corpus is a prefix
    of a longer one with the same seed.
    """
    if n_stories < 1:
        raise ValueError(f"n_stories must be at least 1, got {n_stories}")
    rng = np.random.default_rng(seed)
    return [_generate_story(rng) for _ in range(n_stories)]


# ---------------------------------------------------------------------------------------------
# Loading a corpus split from the generator, the hub, a saved dataset, or local text.


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _read_txt(path: Path, max_stories: int | None) -> list[str]:
    """Non-empty lines of a text file, read as a stream (at most ``max_stories`` of them)."""
    stories: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if max_stories is not None and len(stories) >= max_stories:
                break
            line = line.rstrip("\r\n")
            if line.strip():
                stories.append(line)
    return stories


def _read_jsonl(path: Path, max_stories: int | None) -> list[str]:
    """The "text" field of each JSON line (blank lines skipped, empty texts dropped)."""
    stories: list[str] = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if max_stories is not None and len(stories) >= max_stories:
                break
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{lineno}: expected a JSON object with a string 'text'")
            if record["text"].strip():
                stories.append(record["text"])
    return stories


def _local_file(source: str, split: str) -> Path:
    """The text file a local source names: the file itself or ``<dir>/<split>.txt|.jsonl``."""
    path = resolve(source)
    if path.is_file():
        return path
    if path.is_dir():
        for suffix in (".txt", ".jsonl"):
            if (path / f"{split}{suffix}").is_file():
                return path / f"{split}{suffix}"
        raise FileNotFoundError(
            f"{path} holds neither {split}.txt nor {split}.jsonl; put the {split} split there "
            "(one story per line, or JSON lines with a 'text' field)"
        )
    raise FileNotFoundError(
        f"corpus source {source!r} is not 'generated', 'hub:<name>', 'disk:<path>' or an "
        f"existing path ({path} does not exist); put train.txt and validation.txt there, "
        "e.g. under data/tinystories/"
    )


def _offline() -> bool:
    flags = (os.environ.get(k, "") for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
    return any(v.strip().upper() in {"1", "ON", "YES", "TRUE"} for v in flags)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, so that no network fails in seconds, not minutes."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _hub_error(what: str, err: BaseException | None = None) -> RuntimeError:
    mode = "offline mode is set (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)" if _offline() else \
        "the Hugging Face hub is unreachable"
    detail = f" ({type(err).__name__}: {err})" if err else ""
    return RuntimeError(f"cannot load {what}: {mode} and it is not in the local cache{detail}. "
                        + _OFFLINE_HINT)


def _texts_of(dataset, origin: str, max_stories: int | None) -> list[str]:
    """The non-empty "text" column of a ``datasets.Dataset`` (first ``max_stories`` rows)."""
    if "text" not in dataset.column_names:
        raise ValueError(f"{origin} has no 'text' column (columns: {dataset.column_names})")
    if max_stories is not None:
        dataset = dataset.select(range(min(max_stories, len(dataset))))
    return [t for t in dataset["text"] if isinstance(t, str) and t.strip()]


def _load_hub(name: str, split: str, max_stories: int | None) -> list[str]:
    """``datasets.load_dataset(name, split=...)``; offline or unreachable -> RuntimeError, fast."""
    if not _offline() and not _hub_reachable():
        raise _hub_error(f"dataset {name!r}")
    import datasets

    hub_split = split if max_stories is None else f"{split}[:{max_stories}]"
    try:
        dataset = datasets.load_dataset(name, split=hub_split)
    except (OSError, ConnectionError) as err:  # hub errors are OSError/ConnectionError subclasses
        raise _hub_error(f"dataset {name!r}", err) from err
    return _texts_of(dataset, f"hub dataset {name!r} split {split!r}", max_stories)


def _load_disk(path_str: str, split: str, max_stories: int | None) -> list[str]:
    """A ``DatasetDict`` saved with ``save_to_disk``: its ``split`` split's "text" column."""
    import datasets

    path = resolve(path_str)
    if not path.exists():
        raise FileNotFoundError(f"no saved dataset at {path}; save one there with "
                                "DatasetDict.save_to_disk (splits 'train' and 'validation')")
    saved = datasets.load_from_disk(str(path))
    if isinstance(saved, datasets.Dataset):
        raise ValueError(f"{path} holds a single Dataset, not splits; save a DatasetDict with "
                         "'train' and 'validation' splits instead")
    if split not in saved:
        raise ValueError(f"saved dataset {path} has no split {split!r} (has {list(saved)})")
    return _texts_of(saved[split], f"saved dataset {path} split {split!r}", max_stories)


def load_corpus(source: str, split: str, max_stories: int | None = None) -> list[str]:
    """The stories of one split ("train" or "validation") of a corpus source.

    ``source`` is "generated" (train seed 0, validation seed 1; 2000/200 stories by default),
    "hub:<dataset>" (``datasets.load_dataset``; "hub" alone is roneneldan/TinyStories), "disk:<path>" (a saved ``DatasetDict``), or a
    local path (relative to the repository root): a directory holding ``<split>.txt`` or
    ``<split>.jsonl``, or one such file. A .txt file is read as a stream of documents, one per
    non-empty line (TinyStories text separates paragraphs by blank lines and rarely marks
    story ends), so ``max_stories`` caps lines; a .jsonl file has one {"text": ...} per line.
    """
    _check_split(split)
    if max_stories is not None and max_stories < 1:
        raise ValueError(f"max_stories must be positive or None, got {max_stories}")
    if source == "generated":
        n = max_stories or DEFAULT_GENERATED[split]
        stories = generate_corpus(n, seed=GENERATED_SEEDS[split])
    elif source == "hub" or source.startswith("hub:"):
        stories = _load_hub(source[4:] or DEFAULT_HUB_DATASET, split, max_stories)
    elif source.startswith("disk:"):
        stories = _load_disk(source[5:], split, max_stories)
    else:
        path = _local_file(source, split)
        read = _read_jsonl if path.suffix == ".jsonl" else _read_txt
        stories = read(path, max_stories)
    if not stories:
        raise ValueError(f"corpus source {source!r} split {split!r} gave no non-empty stories")
    return stories


# ---------------------------------------------------------------------------------------------
# Tokenizers: a byte-level BPE trained on the corpus, or a pretrained one.


def train_bpe_tokenizer(texts: list[str], vocab_size: int,
                        out_dir: Path) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (GPT-2 style, one "<|endoftext|>" token) and save it to out_dir.

    Returns a ``PreTrainedTokenizerFast``. The 256 byte symbols are always in the vocabulary, so
    ``vocab_size`` must exceed 257; a small corpus may stop short of it (a warning says so).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size <= len(alphabet) + 1:
        raise ValueError(f"vocab_size {vocab_size} too small for byte-level BPE; use at least "
                         f"{len(alphabet) + 2}")
    if not texts:
        raise ValueError("no texts to train the BPE tokenizer on")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT],
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    if tok.get_vocab_size() < vocab_size:
        warnings.warn(f"BPE stopped at {tok.get_vocab_size()} tokens (asked {vocab_size}): the "
                      "corpus has no more merges", stacklevel=2)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT,
                                      unk_token=EOT)
    wrapped.save_pretrained(str(out_dir))
    return wrapped


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """``AutoTokenizer.from_pretrained`` of a local directory or a hub name (clear error offline)."""
    from transformers import AutoTokenizer

    local = resolve(name_or_path)
    if local.is_dir():
        return AutoTokenizer.from_pretrained(str(local))
    if not _offline() and not _hub_reachable():
        raise _hub_error(f"tokenizer {str(name_or_path)!r} (no local directory {local})")
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path))
    except OSError as err:
        raise _hub_error(f"tokenizer {str(name_or_path)!r} (no local directory {local})",
                         err) from err


_TOKENIZER_KEYS = {"bpe": {"kind", "vocab_size"}, "pretrained": {"kind", "name"}}


def _check_tokenizer_spec(spec: Mapping) -> dict:
    kind = spec.get("kind")
    if kind not in _TOKENIZER_KEYS:
        raise ValueError(f"tokenizer kind must be one of {sorted(_TOKENIZER_KEYS)}, got {kind!r}")
    keys = set(spec)
    if keys != _TOKENIZER_KEYS[kind]:
        raise ValueError(f"tokenizer spec of kind {kind!r} needs exactly the keys "
                         f"{sorted(_TOKENIZER_KEYS[kind])}, got {sorted(keys)}")
    if kind == "bpe" and (not isinstance(spec["vocab_size"], int) or spec["vocab_size"] < 1):
        raise ValueError(f"tokenizer vocab_size must be a positive int, got {spec['vocab_size']!r}")
    return dict(spec)


def _texts_sha256(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def _replace_dir(build: Path, target: Path) -> None:
    """Move a finished ``build`` directory onto ``target`` (the old one removed after)."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        os.replace(target, old / target.name)
    os.replace(build, target)
    if old is not None:
        shutil.rmtree(old)


def get_tokenizer(spec: Mapping, train_texts: list[str] | None,
                  cache_dir: Path) -> PreTrainedTokenizerFast:
    """The tokenizer a profile asks for, kept in ``cache_dir`` (save_pretrained).

    ``{"kind": "bpe", "vocab_size": V}`` trains on ``train_texts``; ``{"kind": "pretrained",
    "name": ...}`` loads a hub name or local path. A cache built from the same spec (and, for
    BPE, the same texts) is reused, recorded in a small spec json beside the tokenizer files.
    """
    spec = _check_tokenizer_spec(spec)
    cache_dir = resolve(cache_dir)
    record = {"spec": spec}
    if spec["kind"] == "bpe":
        if not train_texts:
            raise ValueError("a 'bpe' tokenizer needs train_texts to train on")
        record["texts_sha256"] = _texts_sha256(train_texts)
    spec_file = cache_dir / TOKENIZER_SPEC_FILE
    if spec_file.is_file() and read_json(spec_file) == record:
        return load_tokenizer(cache_dir)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(dir=cache_dir.parent, prefix=f".{cache_dir.name}.build."))
    try:
        if spec["kind"] == "bpe":
            tok = train_bpe_tokenizer(train_texts, spec["vocab_size"], build)
        else:
            tok = load_tokenizer(spec["name"])
            tok.save_pretrained(str(build))
        atomic_write_json(build / TOKENIZER_SPEC_FILE, record)  # last: marks a finished cache
        _replace_dir(build, cache_dir)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return tok


# ---------------------------------------------------------------------------------------------
# Token blocks.


def _token_batches(texts: list[str], tokenizer, progress: bool) -> Iterator[np.ndarray]:
    """One int32 array of concatenated token ids per batch of stories (no separator tokens)."""
    with tqdm(total=len(texts), desc="tokenizing", unit="story", disable=not progress) as bar:
        for start in range(0, len(texts), _BATCH):
            batch = texts[start:start + _BATCH]
            ids = tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]
            n_tokens = sum(map(len, ids))
            yield np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=n_tokens)
            bar.update(len(batch))


def tokenize_blocks(texts: list[str], tokenizer, block_len: int,
                    progress: bool = True) -> np.ndarray:
    """Tokenize, concatenate and cut into (n_blocks, block_len) int32 blocks, remainder dropped.

    No end-of-text token goes between stories (as in the paper).
    """
    if block_len < 2:
        raise ValueError(f"block_len must be at least 2 (a feature and a next token), got {block_len}")
    if len(tokenizer) > np.iinfo(np.int32).max:
        raise ValueError(f"vocabulary of {len(tokenizer)} tokens does not fit int32")
    stream = np.concatenate([np.zeros(0, np.int32), *_token_batches(texts, tokenizer, progress)])
    n_blocks = len(stream) // block_len
    if n_blocks == 0:
        raise ValueError(f"corpus has {len(stream)} tokens, fewer than one block of {block_len}; "
                         "use more stories or a shorter context")
    return stream[:n_blocks * block_len].reshape(n_blocks, block_len)  # (n_blocks, block_len)


def load_blocks(path: str | os.PathLike) -> np.ndarray:
    """Token blocks (n_blocks, context_len) int32, memory-mapped read-only."""
    path = resolve(path)
    if not path.is_file():
        raise FileNotFoundError(f"no token blocks at {path}; build them with prepare_corpus "
                                "(python -m lib prepare-corpus)")
    blocks = np.load(path, mmap_mode="r")
    if blocks.ndim != 2 or blocks.dtype != np.int32:
        raise ValueError(f"{path} holds {blocks.dtype} {blocks.shape}, not 2-D int32 token blocks")
    return blocks


def block_order(n_blocks: int, seed: int, epoch: int) -> np.ndarray:
    """The order (n_blocks,) int64 in which an epoch visits the blocks.

    The only place the data-shuffling seed acts: a permutation from
    ``np.random.default_rng([seed, epoch])``.
    """
    if n_blocks < 1 or seed < 0 or epoch < 0:
        raise ValueError(f"need n_blocks >= 1, seed >= 0, epoch >= 0; got {n_blocks}, {seed}, {epoch}")
    return np.random.default_rng([seed, epoch]).permutation(n_blocks).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# A prepared corpus: tokenizer + train/validation blocks + manifest, cached in one directory.

_CORPUS_KEYS = {"source", "path", "max_train_stories", "max_val_stories"}


@dataclass(frozen=True)
class PreparedCorpus:
    """Where a prepared corpus lies and its sizes (blocks are (n, context_len) int32)."""

    cache_dir: Path
    train_path: Path
    val_path: Path
    tokenizer_dir: Path
    vocab_size: int
    context_len: int
    n_train_blocks: int
    n_val_blocks: int
    n_train_tokens: int

    def train_blocks(self) -> np.ndarray:
        return np.load(self.train_path, mmap_mode="r")  # (n_train_blocks, context_len)

    def val_blocks(self) -> np.ndarray:
        return np.load(self.val_path, mmap_mode="r")  # (n_val_blocks, context_len)

    def tokenizer(self) -> PreTrainedTokenizerFast:
        return load_tokenizer(self.tokenizer_dir)

    @classmethod
    def from_manifest(cls, cache_dir: str | os.PathLike) -> PreparedCorpus:
        """A prepared corpus from a finished cache directory's manifest.json."""
        cache_dir = resolve(cache_dir)
        if not (cache_dir / "manifest.json").is_file():
            raise FileNotFoundError(f"no prepared corpus at {cache_dir} (manifest.json missing); "
                                    "run prepare_corpus first")
        m = read_json(cache_dir / "manifest.json")
        return cls(cache_dir=cache_dir, train_path=cache_dir / "train_blocks.npy",
                   val_path=cache_dir / "val_blocks.npy", tokenizer_dir=cache_dir / "tokenizer",
                   vocab_size=m["vocab_size"], context_len=m["settings"]["context_len"],
                   n_train_blocks=m["n_train_blocks"], n_val_blocks=m["n_val_blocks"],
                   n_train_tokens=m["n_train_tokens"])


def _corpus_source(corpus: Mapping) -> str:
    """The load_corpus source of a corpus section; {"source": "path", "path": P} means P."""
    keys = set(corpus)
    if "source" not in keys or not keys <= _CORPUS_KEYS:
        raise ValueError(f"corpus section needs 'source' and at most {sorted(_CORPUS_KEYS)}, "
                         f"got {sorted(keys)}")
    if corpus["source"] == "path":
        if not corpus.get("path"):
            raise ValueError("corpus source 'path' needs a 'path' key naming the text folder")
        return str(corpus["path"])
    if corpus.get("path") is not None:
        raise ValueError(f"corpus 'path' is only used with source 'path', not {corpus['source']!r}")
    return corpus["source"]


def _corpus_settings(corpus: Mapping, tokenizer: Mapping, context_len: int) -> dict:
    if not isinstance(context_len, int) or context_len < 2:
        raise ValueError(f"context_len must be an int >= 2, got {context_len!r}")
    return {
        "corpus": {"source": _corpus_source(corpus), "max_train_stories": corpus.get("max_train_stories"),
                   "max_val_stories": corpus.get("max_val_stories")},
        "tokenizer": _check_tokenizer_spec(tokenizer),
        "context_len": context_len,
        "format_version": MANIFEST_VERSION,
    }


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _save_blocks(path: Path, blocks: np.ndarray) -> str:
    """np.save atomically; returns the file's sha256."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.save(f, blocks)
    atomic_write(path, write)
    return _sha256_file(path)


def _cache_is_finished(cache_dir: Path, settings: dict) -> bool:
    manifest = cache_dir / "manifest.json"
    if not manifest.is_file() or read_json(manifest).get("settings") != settings:
        return False
    needed = ("train_blocks.npy", "val_blocks.npy", f"tokenizer/{TOKENIZER_SPEC_FILE}")
    return all((cache_dir / name).is_file() for name in needed)


def prepare_corpus(*, corpus: Mapping, tokenizer: Mapping, context_len: int, cache_dir: Path,
                   progress: bool = True) -> PreparedCorpus:
    """Load, tokenize and block a corpus into ``cache_dir``, or reuse a finished cache.

    Writes ``tokenizer/``, ``train_blocks.npy``, ``val_blocks.npy`` and (last) ``manifest.json``
    with the settings, counts and sha256 of the block files. A cache whose manifest settings
    match is reused as is; other settings rebuild it. ``corpus`` is {"source": ...,
    "max_train_stories": ..., "max_val_stories": ...} with a ``load_corpus`` source, or
    {"source": "path", "path": P, ...} for a local folder P.
    """
    settings = _corpus_settings(corpus, tokenizer, context_len)
    cache_dir = resolve(cache_dir)
    if _cache_is_finished(cache_dir, settings):
        return PreparedCorpus.from_manifest(cache_dir)
    (cache_dir / "manifest.json").unlink(missing_ok=True)  # a half rebuild never looks finished
    src = settings["corpus"]
    train_texts = load_corpus(src["source"], "train", src["max_train_stories"])
    val_texts = load_corpus(src["source"], "validation", src["max_val_stories"])
    tok = get_tokenizer(settings["tokenizer"], train_texts, cache_dir / "tokenizer")
    train = tokenize_blocks(train_texts, tok, context_len, progress)  # (n_train, context_len)
    val = tokenize_blocks(val_texts, tok, context_len, progress)  # (n_val, context_len)
    manifest = {
        "settings": settings, "vocab_size": len(tok),
        "settings_sha256": hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest(),
        "n_train_stories": len(train_texts), "n_val_stories": len(val_texts),
        "n_train_blocks": len(train), "n_val_blocks": len(val),
        "n_train_tokens": int(train.size), "n_val_tokens": int(val.size),
        "train_blocks_sha256": _save_blocks(cache_dir / "train_blocks.npy", train),
        "val_blocks_sha256": _save_blocks(cache_dir / "val_blocks.npy", val),
    }
    atomic_write_json(cache_dir / "manifest.json", manifest)
    return PreparedCorpus.from_manifest(cache_dir)


# ---------------------------------------------------------------------------------------------
# Shell interface.


def _tokenizer_arg(value: str) -> dict:
    """'bpe:4096' -> BPE spec; anything else -> a pretrained name or path."""
    if value.startswith("bpe:"):
        return {"kind": "bpe", "vocab_size": int(value[4:])}
    return {"kind": "pretrained", "name": value}


def _cli_prepare(args: argparse.Namespace) -> None:
    prepared = prepare_corpus(
        corpus={"source": args.source, "max_train_stories": args.max_train_stories,
                "max_val_stories": args.max_val_stories},
        tokenizer=_tokenizer_arg(args.tokenizer), context_len=args.context_len,
        cache_dir=Path(args.out), progress=not args.no_progress,
    )
    print(f"{prepared.cache_dir}: vocab {prepared.vocab_size}, {prepared.n_train_blocks} train "
          f"and {prepared.n_val_blocks} validation blocks of {prepared.context_len} tokens")


def register_cli(subparsers) -> None:
    """Add ``prepare-corpus``: tokenize a corpus into cached blocks."""
    p = subparsers.add_parser("prepare-corpus", help="tokenize a corpus into cached token blocks")
    p.add_argument("--source", default="generated",
                   help="'generated', 'hub:<dataset>', 'disk:<path>' or a local dir/file")
    p.add_argument("--tokenizer", default="bpe:4096",
                   help="'bpe:<vocab size>' or a pretrained name/path, e.g. EleutherAI/gpt-neo-125M")
    p.add_argument("--context-len", type=int, default=256, help="tokens per block")
    p.add_argument("--max-train-stories", type=int, default=None)
    p.add_argument("--max-val-stories", type=int, default=None)
    p.add_argument("--out", required=True, help="cache directory, e.g. data/<profile>/corpus")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cli_prepare)
