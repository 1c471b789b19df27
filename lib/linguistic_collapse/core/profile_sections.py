"""The sections of a profile as strict pydantic models: unknown keys refused with the allowed ones,
numbers strict and finite, values frozen (``linguistic_collapse.core.profiles`` assembles them into a ``Profile``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.gpt_neo_defaults import PAPER_LOCAL_WINDOW, default_n_head
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import resolve

# Strict numbers: YAML ``true`` is no integer and ``"5"`` no float (an int is a fine float).
PositiveInt = Annotated[int, Strict(), Field(gt=0)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0)]
NonNegativeFloat = Annotated[float, Strict(), Field(ge=0)]
PROFILE_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")  # a folder name under runs/ and figures/
CORPUS_SOURCES = ("generated", "path", "hub")  # or hub:<dataset>, disk:<saved dataset>
# Vocabulary sizes of pretrained tokenizers, for parameter counts before anything is downloaded.
PRETRAINED_VOCAB = {"EleutherAI/gpt-neo-125M": 50257, "gpt2": 50257}
Fraction = Annotated[float, Strict(), Field(gt=0, le=1)]
MIN_TIMEOUT_MIN = 5  # cluster.timeout_min: the shortest SLURM job that can be requeued


class Section(BaseModel):
    """Strict, frozen, finite: unknown keys are refused with the list of allowed ones."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                raise ValueError(f"unknown key {unknown[0]!r}; allowed keys: "
                                 f"{', '.join(cls.model_fields)}")
        return data


# ---------------------------------------------------------------------------------------------
# Sections


class CorpusConfig(Section):
    """Where the text comes from and how much of it to use (see linguistic_collapse.lm.data.prepare_corpus)."""

    source: str  # generated | path | hub | hub:<dataset> | disk:<saved dataset>
    path: str | None = None  # a folder with train.txt / validation.txt (source: path)
    max_train_stories: PositiveInt | None = None
    max_val_stories: PositiveInt | None = None
    fallback: str | None = None  # source used when ``path`` is missing, e.g. hub:roneneldan/TinyStories

    @model_validator(mode="after")
    def _check(self) -> CorpusConfig:
        if self.fallback is not None and not self.fallback.startswith(("hub", "disk:")):
            raise ValueError(f"fallback must be 'hub', 'hub:<dataset>' or 'disk:<path>', "
                             f"got {self.fallback!r}")
        if self.source not in CORPUS_SOURCES and not self.source.startswith(("hub:", "disk:")):
            raise ValueError(f"source is {self.source!r}; expected one of "
                             f"{', '.join(CORPUS_SOURCES)}, hub:<dataset> or disk:<path>")
        if self.source == "path" and not self.path:
            raise ValueError("source is 'path' but path is not set; give the text folder")
        if self.source != "path" and self.path is not None:
            raise ValueError(f"path is only used with source 'path', not {self.source!r}")
        return self

    def load_source(self) -> str:
        """The ``linguistic_collapse.lm.data.load_corpus`` source: the resolved folder, or the fallback without it."""
        if self.source != "path":
            return self.source
        folder = resolve(self.path)
        return self.fallback if self.fallback and not folder.exists() else str(folder)


class TokenizerConfig(Section):
    """A BPE trained on the corpus (``vocab_size``), a pretrained tokenizer (``name``), or
    ``gpt2-bpe``: GPT-2/GPT-Neo's 50,257-token BPE built offline (``linguistic_collapse.lm.gpt2_bpe``)."""

    kind: Literal["bpe", "pretrained", "gpt2-bpe"]
    vocab_size: PositiveInt | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TokenizerConfig:
        if self.kind == "bpe" and not self.vocab_size:
            raise ValueError("kind is 'bpe' but vocab_size is not set")
        if self.kind == "bpe" and self.name is not None:
            raise ValueError("name is only used with kind 'pretrained'; a 'bpe' is trained here")
        if self.kind == "pretrained" and not self.name:
            raise ValueError("kind is 'pretrained' but name is not set")
        if self.kind == "gpt2-bpe" and (self.name or self.vocab_size):
            raise ValueError("kind 'gpt2-bpe' takes no name or vocab_size (it is GPT-2's 50,257)")
        return self

    def spec(self) -> dict:
        """What identifies the tokenizer (recorded in the corpus manifest)."""
        if self.kind == "bpe":
            return {"kind": "bpe", "vocab_size": self.vocab_size}
        if self.kind == "gpt2-bpe":
            return {"kind": "gpt2-bpe"}
        return {"kind": "pretrained", "name": self.name}

    def expected_vocab_size(self) -> int:
        """Vocabulary size known before any tokenizer exists (for cost estimates)."""
        if self.vocab_size:
            return self.vocab_size
        if self.kind == "gpt2-bpe":
            return PRETRAINED_VOCAB["gpt2"]
        if self.name in PRETRAINED_VOCAB:
            return PRETRAINED_VOCAB[self.name]
        raise UserError(f"vocabulary size of tokenizer {self.name!r} is unknown; set "
                        "tokenizer.vocab_size in the profile")


class ModelConfig(Section):
    """Architecture settings shared by every run (depth and width come from the grid)."""

    n_head: PositiveInt | None = None  # None: default_n_head(width)
    window_size: PositiveInt = PAPER_LOCAL_WINDOW
    init_seed: NonNegativeInt = 0  # initialisation seed, the same for every run
    attn_implementation: Literal["eager", "flash_attention_2"] = "eager"

    def heads(self, width: int) -> int:
        return self.n_head or default_n_head(width)


class TrainingConfig(Section):
    """Optimiser and schedule (Hugging Face Trainer defaults unless the profile says otherwise)."""

    lr: PositiveFloat
    batch_size: PositiveInt
    lr_schedule: Literal["linear", "constant"] = "linear"  # linear decay to 0 | constant
    warmup_steps: NonNegativeInt = 0
    max_grad_norm: NonNegativeFloat = 1.0  # 0: no clipping
    adam_betas: tuple[Annotated[float, Strict(), Field(ge=0, lt=1)],
                      Annotated[float, Strict(), Field(ge=0, lt=1)]] = (
        0.9, 0.999)
    adam_eps: PositiveFloat = 1e-8
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    eval_batch_size: PositiveInt = 32
    # depth -> {width: batch size}; architectures not listed use batch_size
    batch_size_by_arch: dict[int, dict[int, PositiveInt]] | None = None

    def batch_size_for(self, depth: int, width: int) -> int:
        """The training batch size of one architecture."""
        return (self.batch_size_by_arch or {}).get(depth, {}).get(width, self.batch_size)


class Variant(Section):
    """A training length and weight decay applied to every architecture of the grid."""

    epochs: PositiveInt
    weight_decay: NonNegativeFloat
    checkpoints: tuple[PositiveInt, ...] | None = None  # epochs to measure; None: the last

    @model_validator(mode="after")
    def _check(self) -> Variant:
        for ck in self.checkpoints or ():
            if ck > self.epochs:
                raise ValueError(f"checkpoint {ck} outside epochs 1..{self.epochs}")
        return self

    def measured(self) -> tuple[int, ...]:
        return self.checkpoints or (self.epochs,)


class Replicas(Variant):
    """Seed-only copies of one model (the permutation test of the paper's Table 1)."""

    depth: PositiveInt
    width: PositiveInt
    seeds: tuple[NonNegativeInt, ...]

    @model_validator(mode="after")
    def _unique(self) -> Replicas:
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds has duplicates: {list(self.seeds)}")
        return self


class GridConfig(Section):
    """Widths x depths x variants at the main seed, plus optional seed replicas."""

    widths: tuple[PositiveInt, ...] = Field(min_length=1)
    depths: tuple[PositiveInt, ...] = Field(min_length=1)
    variants: tuple[Variant, ...] = Field(min_length=1)
    seed: NonNegativeInt = 0
    replicas: Replicas | None = None


class CollectConfig(Section):
    """Statistics collection (linguistic_collapse.pipeline.collect): batch size and optional block caps (null: all)."""

    batch_size: PositiveInt = 16
    max_train_blocks: PositiveInt | None = None
    max_val_blocks: PositiveInt | None = None
    # residual streams whose statistics are gathered too (linguistic_collapse.pipeline.layers): null = top only, "all",
    # or indices (0 = embeddings, depth = last block's output before the final norm)
    layers: Literal["all"] | tuple[NonNegativeInt, ...] | None = None


class ClusterConfig(Section):
    """SLURM resources per job (linguistic_collapse.pipeline.slurm.submit_slurm) and the cost-estimate assumptions."""

    partition: str | None = None
    account: str | None = None
    gpus_per_node: NonNegativeInt = 1  # 0: a CPU-only job (no --gres line)
    cpus_per_task: PositiveInt = 8
    mem_gb: PositiveInt = 64
    timeout_min: PositiveInt = 720
    timeout_requeues: NonNegativeInt = 3  # requeues after the time limit: at most N+1 allocations
    array_parallelism: PositiveInt = 32
    peak_tflops: PositiveFloat = 312.0  # A100 dense bf16 peak
    utilization: Fraction = 0.4  # assumed fraction of peak reached (model FLOPs utilisation)
    train_tokens_estimate: PositiveInt | None = None  # training tokens per epoch, before the corpus exists
    val_tokens_estimate: PositiveInt | None = None  # validation tokens, likewise

    @model_validator(mode="after")
    def _check(self) -> ClusterConfig:
        if self.timeout_min < MIN_TIMEOUT_MIN:
            raise ValueError(
                f"timeout_min is {self.timeout_min}; use at least {MIN_TIMEOUT_MIN}: the time-limit "
                "signal comes 90 s before the limit, and a shorter job fails there instead of "
                "being requeued")
        return self


class AnalysisConfig(Section):
    """Statistics of the analysis notebooks. Every key is required: the library's analysis
    functions take these values as arguments and hold no default of their own, so the profile is
    the one place they are set (``tests/test_profiles.py`` checks both)."""

    n_permutations: PositiveInt  # permutations of the seed-replica test (Table 1)
    n_bootstrap: PositiveInt  # bootstrap resamples of every confidence interval
    seed: NonNegativeInt  # seed of permutations and bootstraps
    min_count: PositiveInt  # minimum training samples of a class in token rankings and robustness
    permutation_alpha: Fraction  # Table 1: a Holm-adjusted p below this is significant
    count_thresholds: tuple[PositiveInt, ...] = Field(min_length=1)  # 02_collect: classes below each count
    extreme_tokens: PositiveInt  # 06_tokens: the most and the least collapsed tokens listed, each


class SensitivityConfig(Section):
    """Measured models whose statistics are re-collected on random subsamples of the training
    blocks: ``draws`` subsamples per fraction below 1, each reproducible from ``seed``."""

    runs: tuple[str, ...] = ()  # checkpoint names of the profile, e.g. L1-d32-e1-wd0.0005-s0-ck1
    fractions: tuple[Fraction, ...] = (0.125, 0.25, 0.5, 1.0)
    draws: PositiveInt = 3  # random subsamples per fraction < 1 (fraction 1: the one full pass)
    seed: NonNegativeInt = 0  # with (fraction, draw), seeds each subsample's generator

    def draws_of(self, fraction: float) -> range:
        """The draws collected at ``fraction``: ``draws`` below 1, the single full pass at 1."""
        return range(self.draws if fraction < 1 else 1)

    def checkpoints(self) -> list[ModelName]:
        return [ModelName.parse(name) for name in self.runs]


class DynamicsConfig(Section):
    """Collapse through training (linguistic_collapse.pipeline.dynamics): runs trained again with evenly spaced snapshots,
    each collected and measured. No runs (the default): no dynamics."""

    runs: tuple[str, ...] = ()  # training runs of the profile (no -ck suffix), e.g. L1-d64-e1-wd0.0005-s0
    points_per_epoch: PositiveInt = 10  # evenly spaced snapshots per epoch (plus one at step 0)
    max_train_blocks: PositiveInt | None = None  # statistics cap per snapshot; None: collect's
    max_val_blocks: PositiveInt | None = None  # validation cap per snapshot; None: collect's

    def run_names(self) -> list[ModelName]:
        return [ModelName.parse(name) for name in self.runs]
