"""Profiles: one YAML file per population of models, the single source of every parameter.

A profile (``profiles/<name>.yaml``) is parsed into frozen, validated dataclasses. Every
section refuses keys it does not know (naming the key, the section and the allowed keys), so a
typo never silently falls back to a default. ``Profile.from_dict(profile.as_dict())`` round-trips,
which is how notebooks rebuild the profile from papermill parameters.

Example::

    profile = load_profile("smoke")
    profile.runs()          # [RunName(L1-d32-e1-wd0.1-s0), ...]   the training runs
    profile.checkpoints()   # [RunName(L1-d32-e1-wd0.1-s0-ck1), ...] the measured models
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from lib.model import PAPER_LOCAL_WINDOW, RunName, default_n_head
from lib.paths import PROFILES_DIR, resolve

DEVICES = ("auto", "cpu", "cuda")
ATTN_IMPLEMENTATIONS = ("eager", "flash_attention_2")
PRECISIONS = ("auto", "fp32", "bf16")
LR_SCHEDULES = ("linear", "constant")
CORPUS_SOURCES = ("generated", "path", "hub")
TOKENIZER_KINDS = ("bpe", "pretrained")
# Vocabulary sizes of pretrained tokenizers, for parameter counts before anything is downloaded.
PRETRAINED_VOCAB = {"EleutherAI/gpt-neo-125M": 50257, "gpt2": 50257}


def _choice(value: str, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise ValueError(f"{where} is {value!r}; expected one of {', '.join(allowed)}")


def _positive(value: float | None, where: str) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{where} must be positive, got {value}")


# ---------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True)
class CorpusConfig:
    """Where the text comes from and how much of it to use (see lib.data.prepare_corpus)."""

    source: str  # generated | path | hub | hub:<dataset> | disk:<saved dataset>
    path: str | None = None  # a folder with train.txt / validation.txt (source: path)
    max_train_stories: int | None = None
    max_val_stories: int | None = None
    fallback: str | None = None  # source used when ``path`` is missing, e.g. hub:roneneldan/TinyStories

    def __post_init__(self) -> None:
        if self.fallback is not None and not self.fallback.startswith(("hub", "disk:")):
            raise ValueError(f"corpus.fallback must be 'hub', 'hub:<dataset>' or 'disk:<path>', got {self.fallback!r}")
        if not self.source.startswith(("hub:", "disk:")):
            _choice(self.source, CORPUS_SOURCES, "corpus.source")
        if self.source == "path" and not self.path:
            raise ValueError("corpus.source is 'path' but corpus.path is not set; give the folder")
        _positive(self.max_train_stories, "corpus.max_train_stories")
        _positive(self.max_val_stories, "corpus.max_val_stories")

    def spec(self) -> dict:
        """The corpus mapping for lib.data.prepare_corpus (unset keys left out, path resolved)."""
        spec = {k: v for k, v in _plain(self).items() if v is not None and k != "fallback"}
        if "path" in spec:
            spec["path"] = str(resolve(spec["path"]))
            if self.fallback and not resolve(self.path).exists():
                del spec["path"]
                spec["source"] = self.fallback
        return spec


@dataclass(frozen=True)
class TokenizerConfig:
    """A BPE trained on the corpus (``vocab_size``) or a pretrained tokenizer (``name``)."""

    kind: str  # bpe | pretrained
    vocab_size: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        _choice(self.kind, TOKENIZER_KINDS, "tokenizer.kind")
        if self.kind == "bpe" and not self.vocab_size:
            raise ValueError("tokenizer.kind is 'bpe' but tokenizer.vocab_size is not set")
        if self.kind == "pretrained" and not self.name:
            raise ValueError("tokenizer.kind is 'pretrained' but tokenizer.name is not set")
        _positive(self.vocab_size, "tokenizer.vocab_size")

    def spec(self) -> dict:
        """The tokenizer mapping for lib.data.prepare_corpus."""
        if self.kind == "bpe":
            return {"kind": "bpe", "vocab_size": self.vocab_size}
        return {"kind": "pretrained", "name": self.name}

    def expected_vocab_size(self) -> int:
        """Vocabulary size known before any tokenizer exists (for cost estimates)."""
        if self.vocab_size:
            return self.vocab_size
        if self.name in PRETRAINED_VOCAB:
            return PRETRAINED_VOCAB[self.name]
        raise ValueError(
            f"vocabulary size of tokenizer {self.name!r} is unknown; set tokenizer.vocab_size"
        )


@dataclass(frozen=True)
class ModelConfig:
    """Architecture settings shared by every run (depth and width come from the grid)."""

    n_head: int | None = None  # None: lib.model.default_n_head(width)
    window_size: int = PAPER_LOCAL_WINDOW
    init_seed: int = 0  # initialisation seed, the same for every run
    attn_implementation: str = "eager"  # eager | flash_attention_2 (CUDA + flash-attn package)

    def __post_init__(self) -> None:
        _choice(self.attn_implementation, ATTN_IMPLEMENTATIONS, "model.attn_implementation")
        _positive(self.n_head, "model.n_head")
        _positive(self.window_size, "model.window_size")

    def heads(self, width: int) -> int:
        return self.n_head or default_n_head(width)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimiser and schedule (Hugging Face Trainer defaults unless the profile says otherwise)."""

    lr: float
    batch_size: int
    lr_schedule: str = "linear"  # linear decay to 0 | constant
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    precision: str = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    eval_batch_size: int = 32
    # depth -> {width: batch size}; architectures not listed use batch_size
    batch_size_by_arch: dict[int, dict[int, int]] | None = None

    def __post_init__(self) -> None:
        _positive(self.lr, "training.lr")
        _positive(self.batch_size, "training.batch_size")
        _positive(self.eval_batch_size, "training.eval_batch_size")
        _choice(self.lr_schedule, LR_SCHEDULES, "training.lr_schedule")
        _choice(self.precision, PRECISIONS, "training.precision")
        if self.warmup_steps < 0:
            raise ValueError(f"training.warmup_steps must be >= 0, got {self.warmup_steps}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"training.adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        for widths in (self.batch_size_by_arch or {}).values():
            for b in widths.values():
                _positive(b, "training.batch_size_by_arch entry")

    def batch_size_for(self, depth: int, width: int) -> int:
        """The training batch size of one architecture."""
        return (self.batch_size_by_arch or {}).get(depth, {}).get(width, self.batch_size)


@dataclass(frozen=True)
class Variant:
    """A training length and weight decay applied to every architecture of the grid."""

    epochs: int
    weight_decay: float
    checkpoints: tuple[int, ...] | None = None  # epochs to measure; None: the last

    def __post_init__(self) -> None:
        _positive(self.epochs, "variant epochs")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for ck in self.checkpoints or ():
            if not 1 <= ck <= self.epochs:
                raise ValueError(f"checkpoint {ck} outside epochs 1..{self.epochs} of variant {self}")

    def measured(self) -> tuple[int, ...]:
        return self.checkpoints or (self.epochs,)


@dataclass(frozen=True)
class Replicas:
    """Seed-only copies of one model (the permutation test of the paper's Table 1)."""

    depth: int
    width: int
    epochs: int
    weight_decay: float
    seeds: tuple[int, ...]
    checkpoints: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        Variant(self.epochs, self.weight_decay, self.checkpoints)  # same checks
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"grid.replicas.seeds has duplicates: {list(self.seeds)}")

    def measured(self) -> tuple[int, ...]:
        return self.checkpoints or (self.epochs,)


@dataclass(frozen=True)
class GridConfig:
    """Widths x depths x variants at the main seed, plus optional seed replicas."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    variants: tuple[Variant, ...]
    seed: int = 0
    replicas: Replicas | None = None

    def __post_init__(self) -> None:
        for name in ("widths", "depths", "variants"):
            if not getattr(self, name):
                raise ValueError(f"grid.{name} is empty; list at least one")
        for v in (*self.widths, *self.depths):
            _positive(v, "grid width/depth")


@dataclass(frozen=True)
class CollectConfig:
    """Statistics collection (lib.collect): batch size and optional block caps."""

    batch_size: int = 16
    max_train_blocks: int | None = None
    max_val_blocks: int | None = None

    def __post_init__(self) -> None:
        _positive(self.batch_size, "collect.batch_size")
        _positive(self.max_train_blocks, "collect.max_train_blocks")
        _positive(self.max_val_blocks, "collect.max_val_blocks")


@dataclass(frozen=True)
class ClusterConfig:
    """SLURM resources per job (lib.dispatch.submit_slurm) and the cost-estimate assumptions."""

    partition: str | None = None
    account: str | None = None
    gpus_per_node: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 64
    timeout_min: int = 720
    array_parallelism: int = 32
    peak_tflops: float = 312.0  # A100 dense bf16 peak
    utilization: float = 0.4  # assumed fraction of peak reached (model FLOPs utilisation)
    train_tokens_estimate: int | None = None  # training tokens per epoch, before the corpus exists
    val_tokens_estimate: int | None = None  # validation tokens, likewise

    def __post_init__(self) -> None:
        for name in ("gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min",
                     "array_parallelism", "peak_tflops"):
            _positive(getattr(self, name), f"cluster.{name}")
        _positive(self.train_tokens_estimate, "cluster.train_tokens_estimate")
        _positive(self.val_tokens_estimate, "cluster.val_tokens_estimate")
        if not 0 < self.utilization <= 1:
            raise ValueError(f"cluster.utilization must be in (0, 1], got {self.utilization}")


@dataclass(frozen=True)
class AnalysisConfig:
    """Statistics of the analysis notebooks."""

    n_permutations: int = 10000
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _positive(self.n_permutations, "analysis.n_permutations")
        _positive(self.n_bootstrap, "analysis.n_bootstrap")


# ---------------------------------------------------------------------------------------------
# The profile


@dataclass(frozen=True)
class Profile:
    """One population of models and every setting needed to train, collect and analyse it."""

    name: str
    out_dir: str
    context_len: int
    corpus: CorpusConfig
    tokenizer: TokenizerConfig
    training: TrainingConfig
    grid: GridConfig
    device: str = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    def __post_init__(self) -> None:
        _choice(self.device, DEVICES, "device")
        _positive(self.context_len, "context_len")
        reps = self.grid.replicas
        for width in {*self.grid.widths, *([reps.width] if reps else [])}:
            heads = self.model.heads(width)
            if width % heads:
                raise ValueError(
                    f"width {width} is not divisible into {heads} attention heads; choose a width "
                    f"that is a multiple of {heads} or set model.n_head"
                )

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Build and validate a profile from a plain mapping (the inverse of ``as_dict``)."""
        return _build(cls, data, "profile")

    def as_dict(self) -> dict:
        """Plain dict (lists, no tuples) that ``from_dict`` turns back into an equal profile."""
        return _plain(self)

    def section(self, name: str) -> Any:
        """One top-level section as plain data (for papermill parameters)."""
        data = self.as_dict()
        if name not in data:
            raise ValueError(f"profile has no section {name!r}; sections: {', '.join(data)}")
        return data[name]

    # --- derived --------------------------------------------------------------------------

    @property
    def out_path(self) -> Path:
        """``out_dir`` anchored at the repository root."""
        return resolve(self.out_dir)

    def _measured(self) -> dict[RunName, set[int]]:
        """Each training run -> the epochs measured (grid first, then replicas; no duplicates)."""
        g, out = self.grid, {}
        for depth in g.depths:
            for width in g.widths:
                for v in g.variants:
                    run = RunName(depth, width, v.epochs, v.weight_decay, g.seed)
                    out.setdefault(run, set()).update(v.measured())
        if g.replicas:
            r = g.replicas
            for seed in r.seeds:
                run = RunName(r.depth, r.width, r.epochs, r.weight_decay, seed)
                out.setdefault(run, set()).update(r.measured())
        return out

    def runs(self) -> list[RunName]:
        """Every training run of the grid and the replicas, deduplicated, in order."""
        return list(self._measured())

    def checkpoints_of(self, run: RunName) -> list[RunName]:
        """The measured checkpoints of one run."""
        measured = self._measured()
        if run.run not in measured:
            raise ValueError(f"run {run} is not in profile {self.name!r}")
        return [run.run.at(e) for e in sorted(measured[run.run])]

    def checkpoints(self) -> list[RunName]:
        """Every measured model (run at checkpoint epoch), in run order."""
        return [run.at(e) for run, eps in self._measured().items() for e in sorted(eps)]

    def batch_size(self, run: RunName) -> int:
        return self.training.batch_size_for(run.depth, run.width)


# ---------------------------------------------------------------------------------------------
# Loading


def available_profiles() -> list[str]:
    """Names of the profiles in ``profiles/``."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def profile_path(name_or_path: str | Path) -> Path:
    """The YAML file of a profile name (``smoke``) or path (``profiles/smoke.yaml``)."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = resolve(text)
        if not path.is_file():
            raise FileNotFoundError(f"profile file {path} does not exist")
        return path
    path = PROFILES_DIR / f"{text}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"unknown profile {text!r}; available profiles: {', '.join(available_profiles())} "
            f"(files in {PROFILES_DIR}) or pass a path to a YAML file"
        )
    return path


def load_profile(name_or_path: str | Path) -> Profile:
    """Read and validate a profile by name (``profiles/<name>.yaml``) or path."""
    path = profile_path(name_or_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ValueError(f"profile {path} must be a YAML mapping of sections")
    return Profile.from_dict(data)


# ---------------------------------------------------------------------------------------------
# Generic, strict mapping -> dataclass conversion


def _build(cls: type, data: Any, section: str) -> Any:
    """A dataclass from a mapping: unknown or missing keys raise, values coerced to field types."""
    if not isinstance(data, Mapping):
        raise ValueError(f"section {section!r} must be a mapping, got {type(data).__name__}")
    allowed = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise ValueError(
            f"unknown key {unknown[0]!r} in section {section!r}; allowed keys: {', '.join(allowed)}"
        )
    required = [f.name for f in fields(cls) if _is_required(f)]
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"section {section!r} is missing key {missing[0]!r}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], k if section == "profile" else f"{section}.{k}")
              for k, v in data.items()}
    return cls(**kwargs)


def _is_required(f: Any) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (scalars, Optional, tuples, dicts, nested dataclasses)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if is_dataclass(tp):
        return _build(tp, value, where)
    if origin is tuple:
        return _coerce_tuple(value, args, where)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where} must be a mapping, got {value!r}")
        return {_coerce(k, args[0], where): _coerce(v, args[1], f"{where}.{k}")
                for k, v in value.items()}
    return _coerce_scalar(value, tp, where)


def _coerce_tuple(value: Any, args: tuple, where: str) -> tuple:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where} must be a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
        raise ValueError(f"{where} must have {len(args)} entries, got {value!r}")
    return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))


def _coerce_scalar(value: Any, tp: Any, where: str) -> Any:
    if value is None:
        raise ValueError(f"{where} must not be null")
    try:
        if tp is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if tp is float:
            return float(value)  # also YAML's '5e-5', which PyYAML reads as a string
        if tp is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be {tp.__name__}, got {value!r}") from None
    raise TypeError(f"unsupported field type {tp!r} at {where}")


def _plain(obj: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, recursively."""
    if is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj
