"""Tokenizers and token blocks: texts (``linguistic_collapse.lm.texts``) in, cached (n_blocks, context_len) int32
arrays out, with the provenance of each.

As in the paper, each story is tokenized with no end-of-text token between stories; the token
streams are concatenated and cut into blocks of ``context_len`` tokens, the remainder dropped.
``prepare_corpus`` caches the tokenizer and the blocks under one directory with a manifest of
the settings and content hashes that produced them, so a second call with the same settings
and the same text re-tokenizes nothing.
"""

from __future__ import annotations

import argparse
import itertools
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.outputs import CorpusLayout
from linguistic_collapse.core.paths import (
    atomic_dir,
    atomic_write,
    atomic_write_json,
    cli_path,
    lock_for,
    read_json,
    remove_leftover_temps,
    resolve,
    resolve_if_checkout,
)
from linguistic_collapse.core.profile_sections import CorpusConfig, TokenizerConfig
from linguistic_collapse.core.profiles import validated
from linguistic_collapse.core.provenance import (
    sha256_array,
    sha256_json,
    sha256_texts,
    tokenizer_sha256,
)
from linguistic_collapse.lm import texts as sources
from linguistic_collapse.lm.gpt2_bpe import gpt2_tokenizer
from linguistic_collapse.lm.loading import check_model_folder
from linguistic_collapse.lm.texts import corpus_source_arg, load_corpus

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EOT = "<|endoftext|>"
TOKENIZER_SPEC_FILE = "lc_tokenizer_spec.json"  # beside the tokenizer files: what trained it
MANIFEST_VERSION = 2  # 2: content hashes (texts, tokenizer, blocks as arrays)
_BATCH = 1000  # stories per tokenizer call


# ---------------------------------------------------------------------------------------------
# Tokenizers: a byte-level BPE trained on the corpus, or a pretrained one.


def train_bpe_tokenizer(texts: list[str], vocab_size: int,
                        out_dir: Path) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (GPT-2 style, one "<|endoftext|>" token) and save it to out_dir.

    Returns a ``PreTrainedTokenizerFast``. The 256 byte symbols are always in the vocabulary, so
    ``vocab_size`` must exceed 257; a small corpus may stop short of it (a warning says so).
    """
    # heavy (transformers): loaded only when a model or tokenizer is used
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
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers import AutoTokenizer

    local = resolve_if_checkout(name_or_path)  # or a hub name
    if local.is_dir():
        check_model_folder(local)
        return AutoTokenizer.from_pretrained(str(local), trust_remote_code=False)
    if not sources.hub_offline() and not sources.hub_reachable():
        raise sources.hub_error(f"tokenizer {str(name_or_path)!r} (no local directory {local})")
    try:
        return AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
    except OSError as err:
        raise sources.hub_error(f"tokenizer {str(name_or_path)!r} (no local directory {local})",
                         err) from err


def get_tokenizer(tokenizer: TokenizerConfig | Mapping, train_texts: list[str] | None,
                  cache_dir: Path) -> PreTrainedTokenizerFast:
    """The tokenizer a profile asks for, kept in ``cache_dir`` (save_pretrained).

    ``{"kind": "bpe", "vocab_size": V}`` trains on ``train_texts``; ``{"kind": "gpt2-bpe"}``
    builds GPT-2's BPE offline (``linguistic_collapse.lm.gpt2_bpe``); ``{"kind": "pretrained", "name": ...}`` loads
    a hub name or local path (a ``TokenizerConfig`` or such a mapping). A
    cache built from the same spec (and, for BPE, the same texts) is reused, recorded in a
    small spec json beside the tokenizer files.
    """
    spec = validated(TokenizerConfig, tokenizer, "tokenizer").spec()
    cache_dir = resolve(cache_dir)
    record = {"spec": spec}
    if spec["kind"] == "bpe":
        if not train_texts:
            raise ValueError("a 'bpe' tokenizer needs train_texts to train on")
        record["texts_sha256"] = sha256_texts(train_texts)
    spec_file = cache_dir / TOKENIZER_SPEC_FILE
    if spec_file.is_file() and read_json(spec_file) == record:
        return load_tokenizer(cache_dir)
    with atomic_dir(cache_dir) as build:
        if spec["kind"] == "bpe":
            tok = train_bpe_tokenizer(train_texts, spec["vocab_size"], build)
        elif spec["kind"] == "gpt2-bpe":
            tok = gpt2_tokenizer()
            tok.save_pretrained(str(build))
        else:
            tok = load_tokenizer(spec["name"])
            tok.save_pretrained(str(build))
        atomic_write_json(build / TOKENIZER_SPEC_FILE, record)  # last: marks a finished cache
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
        files = CorpusLayout(cache_dir)
        if not files.manifest.is_file():
            raise FileNotFoundError(f"no prepared corpus at {cache_dir} (manifest.json missing); "
                                    "run prepare_corpus first")
        m = read_json(files.manifest)
        return cls(cache_dir=cache_dir, train_path=files.train_blocks,
                   val_path=files.val_blocks, tokenizer_dir=files.tokenizer_dir,
                   vocab_size=m["vocab_size"], context_len=m["settings"]["context_len"],
                   n_train_blocks=m["n_train_blocks"], n_val_blocks=m["n_val_blocks"],
                   n_train_tokens=m["n_train_tokens"])


def _corpus_settings(corpus: CorpusConfig, tokenizer: TokenizerConfig, context_len: int) -> dict:
    """What the cache was built from (the manifest's ``settings``)."""
    if not isinstance(context_len, int) or context_len < 2:
        raise UserError(f"context_len must be an int >= 2, got {context_len!r}; set a longer one")
    return {
        "corpus": {"source": corpus.load_source(), "max_train_stories": corpus.max_train_stories,
                   "max_val_stories": corpus.max_val_stories},
        "tokenizer": tokenizer.spec(),
        "context_len": context_len,
        "format_version": MANIFEST_VERSION,
    }


def _save_blocks(path: Path, blocks: np.ndarray) -> str:
    """np.save atomically; returns ``sha256_array`` of the blocks (dtype, shape and content)."""
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            try:
                np.save(f, blocks)
            except OSError as err:
                if err.errno is not None:
                    raise
                # numpy's short write ("N requested and M written") carries no errno or path
                raise OSError(f"{path}: {err} bytes (no space left on the device, or over "
                              "quota); free space there or write to another disk") from None
    atomic_write(path, write)
    return sha256_array(blocks)


def _finished_manifest(cache_dir: Path, settings: dict) -> dict | None:
    """The manifest of a finished cache built with ``settings``, else None."""
    files = CorpusLayout(cache_dir)
    if not files.manifest.is_file():
        return None
    m = read_json(files.manifest)
    needed = (files.train_blocks, files.val_blocks, files.tokenizer_dir / TOKENIZER_SPEC_FILE)
    if m.get("settings") != settings or not all(n.is_file() for n in needed):
        return None
    return m


def _is_hub(source: str) -> bool:
    return source == "hub" or source.startswith("hub:")


def _load_texts(src: dict) -> tuple[list[str], list[str], dict[str, str]]:
    """(train texts, validation texts, their manifest hashes) of a corpus ``settings`` source."""
    train_texts = load_corpus(src["source"], "train", src["max_train_stories"])
    val_texts = load_corpus(src["source"], "validation", src["max_val_stories"])
    return train_texts, val_texts, {"train_text_sha256": sha256_texts(train_texts),
                                    "val_text_sha256": sha256_texts(val_texts)}


def _staleness(settings: dict, cache_dir: Path) -> tuple[str | None, tuple | None]:
    """(why the cache is not current or None, the texts when they were loaded to check)."""
    if not CorpusLayout(cache_dir).manifest.is_file():
        return "not prepared", None
    manifest = _finished_manifest(cache_dir, settings)
    if manifest is None:
        return "prepared with other settings", None
    if _is_hub(settings["corpus"]["source"]):  # pinned by name; the text is not reloaded
        return None, None
    loaded = _load_texts(settings["corpus"])
    changed = [k for k, v in loaded[2].items() if manifest.get(k) != v]
    return (f"its text changed ({', '.join(changed)})" if changed else None), loaded


def corpus_staleness(*, corpus: CorpusConfig | Mapping, tokenizer: TokenizerConfig | Mapping,
                     context_len: int, cache_dir: Path) -> str | None:
    """Why ``prepare_corpus`` with these arguments would (re)build ``cache_dir``, or None when
    the cache is current: the check ``prepare_corpus`` makes, without building anything."""
    settings = _corpus_settings(validated(CorpusConfig, corpus, "corpus"),
                                validated(TokenizerConfig, tokenizer, "tokenizer"), context_len)
    return _staleness(settings, resolve(cache_dir))[0]


def prepare_corpus(*, corpus: CorpusConfig | Mapping, tokenizer: TokenizerConfig | Mapping,
                   context_len: int, cache_dir: Path, progress: bool = True) -> PreparedCorpus:
    """Load, tokenize and block a corpus into ``cache_dir``, or reuse a finished cache.

    Writes ``tokenizer/``, ``train_blocks.npy``, ``val_blocks.npy`` and (last) ``manifest.json``
    with the settings, counts and the provenance of the blocks: sha256 of the texts used
    (``train_text_sha256``, ``val_text_sha256``), of the tokenizer (``tokenizer_sha256``) and of
    the blocks (``train_blocks_sha256``, ``val_blocks_sha256``, ``linguistic_collapse.core.provenance.sha256_array``).
    A cache is reused only when its settings and its texts' hashes equal the current ones, so
    replacing the text of a local source rebuilds it (hub datasets are pinned by name and their
    text is not reloaded to check). ``corpus`` and ``tokenizer`` are the profile's typed sections
    (``linguistic_collapse.core.profile_sections.CorpusConfig``, ``TokenizerConfig``) or mappings of the same keys, e.g.
    {"source": "generated", "max_train_stories": 600} or {"source": "path", "path": P}. Two
    processes preparing one cache take turns (a file lock).
    """
    settings = _corpus_settings(validated(CorpusConfig, corpus, "corpus"),
                                validated(TokenizerConfig, tokenizer, "tokenizer"), context_len)
    cache_dir = resolve(cache_dir)
    files = CorpusLayout(cache_dir)
    with lock_for(cache_dir):
        remove_leftover_temps(cache_dir)  # of a killed run: nobody else writes here now
        reason, loaded = _staleness(settings, cache_dir)
        if reason is None:
            return PreparedCorpus.from_manifest(cache_dir)
        train_texts, val_texts, texts = loaded or _load_texts(settings["corpus"])
        files.manifest.unlink(missing_ok=True)  # a half rebuild never looks finished
        tok = get_tokenizer(settings["tokenizer"], train_texts, files.tokenizer_dir)
        train = tokenize_blocks(train_texts, tok, context_len, progress)  # (n_train, context_len)
        val = tokenize_blocks(val_texts, tok, context_len, progress)  # (n_val, context_len)
        manifest = {
            "settings": settings, "settings_sha256": sha256_json(settings),
            "vocab_size": len(tok), "tokenizer_sha256": tokenizer_sha256(files.tokenizer_dir),
            **texts, "n_train_stories": len(train_texts), "n_val_stories": len(val_texts),
            "n_train_blocks": len(train), "n_val_blocks": len(val),
            "n_train_tokens": int(train.size), "n_val_tokens": int(val.size),
            "train_blocks_sha256": _save_blocks(files.train_blocks, train),
            "val_blocks_sha256": _save_blocks(files.val_blocks, val),
        }
        atomic_write_json(files.manifest, manifest)
        return PreparedCorpus.from_manifest(cache_dir)


# ---------------------------------------------------------------------------------------------
# Shell interface.


def _tokenizer_arg(value: str) -> dict:
    """'bpe:4096' -> BPE spec; 'gpt2-bpe' -> GPT-2's BPE built offline; anything else -> a
    pretrained name or path."""
    if value.startswith("bpe:"):
        return {"kind": "bpe", "vocab_size": int(value[4:])}
    if value == "gpt2-bpe":
        return {"kind": "gpt2-bpe"}
    local = Path(value).expanduser()  # a folder from the caller's directory, else a hub name
    return {"kind": "pretrained", "name": str(local.absolute()) if local.exists() else value}


def _cli_prepare(args: argparse.Namespace) -> None:
    source_text = corpus_source_arg(args.source)  # a path: from the caller's directory
    named = source_text in ("generated", "hub") or source_text.startswith(("hub:", "disk:"))
    source = {"source": source_text} if named else {"source": "path", "path": source_text}
    prepared = prepare_corpus(
        corpus={**source, "max_train_stories": args.max_train_stories,
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
                   help="'bpe:<vocab size>', 'gpt2-bpe' (GPT-2/GPT-Neo's BPE, offline) or a pretrained "
                        "name/path, e.g. EleutherAI/gpt-neo-125M")
    p.add_argument("--context-len", type=int, default=256, help="tokens per block")
    p.add_argument("--max-train-stories", type=int, default=None)
    p.add_argument("--max-val-stories", type=int, default=None)
    p.add_argument("--out", required=True, type=cli_path, help="cache directory, e.g. data/<profile>/corpus")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cli_prepare)
