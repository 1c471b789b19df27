"""Training one GPT-Neo run of the grid, checkpointed at each epoch end, through the one training
loop (``linguistic_collapse.pipeline.loop.train_loop``): plain PyTorch reproducing Hugging Face Trainer defaults.

What matches the Trainer: AdamW (betas/eps from the profile), weight decay on every parameter
except biases and LayerNorm weights (Trainer's own ``get_parameter_names`` rule), learning rate
decayed linearly to 0 over all steps (``get_linear_schedule_with_warmup``), gradient-norm
clipping, the last partial batch of an epoch kept, labels = input ids (the model shifts them).
bf16 autocast and fused AdamW on CUDA, fp32 on CPU.

Seeds. The initial weights depend only on the profile's ``model.init_seed``; the data order
depends only on ``linguistic_collapse.lm.data.block_order(n_blocks, run.seed, epoch)``. So two runs that differ only
in their shuffling seed start from identical weights and see the same blocks in another order,
which is what the paper's seed-only replicas require. (The model has no dropout, so no other
randomness acts during training.)

Files (``out_dir/models/<run>/``, paths from ``linguistic_collapse.core.paths.Layout``): ``checkpoint-<epoch>/`` per
epoch (``save_pretrained`` of model and tokenizer, plus the training state: optimiser tensors
and RNG states in ``training_state.safetensors``, everything else in ``training_state.json``;
no pickle is ever written or read), each built in a temporary folder and renamed into place;
and ``results.json``. An interrupted run resumes from its last complete checkpoint.

Provenance. ``results.json`` records the run's inputs (``settings``): the training and model
settings (the init seed among them), the batch size, and from the corpus manifest the sha256 of
the training and validation blocks and of the tokenizer; each checkpoint record adds the sha256
of its weights. A finished run whose recorded inputs equal the current ones is never retrained.
One whose inputs changed (other text, tokenizer or settings) is refused with a message naming
what changed and the command that retrains it (``--retrain``), which discards the old run.

Concurrency. Everything touching a run's folder happens under its lock
(``models/.<run>.lock``, ``linguistic_collapse.core.paths.lock_for``): a second process training the same run waits, then finds
it finished; nobody deletes another process's temporary checkpoint folder.

From a profile and the shell: ``linguistic_collapse.pipeline.jobs`` (``python -m linguistic_collapse train --profile smoke --run
L1-d16-e1-wd0.0005-s0 [--retrain]``).
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import torch
from torch import nn

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.outputs import CorpusLayout
from linguistic_collapse.core.paths import (
    Layout,
    atomic_write_json,
    discard_dir,
    lock_for,
    read_json,
)
from linguistic_collapse.core.profile_sections import ModelConfig, TrainingConfig
from linguistic_collapse.core.provenance import CORPUS_HASHES, changed_paths
from linguistic_collapse.lm.data import PreparedCorpus
from linguistic_collapse.lm.devices import resolve_device
from linguistic_collapse.lm.gpt_neo import count_params, paper_param_count
from linguistic_collapse.pipeline.checkpoints import (
    last_checkpoint,
    read_training_state,
)
from linguistic_collapse.pipeline.loop import SavePoints, Snapshots, resolve_precision, train_loop

# ---------------------------------------------------------------------------------------------
# Stored results


def read_results(out_dir: str | os.PathLike, run: ModelName) -> dict | None:
    """The stored results.json of a run, or None if it has none yet."""
    path = Layout(out_dir).results(run)
    return read_json(path) if path.is_file() else None


def is_trained(out_dir: str | os.PathLike, run: ModelName) -> bool:
    """Whether the run finished (its inputs are checked when it is trained or reused)."""
    results = read_results(out_dir, run)
    return results is not None and results.get("status") == "complete"


# ---------------------------------------------------------------------------------------------
# A whole run


def run_inputs(run: ModelName, corpus: PreparedCorpus, training: TrainingConfig, model_cfg: ModelConfig,
               batch_size: int) -> dict:
    """Everything that determines the trained weights, JSON-normalised: recorded as
    ``settings`` in results.json and each checkpoint, compared before anything is reused."""
    manifest = read_json(CorpusLayout(corpus.cache_dir).manifest)
    settings = {"run": str(run), "training": training.model_dump(mode="json"),
                "model": model_cfg.model_dump(mode="json"),
                "init_seed": model_cfg.init_seed, "batch_size": batch_size,
                "vocab_size": corpus.vocab_size, "context_len": corpus.context_len,
                "n_train_blocks": corpus.n_train_blocks, "n_val_blocks": corpus.n_val_blocks,
                **{key: manifest.get(key) for key in CORPUS_HASHES}}
    return json.loads(json.dumps(settings))


def changed_inputs(run: ModelName, *, corpus: Any, training: TrainingConfig,
                   model_cfg: ModelConfig, out_dir: str | os.PathLike) -> list[str]:
    """The inputs that differ from those the run's folder was trained from ([]: none, or no
    folder yet): what ``train_run`` would refuse the run for, checked without training."""
    run = run.run
    recorded = _recorded_inputs(Layout(out_dir), run, "retrain the run (--retrain)")
    if recorded is None:
        return []
    settings = run_inputs(run, corpus, training, model_cfg,
                          training.batch_size_for(run.depth, run.width))
    return changed_paths(recorded, settings) if recorded != settings else []


def _recorded_inputs(layout: Layout, run: ModelName, fix: str) -> dict | None:
    """The inputs a run folder was made from: results.json, else its last checkpoint's state."""
    results = read_results(layout.root, run)
    if results is not None:
        return results.get("settings", {})
    epoch = last_checkpoint(layout.run_dir(run))
    if epoch:
        return read_training_state(layout.checkpoint_dir(run.at(epoch)), fix)[1]["settings"]
    return None


def _check_corpus(corpus: PreparedCorpus, batch_size: int) -> None:
    if corpus.n_train_blocks < batch_size:
        raise UserError(
            f"the training corpus has {corpus.n_train_blocks} blocks of {corpus.context_len} "
            f"tokens, fewer than one batch of {batch_size}; use more stories "
            "(corpus.max_train_stories), a shorter context_len or a smaller batch_size"
        )
    if corpus.n_val_blocks < 1:
        raise UserError(
            f"the validation corpus has no block of {corpus.context_len} tokens; use more "
            "validation stories (corpus.max_val_stories) or a shorter context_len"
        )


def _results(run: ModelName, settings: dict, model: nn.Module, corpus: PreparedCorpus, device: torch.device,
             precision: str, records: list[dict], status: str) -> dict:
    # heavy (transformers): loaded only when a model or tokenizer is used
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


def train_run(run: ModelName, *, corpus: PreparedCorpus, training: TrainingConfig, model_cfg: ModelConfig,
              out_dir: str | os.PathLike, device: str = "auto", progress: bool = True,
              stop_after_epochs: int | None = None, retrain: bool = False,
              retrain_command: str | None = None, snapshots: Snapshots | None = None) -> dict:
    """Train one run (resuming from its last checkpoint) and return its results.json content.

    ``corpus`` is a ``linguistic_collapse.lm.data.PreparedCorpus``. A run whose results say ``complete`` and whose
    recorded inputs equal the current ones is returned as stored. A run folder made from other
    inputs, or with an unreadable training state, raises ``UserError`` naming what is wrong and
    ``retrain_command``. ``retrain=True`` discards any run folder that is not a finished run of
    the current inputs and trains afresh. ``stop_after_epochs`` stops early (a test hook that
    simulates an interruption). ``snapshots``: more snapshots to take on the way when the run
    trains from its start (``linguistic_collapse.pipeline.snapshots.grid_snapshots``).
    """
    run = run.run
    layout = Layout(out_dir)
    directory = layout.run_dir(run)
    batch_size = training.batch_size_for(run.depth, run.width)
    settings = run_inputs(run, corpus, training, model_cfg, batch_size)
    fix = f"retrain it with: {retrain_command or 'train_run(..., retrain=True)'}"
    with lock_for(directory):
        if retrain and directory.exists() and not (is_trained(out_dir, run) and read_results(
                out_dir, run).get("settings") == settings):
            discard_dir(directory)
        recorded = _recorded_inputs(layout, run, fix)
        if recorded is not None and recorded != settings:
            raise UserError(f"{directory}: run {run} was trained from other inputs "
                            f"({', '.join(changed_paths(recorded, settings))} changed); {fix}")
        stored = read_results(out_dir, run)
        if stored is not None and stored.get("status") == "complete":
            return stored
        _check_corpus(corpus, batch_size)
        directory.mkdir(parents=True, exist_ok=True)
        return _train(run, layout, corpus, training, model_cfg, settings, batch_size,
                      resolve_device(device), progress, stop_after_epochs, fix, snapshots)


def _train(run: ModelName, layout: Layout, corpus: PreparedCorpus, training: TrainingConfig,
           model_cfg: ModelConfig, settings: dict, batch_size: int, device: torch.device,
           progress: bool, stop_after_epochs: int | None, fix: str,
           snapshots: Snapshots | None = None) -> dict:
    directory = layout.run_dir(run)
    precision = resolve_precision(training.precision, device)
    S = math.ceil(corpus.n_train_blocks / batch_size)
    start = last_checkpoint(directory)
    last = run.epochs if stop_after_epochs is None else min(run.epochs, stop_after_epochs)
    last = max(last, start)

    def record(step: int, _epoch: float, tokens: int, loss: float, n_tok: int, t0: float,
               train_s: float, evaluation: dict) -> dict:
        return {"epoch": step // S, "train_loss": loss, "tokens_seen": tokens, **evaluation,
                "wall_s": time.perf_counter() - t0, "train_tokens_per_s": n_tok / train_s}

    def saved(records: list[dict], epoch: int, model: nn.Module) -> None:
        if epoch < last:
            atomic_write_json(layout.results(run), _results(
                run, settings, model, corpus, device, precision, records, "running"))

    at = SavePoints(tuple((e * S, e) for e in range(1, last + 1)), record, saved,
                    snapshots=snapshots)
    model, records, precision = train_loop(run, directory, corpus, training, model_cfg, settings,
                                           batch_size, device, at, progress, fix, str(run))
    # Once more after the loop: also completes a run interrupted between checkpoint and results.
    status = "complete" if last == run.epochs else "running"
    results = _results(run, settings, model, corpus, device, precision, records, status)
    atomic_write_json(layout.results(run), results)
    return results
