"""Neural collapse of public model families (Pythia checkpoints, GPT-2 sizes, any causal LM).

Each model is measured with ITS OWN tokenizer on the same text: the corpus is tokenized by the
model's tokenizer into blocks of ``context_len`` (no separator tokens, as in the paper), the
statistics passes run through ``linguistic_collapse.pipeline.collect.collect_model_stats`` and the measures through
``linguistic_collapse.nc.measure.measure_stats``. The validation loss is computed on the same validation blocks
the agreement pass (NC4) uses.

Recipe (on a machine that can reach the Hugging Face hub, or whose HF_HOME cache holds the
models: ``hf download EleutherAI/pythia-70m --revision step1000`` etc. beforehand)::

    from linguistic_collapse.lm.data import load_corpus
    from linguistic_collapse.pipeline.pretrained import measure_pretrained, pretrained_table, pythia_checkpoints

    train = load_corpus("../shared/data/tinystories", "train", max_stories=20_000)
    val = load_corpus("../shared/data/tinystories", "validation", max_stories=2_000)
    models = [*pythia_checkpoints("EleutherAI/pythia-70m", [1000, 8000, 33000, 143000]),
              ("gpt2", None), ("gpt2-medium", None)]
    measure_pretrained(models, train, val, "data/pretrained", context_len=512,
                       batch_size=16, device="cuda", max_train_blocks=4000)
    table = pretrained_table("data/pretrained")     # one row per (model, revision)

or from the shell: ``python -m linguistic_collapse pretrained --model EleutherAI/pythia-70m@step1000
--model gpt2 --corpus ../shared/data/tinystories --out data/pretrained --device cuda``.
A model may also be a local folder written by ``save_pretrained`` with its tokenizer saved in
the same folder (revision None). Offline, a hub model that is not cached fails at once with one
line saying how to get it (``linguistic_collapse.lm.loading.load_causal_lm``).

Files under ``out_dir``: ``stats/<slug>/stats.safetensors`` (format of docs/architecture.md) and
``metrics/<slug>.json``, one flat JSON object per model whose keys are the ``TABLE_COLUMNS``
(+ ``settings``), where slug is the hub id with "/" -> "--" and "@<revision>" appended, or
"local--<folder name>". A finished model is not redone: its metrics file records the same
settings, the identity of a hub model (name, revision, texts, sizes), and was measured from the
current stats file; else the collect-then-measure-if-stale step of ``linguistic_collapse.pipeline.refresh``
decides by content (weights, token blocks) what to collect and measure again.

Table columns (``pretrained_table``): ``name`` (slug), ``model`` (hub id or folder), ``revision``,
``step`` (int from a "stepN" revision, else None), ``family`` (config ``model_type``), ``depth``
(number of layers), ``width`` (feature dimension D = the LM head's input width), ``vocab_size``
(LM head rows), ``context_len``, ``n_params`` (distinct parameters, tied counted once),
``log_n_params`` (log10), ``val_loss`` (nats/token), ``val_acc``, ``num_classes``,
``train_blocks``, ``train_tokens``, ``val_blocks``, ``val_tokens``, ``feature_logit_gap``, the
measures of ``linguistic_collapse.nc.registry.MEASURES``, and ``collect_seconds``. The paper population's
spec columns ``run``, ``epochs``, ``weight_decay``, ``seed``, ``checkpoint`` do not apply and
are absent (NaN after a concat with ``linguistic_collapse.tables.results.build_results_table``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.outputs import PretrainedLayout
from linguistic_collapse.core.paths import cli_path, lock_for, read_json, resolve
from linguistic_collapse.core.provenance import (
    sha256_array,
    sha256_file,
    sha256_json,
    sha256_texts,
    tokenizer_sha256,
)
from linguistic_collapse.lm.data import load_corpus, tokenize_blocks
from linguistic_collapse.lm.devices import inference_autocast
from linguistic_collapse.lm.gpt_neo import count_params
from linguistic_collapse.lm.head import feature_logit_gap, lm_head_weight
from linguistic_collapse.lm.hub import from_hub, is_hub_name, local_model_dir
from linguistic_collapse.lm.identity import state_dict_sha256
from linguistic_collapse.lm.loading import check_model_folder, load_causal_lm, refused_code
from linguistic_collapse.lm.texts import corpus_source_arg
from linguistic_collapse.nc.measure import measure_stats
from linguistic_collapse.nc.stats_file import read_stats
from linguistic_collapse.pipeline import refresh
from linguistic_collapse.pipeline.collect import collect_model_stats
from linguistic_collapse.pipeline.refresh import collect_if_stale, stats_current

FORMAT_VERSION = "2"  # of the recorded settings; 2: texts hashed by linguistic_collapse.core.provenance.sha256_texts
# (1 had a rule of its own), so a folder measured under version 1 is measured again
GAP_WARN = 1e-3  # relative logit gap above which the features may not be the head's input
TABLE_COLUMNS = [
    "name", "model", "revision", "step", "family", "depth", "width", "vocab_size", "context_len",
    "n_params", "log_n_params", "val_loss", "val_acc", "num_classes", "train_blocks",
    "train_tokens", "val_blocks", "val_tokens", "feature_logit_gap",
]  # then the measures of measure_stats, then "collect_seconds"


def pythia_checkpoints(name: str, steps: Sequence[int]) -> list[tuple[str, str]]:
    """[(name, "step<N>"), ...]: Pythia's training checkpoints are hub revisions."""
    return [(name, f"step{int(s)}") for s in steps]


def model_slug(name: str, revision: str | None = None) -> str:
    """File-name-safe identity of (model, revision): "EleutherAI--pythia-70m@step1000"."""
    local = local_model_dir(name)
    base = f"local--{local.resolve().name}" if local is not None else str(name).replace("/", "--")
    return base if revision is None else f"{base}@{revision}"


def parse_model_arg(text: str) -> tuple[str, str | None]:
    """"name@revision" or "name" (shell form of one model)."""
    name, _, rev = text.partition("@")
    return name, (rev or None)


def load_model_tokenizer(name_or_path: str | Path, revision: str | None = None):
    """The model's own tokenizer: from its local folder, or from the hub (cache first; offline
    and not cached -> one-line ``UserError`` at once)."""
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers import AutoTokenizer

    local = local_model_dir(name_or_path)
    if local is not None:
        if not any((local / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
            raise UserError(f"no tokenizer saved in {local}; save the model's tokenizer there "
                            "with tokenizer.save_pretrained(folder)")
        check_model_folder(local)
        return AutoTokenizer.from_pretrained(str(local), trust_remote_code=False)
    if not is_hub_name(name_or_path):
        raise FileNotFoundError(f"no model folder at {name_or_path}; fix the path")
    load = functools.partial(AutoTokenizer.from_pretrained, trust_remote_code=False)
    try:
        return from_hub(load, str(name_or_path), revision, what="tokenizer")
    except ValueError as err:
        if isinstance(err, UserError) or "trust_remote_code" not in str(err):
            raise
        raise refused_code("tokenizer", name_or_path, err) from None


def _tokenization_key(tokenizer) -> str:
    """Which models may share one tokenization (an in-memory cache key, never recorded): the
    ``tokenizer_sha256`` of a fast tokenizer, else the hash of a slow one's vocabulary."""
    if hasattr(tokenizer, "backend_tokenizer"):
        return tokenizer_sha256(tokenizer)
    return sha256_json(sorted(tokenizer.get_vocab().items()))


def _max_positions(config) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _n_layers(config) -> int | None:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


@torch.inference_mode()
def evaluate_blocks(model: nn.Module, blocks: np.ndarray, batch_size: int = 8,
                    device: str | torch.device = "cpu") -> dict[str, float]:
    """Validation loss (nats/token over every next-token prediction of every block, token-
    weighted) and top-1 accuracy; bf16 autocast on CUDA as in collection."""
    device = torch.device(device)
    nll, correct, n = 0.0, 0, 0
    for start in range(0, len(blocks), batch_size):
        ids = torch.from_numpy(np.asarray(blocks[start:start + batch_size], dtype=np.int64))
        ids = ids.to(device)  # (B, T)
        with inference_autocast(device):
            logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()  # (B, T-1, V)
        target = ids[:, 1:]
        nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 target.reshape(-1), reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
        n += target.numel()
    return {"val_loss": nll / n, "val_acc": correct / n}


def _blocks(texts: Sequence[str], tokenizer, context_len: int, split: str) -> np.ndarray:
    try:
        return tokenize_blocks(list(texts), tokenizer, context_len, progress=False)
    except ValueError as err:
        raise UserError(f"{split} texts: {err}") from None


def _check_model(model: nn.Module, blocks: np.ndarray, context_len: int, what: str) -> None:
    limit = _max_positions(model.config)
    if limit is not None and context_len > limit:
        raise UserError(f"context_len {context_len} exceeds {what}'s {limit} positions; "
                        f"use context_len <= {limit}")
    V = lm_head_weight(model).shape[0]
    top = int(blocks.max())
    if top >= V:
        raise UserError(f"{what}'s tokenizer produced id {top} but its LM head has {V} rows: "
                        "the tokenizer does not belong to the model")


def _settings(name: str, revision: str | None, train_sha: str, val_sha: str, context_len: int,
              max_train_blocks: int | None, max_val_blocks: int | None) -> dict:
    return {"format_version": FORMAT_VERSION, "model": str(name), "revision": revision,
            "train_texts_sha256": train_sha, "val_texts_sha256": val_sha,
            "context_len": context_len, "max_train_blocks": max_train_blocks,
            "max_val_blocks": max_val_blocks}


def _step_of(revision: str | None) -> int | None:
    m = re.fullmatch(r"step(\d+)", revision or "")
    return int(m[1]) if m else None


def measure_one(name: str, revision: str | None, texts_train: Sequence[str],
                texts_val: Sequence[str], out_dir: str | Path, *, context_len: int = 512,
                batch_size: int = 8, device: str = "cpu", max_train_blocks: int | None = None,
                max_val_blocks: int | None = None, progress: bool = False,
                _token_cache: dict | None = None, _shas: tuple[str, str] | None = None) -> dict:
    """One (model, revision) of ``measure_pretrained``: returns its metrics row.

    The identity of a hub model is its settings (name, revision, texts' ``sha256_texts``,
    ``context_len``, block caps): a metrics file recording these settings and measured from
    the current stats file (``linguistic_collapse.pipeline.refresh.measured_from``) is returned without loading
    the model. Under the metrics file's lock throughout, so the stats file is hashed once for
    that check and the measure step unless collected again. Otherwise the model is loaded and hashed once (``state_dict_sha256``) and the one
    collect-then-measure-if-stale step (``linguistic_collapse.pipeline.refresh``) keeps a stats file of these
    weights and token blocks (their sha256 covers texts, tokenizer and caps) and metrics
    measured from it."""
    files = PretrainedLayout(resolve(out_dir))
    slug = model_slug(name, revision)
    metrics_path, stats_path = files.metrics(slug), files.stats(slug)
    train_sha, val_sha = _shas or (sha256_texts(texts_train), sha256_texts(texts_val))
    settings = _settings(name, revision, train_sha, val_sha, context_len, max_train_blocks,
                         max_val_blocks)
    with lock_for(metrics_path):  # held until measured: no step rewrites the stats file meanwhile
        done = read_json(metrics_path) if metrics_path.is_file() else {}
        stats_sha256 = (sha256_file(stats_path) if done.get("settings") == settings
                        and stats_path.is_file() else None)
        if stats_sha256 and refresh.measured_from(done, stats_sha256):
            return done
        if done.get("settings") != settings:  # other texts or sizes: a row of other settings
            metrics_path.unlink(missing_ok=True)
        tokenizer = load_model_tokenizer(name, revision)
        key = _tokenization_key(tokenizer)
        cache = _token_cache if _token_cache is not None else {}
        if key not in cache:
            cache[key] = (_blocks(texts_train, tokenizer, context_len, "train"),
                          _blocks(texts_val, tokenizer, context_len, "validation"))
        train, val = cache[key]
        train = np.ascontiguousarray(train[:max_train_blocks] if max_train_blocks else train)
        val = np.ascontiguousarray(val[:max_val_blocks] if max_val_blocks else val)
        model = load_causal_lm(name, device=device, revision=revision)
        _check_model(model, np.concatenate([train.ravel(), val.ravel()]), context_len, slug)
        ids = torch.from_numpy(np.asarray(val[:1, :min(64, context_len)], dtype=np.int64)).to(device)
        gap = feature_logit_gap(model, ids)
        if gap > GAP_WARN:
            warnings.warn(f"{slug}: logits differ from features @ W.T (+ b) by {gap:.2e} relative; "
                          "the model post-processes its logits (soft-capping or scaling?)",
                          stacklevel=2)
        weights = {"state_dict_sha256": state_dict_sha256(model)}  # hashed once, used twice
        inputs = {**weights, "train_blocks_sha256": sha256_array(train),
                  "val_blocks_sha256": sha256_array(val)}
        seconds: dict[str, float | None] = {"collect": None}  # None: collected by an earlier call

        def collect() -> None:
            t0 = time.perf_counter()
            collect_model_stats(model, train, val, stats_path, batch_size=batch_size, device=device,
                                progress=progress, weights_hash=weights)
            seconds["collect"] = time.perf_counter() - t0

        collected = collect_if_stale(
            stats_path, lambda: stats_current(stats_path, inputs, (len(train), len(val))), collect)
        return refresh.measure_under_lock(stats_path, metrics_path, lambda stats: _row(
            model, stats, settings, (train, val), gap, seconds["collect"], batch_size=batch_size,
            device=device, progress=progress), None if collected else stats_sha256)


def _row(model: nn.Module, stats_path: Path, settings: dict, blocks: tuple[np.ndarray, np.ndarray],
         gap: float, collect_s: float | None, *, batch_size: int, device: str,
         progress: bool) -> dict:
    """The metrics row of one model (``settings``: its identity, ``_settings``): description,
    validation loss on the validation ``blocks`` and the measures of its stats file (read
    verified)."""
    name, revision, context_len = settings["model"], settings["revision"], settings["context_len"]
    (train, val), slug = blocks, model_slug(name, revision)
    measures = measure_stats(read_stats(stats_path)[0], device=device, progress=progress)[0]
    loss = evaluate_blocks(model, val, batch_size, device)
    W = lm_head_weight(model)
    n_params = count_params(model)
    return {
        "name": slug, "model": str(name), "revision": revision, "step": _step_of(revision),
        "family": getattr(model.config, "model_type", type(model).__name__),
        "depth": _n_layers(model.config), "width": int(W.shape[1]), "vocab_size": int(W.shape[0]),
        "context_len": context_len, "n_params": n_params, "log_n_params": math.log10(n_params),
        **loss, "num_classes": int(measures.get("num_classes", 0)),
        "train_blocks": int(train.shape[0]), "train_tokens": int(train.shape[0] * (context_len - 1)),
        "val_blocks": int(val.shape[0]), "val_tokens": int(val.shape[0] * (context_len - 1)),
        "feature_logit_gap": gap,
        **{k: v if k == "undefined" else float(v) for k, v in measures.items()
           if k != "num_classes"},  # undefined: {measure: why it is NaN}
        "collect_seconds": collect_s, "stats_path": str(stats_path), "settings": settings,
    }


def measure_pretrained(models: Sequence[tuple[str, str | None]], texts_train: Sequence[str],
                       texts_val: Sequence[str], out_dir: str | Path, *, context_len: int = 512,
                       batch_size: int = 8, device: str = "cpu",
                       max_train_blocks: int | None = None, max_val_blocks: int | None = None,
                       progress: bool = False) -> list[dict]:
    """Collect, measure and evaluate each (hub id or local folder, revision) on the texts.

    Per model: its own tokenizer cuts ``texts_train``/``texts_val`` into blocks of
    ``context_len`` (the first ``max_train_blocks``/``max_val_blocks`` are used), the stats go to
    ``out_dir/stats/<slug>/stats.safetensors``, and the row of ``TABLE_COLUMNS`` + measures to
    ``out_dir/metrics/<slug>.json``. Returns the rows in order. Models sharing a tokenizer (Pythia
    revisions) share one tokenization.
    """
    if not models:
        raise UserError("no models to measure; pass [(hub id or folder, revision or None), ...]")
    if context_len < 2 or batch_size < 1:
        raise UserError(f"need context_len >= 2 and batch_size >= 1, got {context_len}, "
                        f"{batch_size}")
    slugs = [model_slug(n, r) for n, r in models]
    if len(set(slugs)) != len(slugs):
        raise UserError(f"models listed twice (or two local folders with one name): {slugs}")
    for name, revision in models:  # every hub model reachable or cached, before any work
        if local_model_dir(name) is None and is_hub_name(name):
            # heavy (transformers): loaded only when a model or tokenizer is used
            from transformers import AutoConfig

            load = functools.partial(AutoConfig.from_pretrained, trust_remote_code=False)
            try:
                from_hub(load, name, revision, what="model")
            except ValueError as err:
                if isinstance(err, UserError) or "trust_remote_code" not in str(err):
                    raise
                raise refused_code("model", name, err) from None
    shas, cache = (sha256_texts(texts_train), sha256_texts(texts_val)), {}
    return [measure_one(n, r, texts_train, texts_val, out_dir, context_len=context_len,
                        batch_size=batch_size, device=device, max_train_blocks=max_train_blocks,
                        max_val_blocks=max_val_blocks, progress=progress, _token_cache=cache,
                        _shas=shas) for n, r in models]


def pretrained_table(out_dir: str | Path):
    """Every ``metrics/*.json`` of ``measure_pretrained`` under ``out_dir`` as a DataFrame."""
    # heavy (pandas): loaded only when the table is built
    import pandas as pd

    paths = sorted(PretrainedLayout(resolve(out_dir)).metrics_dir.glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no metrics/*.json under {resolve(out_dir)}; run "
                                "measure_pretrained first")
    rows = [{k: v for k, v in json.loads(p.read_text()).items() if k != "settings"} for p in paths]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Shell: python -m linguistic_collapse pretrained --model NAME[@REV] ... --corpus DIR --out DIR


def _cli(args: argparse.Namespace) -> int:
    train = load_corpus(args.corpus, "train", args.max_stories)
    val = load_corpus(args.corpus, "validation", args.max_stories)
    rows = measure_pretrained([parse_model_arg(m) for m in args.model], train, val, args.out,
                              context_len=args.context_len, batch_size=args.batch_size,
                              device=args.device, max_train_blocks=args.max_train_blocks,
                              max_val_blocks=args.max_val_blocks, progress=True)
    for r in rows:
        print(f"{r['name']}: n_params {r['n_params']:,} val_loss {r['val_loss']:.4f} "
              f"nc1_cdnv {r['nc1_cdnv']:.4g} nc4_agreement {r['nc4_agreement']:.4f}")
    return 0


def register_cli(subparsers) -> None:
    """``python -m linguistic_collapse pretrained --model gpt2 --model EleutherAI/pythia-70m@step1000 ...``."""
    p = subparsers.add_parser("pretrained", help="measure hub or local causal LMs on a corpus")
    p.add_argument("--model", action="append", required=True,
                   help="hub id or local folder, optionally @revision (repeat)")
    p.add_argument("--corpus", required=True, type=corpus_source_arg,
                   help="corpus source (linguistic_collapse.lm.data.load_corpus; a path from your directory)")
    p.add_argument("--out", required=True, type=cli_path, help="output folder (metrics/, stats/)")
    p.add_argument("--context-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-stories", type=int, default=None)
    p.add_argument("--max-train-blocks", type=int, default=None)
    p.add_argument("--max-val-blocks", type=int, default=None)
    p.set_defaults(func=_cli)

