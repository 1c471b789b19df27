"""Training one GPT-Neo run: a plain PyTorch loop reproducing Hugging Face Trainer defaults.

What matches the Trainer: AdamW (betas/eps from the profile), weight decay on every parameter
except biases and LayerNorm weights (Trainer's own ``get_parameter_names`` rule), learning rate
decayed linearly to 0 over all steps (``get_linear_schedule_with_warmup``), gradient-norm
clipping, the last partial batch of an epoch kept, labels = input ids (the model shifts them).
bf16 autocast and fused AdamW on CUDA, fp32 on CPU.

Seeds. The initial weights depend only on the profile's ``model.init_seed``; the data order
depends only on ``lib.data.block_order(n_blocks, run.seed, epoch)``. So two runs that differ only
in their shuffling seed start from identical weights and see the same blocks in another order,
which is what the paper's seed-only replicas require. (The model has no dropout, so no other
randomness acts during training.)

Files (``out_dir/models/<run>/``): ``checkpoint-<epoch>/`` per epoch (``save_pretrained`` of
model and tokenizer, plus ``training_state.pt`` with optimiser, scheduler, RNG state and the
per-epoch records), each written into a temporary directory and renamed into place; and
``results.json``. An interrupted run resumes from its last complete checkpoint; a finished run
(``status: complete``) is never retrained.

Shell: ``python -m lib train --profile smoke --run L1-d16-e1-wd0.0005-s0`` (one run, e.g. a
cluster job).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lib.model import (
    RunName,
    build_model,
    count_params,
    gpt_neo_config,
    load_causal_lm,
    paper_param_count,
    quiet_transformers,
)
from lib.paths import atomic_write_json, read_json
from lib.profiles import ModelConfig, Profile, TrainingConfig, load_profile

STATE_FILE = "training_state.pt"
RESULTS_FILE = "results.json"
# Trainer's rule: no weight decay for biases and normalisation weights.
NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


# ---------------------------------------------------------------------------------------------
# Paths


def run_dir(out_dir: str | os.PathLike, run: RunName) -> Path:
    """``out_dir/models/<run>`` (the checkpoint epoch, if any, is dropped)."""
    return Path(out_dir) / "models" / str(run.run)


def checkpoint_dir(out_dir: str | os.PathLike, run: RunName) -> Path:
    """``out_dir/models/<run>/checkpoint-<epoch>`` of a run name with a checkpoint."""
    if run.checkpoint is None:
        raise ValueError(f"{run} names no checkpoint; use run.at(epoch), e.g. {run.at(run.epochs)}")
    return run_dir(out_dir, run) / f"checkpoint-{run.checkpoint}"


def load_checkpoint(out_dir: str | os.PathLike, run: RunName, device: str = "cpu") -> nn.Module:
    """The trained model of one checkpoint, in eval mode."""
    path = checkpoint_dir(out_dir, run)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no checkpoint {path}; train the run first "
            f"(python -m lib train --profile PROFILE --run {run.run})"
        )
    return load_causal_lm(path, device=device)


def read_results(out_dir: str | os.PathLike, run: RunName) -> dict | None:
    """The stored results.json of a run, or None if it has none yet."""
    path = run_dir(out_dir, run) / RESULTS_FILE
    return read_json(path) if path.is_file() else None


def is_trained(out_dir: str | os.PathLike, run: RunName) -> bool:
    results = read_results(out_dir, run)
    return results is not None and results.get("status") == "complete"


# ---------------------------------------------------------------------------------------------
# Device, optimiser, schedule


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use cpu or auto")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on CUDA, fp32 on CPU."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups as the Trainer builds them: decayed weights, and the rest."""
    from transformers.trainer_pt_utils import get_parameter_names

    decay = set(get_parameter_names(model, [nn.LayerNorm], NO_DECAY_PATTERNS))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if n in decay], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, training: TrainingConfig, weight_decay: float,
                   device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=training.lr, betas=tuple(training.adam_betas),
        eps=training.adam_eps, fused=device.type == "cuda",
    )


def make_scheduler(optimizer: torch.optim.Optimizer, training: TrainingConfig, total_steps: int):
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if training.lr_schedule == "linear":
        return get_linear_schedule_with_warmup(optimizer, training.warmup_steps, total_steps)
    return get_constant_schedule_with_warmup(optimizer, training.warmup_steps)


# ---------------------------------------------------------------------------------------------
# One epoch, evaluation


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _batch(blocks: np.ndarray, idx: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(blocks[idx], dtype=np.int64)).to(device)  # (B, T)


def train_epoch(model: nn.Module, optimizer, scheduler, blocks: np.ndarray, order: np.ndarray,
                batch_size: int, max_grad_norm: float, device: torch.device, precision: str,
                bar: tqdm | None = None) -> tuple[float, int]:
    """One pass over ``blocks`` in ``order``; returns (token-weighted mean loss, tokens seen)."""
    model.train()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    n_pred, n_seen, t0 = 0, 0, time.perf_counter()
    for step, start in enumerate(range(0, len(order), batch_size)):
        ids = _batch(blocks, order[start:start + batch_size], device)  # (B, T)
        with _autocast(device, precision):
            loss = model(input_ids=ids, labels=ids).loss  # mean over B*(T-1) next tokens
        loss.backward()
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        k = ids.shape[0] * (ids.shape[1] - 1)
        loss_sum += loss.detach().double() * k
        n_pred, n_seen = n_pred + k, n_seen + ids.numel()
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                rate = n_seen / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:,.0f}")
    return (loss_sum / n_pred).item(), n_seen


@torch.no_grad()
def evaluate(model: nn.Module, blocks: np.ndarray, batch_size: int, device: torch.device,
             precision: str) -> dict:
    """Validation loss (nats/token, token-weighted), top-1 next-token accuracy, perplexity."""
    model.eval()
    nll, correct, n = 0.0, 0, 0
    for start in range(0, len(blocks), batch_size):
        ids = _batch(blocks, np.arange(start, min(start + batch_size, len(blocks))), device)
        with _autocast(device, precision):
            logits = model(input_ids=ids).logits[:, :-1].float()  # (B, T-1, V)
        target = ids[:, 1:]  # (B, T-1)
        nll += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
        n += target.numel()
    loss = nll / n
    return {"val_loss": loss, "val_acc": correct / n, "val_ppl": math.exp(loss)}


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: Path, epoch: int, model: nn.Module, tokenizer: Any,
                    optimizer, scheduler, records: list[dict], settings: dict) -> Path:
    """Write ``checkpoint-<epoch>`` atomically: into a temp dir, then rename into place."""
    final = directory / f"checkpoint-{epoch}"
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".checkpoint-{epoch}.", suffix=".tmp"))
    try:
        with quiet_transformers():
            model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
        torch.save({"epoch": epoch, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                    "records": records, "settings": settings}, tmp / STATE_FILE)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def last_checkpoint(directory: Path) -> int:
    """The last epoch whose checkpoint is complete (0 when none); stale temp dirs removed."""
    for stale in directory.glob(".checkpoint-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    done = [int(p.name.split("-")[1]) for p in directory.glob("checkpoint-*")
            if (p / STATE_FILE).is_file()]
    return max(done, default=0)


# ---------------------------------------------------------------------------------------------
# A whole run


def _settings(run: RunName, corpus: Any, training: TrainingConfig, model_cfg: ModelConfig,
              batch_size: int) -> dict:
    """Everything that determines the trained weights (compared on resume), JSON-normalised."""
    manifest = read_json(Path(corpus.cache_dir) / "manifest.json")
    settings = {"run": str(run), "training": asdict(training), "model": asdict(model_cfg),
                "batch_size": batch_size, "vocab_size": corpus.vocab_size,
                "context_len": corpus.context_len, "n_train_blocks": corpus.n_train_blocks,
                "n_val_blocks": corpus.n_val_blocks,
                # the token blocks themselves: a finished run on other text is refused, not reused
                "corpus_sha256": [manifest["train_blocks_sha256"], manifest["val_blocks_sha256"]]}
    return json.loads(json.dumps(settings))


def _check_settings(stored: dict, current: dict, where: Path) -> None:
    if stored != current:
        diff = sorted(k for k in current if stored.get(k) != current[k])
        raise ValueError(
            f"{where} was trained with other settings ({', '.join(diff)} differ); delete that "
            "run directory to retrain, or use another out_dir"
        )


def _check_corpus(corpus: Any, batch_size: int) -> None:
    if corpus.n_train_blocks < batch_size:
        raise ValueError(
            f"the training corpus has {corpus.n_train_blocks} blocks of {corpus.context_len} "
            f"tokens, fewer than one batch of {batch_size}; use more stories "
            "(corpus.max_train_stories), a shorter context_len or a smaller batch_size"
        )
    if corpus.n_val_blocks < 1:
        raise ValueError(
            f"the validation corpus has no block of {corpus.context_len} tokens; use more "
            "validation stories (corpus.max_val_stories) or a shorter context_len"
        )


def _results(run: RunName, settings: dict, model: nn.Module, corpus: Any, device: torch.device,
             precision: str, records: list[dict], status: str) -> dict:
    import transformers

    spec = run.run.as_dict()
    spec.update(lr=settings["training"]["lr"], batch_size=settings["batch_size"],
                context_len=corpus.context_len, vocab_size=corpus.vocab_size)
    return {
        "run": str(run.run), "spec": spec, "settings": settings, "status": status,
        "n_params": count_params(model),
        "paper_param_count": paper_param_count(run.depth, run.width, corpus.vocab_size,
                                               corpus.context_len),
        "n_train_blocks": corpus.n_train_blocks, "n_train_tokens": corpus.n_train_tokens,
        "checkpoints": records, "device": device.type, "precision": precision,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
    }


def build_run_model(run: RunName, corpus: Any, model_cfg: ModelConfig,
                    tokenizer: Any = None) -> nn.Module:
    """A fresh model of one run: its initial weights depend on model_cfg.init_seed only."""
    config = gpt_neo_config(
        run.depth, run.width, corpus.vocab_size, corpus.context_len, n_head=model_cfg.n_head,
        window_size=model_cfg.window_size, attn_implementation=model_cfg.attn_implementation,
        bos_token_id=getattr(tokenizer, "bos_token_id", None),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
    )
    return build_model(config, seed=model_cfg.init_seed)


def train_run(run: RunName, *, corpus: Any, training: TrainingConfig, model_cfg: ModelConfig,
              out_dir: str | os.PathLike, device: str = "auto", progress: bool = True,
              stop_after_epochs: int | None = None) -> dict:
    """Train one run (resuming from its last checkpoint) and return its results.json content.

    ``corpus`` is a ``lib.data.PreparedCorpus``. ``stop_after_epochs`` stops early (a test hook
    that simulates an interruption). A run whose results say ``complete`` is returned as stored.
    """
    run = run.run
    directory = run_dir(out_dir, run)
    batch_size = training.batch_size_for(run.depth, run.width)
    settings = _settings(run, corpus, training, model_cfg, batch_size)
    stored = read_results(out_dir, run)
    if stored is not None and stored.get("status") == "complete":
        _check_settings(stored["settings"], settings, directory)
        return stored
    _check_corpus(corpus, batch_size)
    directory.mkdir(parents=True, exist_ok=True)
    return _train(run, directory, corpus, training, model_cfg, settings, batch_size,
                  resolve_device(device), progress, stop_after_epochs)


def _train(run: RunName, directory: Path, corpus: Any, training: TrainingConfig,
           model_cfg: ModelConfig, settings: dict, batch_size: int, device: torch.device,
           progress: bool, stop_after_epochs: int | None) -> dict:
    precision = resolve_precision(training.precision, device)
    tokenizer = corpus.tokenizer()
    train_blocks, val_blocks = corpus.train_blocks(), corpus.val_blocks()  # (n, T) int32
    steps_per_epoch = math.ceil(corpus.n_train_blocks / batch_size)
    start = last_checkpoint(directory)
    model = (build_run_model(run, corpus, model_cfg, tokenizer) if start == 0
             else load_causal_lm(directory / f"checkpoint-{start}").train())
    model.to(device)
    optimizer = make_optimizer(model, training, run.weight_decay, device)
    scheduler = make_scheduler(optimizer, training, run.epochs * steps_per_epoch)
    records: list[dict] = []
    if start:
        state = torch.load(directory / f"checkpoint-{start}" / STATE_FILE, weights_only=False)
        _check_settings(state["settings"], settings, directory)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        records = state["records"]
    last = run.epochs if stop_after_epochs is None else min(run.epochs, stop_after_epochs)
    last = max(last, start)
    bar = tqdm(total=(last - start) * steps_per_epoch, desc=str(run), disable=not progress,
               unit="step", leave=False)
    tokens_seen = records[-1]["tokens_seen"] if records else 0
    for epoch in range(start + 1, last + 1):
        t0 = time.perf_counter()
        order = _block_order(corpus.n_train_blocks, run.seed, epoch)
        train_loss, n_tok = train_epoch(model, optimizer, scheduler, train_blocks, order,
                                        batch_size, training.max_grad_norm, device, precision, bar)
        train_s = time.perf_counter() - t0
        tokens_seen += n_tok
        record = {"epoch": epoch, "train_loss": train_loss, "tokens_seen": tokens_seen,
                  **evaluate(model, val_blocks, training.eval_batch_size, device, precision),
                  "wall_s": time.perf_counter() - t0, "train_tokens_per_s": n_tok / train_s}
        records = [*records, record]
        save_checkpoint(directory, epoch, model, tokenizer, optimizer, scheduler, records, settings)
        if epoch < last:
            atomic_write_json(directory / RESULTS_FILE, _results(
                run, settings, model, corpus, device, precision, records, "running"))
    bar.close()
    # Once more after the loop: also completes a run interrupted between checkpoint and results.
    status = "complete" if last == run.epochs else "running"
    results = _results(run, settings, model, corpus, device, precision, records, status)
    atomic_write_json(directory / RESULTS_FILE, results)
    return results


def _block_order(n_blocks: int, seed: int, epoch: int) -> np.ndarray:
    from lib.data import block_order

    return np.asarray(block_order(n_blocks, seed, epoch))


# ---------------------------------------------------------------------------------------------
# From a profile, and the shell


def prepare_profile_corpus(profile: Profile, progress: bool = True) -> Any:
    """The profile's tokenized corpus (cached in ``out_dir/corpus``)."""
    from lib.data import prepare_corpus

    return prepare_corpus(corpus=profile.corpus.spec(), tokenizer=profile.tokenizer.spec(),
                          context_len=profile.context_len, cache_dir=profile.out_path / "corpus",
                          progress=progress)


def train_profile_run(profile: Profile, run: RunName, *, corpus: Any = None,
                      progress: bool = True, device: str | None = None) -> dict:
    """Train one run of a profile (preparing the corpus first when none is given)."""
    if run.run not in profile.runs():
        raise ValueError(f"run {run.run} is not in profile {profile.name!r}; see its grid")
    corpus = corpus if corpus is not None else prepare_profile_corpus(profile, progress)
    return train_run(run, corpus=corpus, training=profile.training, model_cfg=profile.model,
                     out_dir=profile.out_path, device=device or profile.device, progress=progress)


def _cli_train(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile)
    result = train_profile_run(profile, RunName.parse(args.run), progress=not args.no_progress,
                               device=args.device)
    last = result["checkpoints"][-1]
    print(f"{result['run']}: {result['status']}, val_loss {last['val_loss']:.4f}, "
          f"val_acc {last['val_acc']:.4f}")
    return 0


def register_cli(subparsers: Any) -> None:
    """``python -m lib train --profile NAME --run RUN``."""
    p = subparsers.add_parser("train", help="train one run of a profile (resumes; no-op if done)")
    p.add_argument("--profile", required=True, help="profile name or YAML path")
    p.add_argument("--run", required=True, help="run name, e.g. L1-d16-e1-wd0.0005-s0")
    p.add_argument("--device", default=None, help="override the profile's device")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cli_train)
