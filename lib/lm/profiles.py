"""Profiles: one YAML file per population of models, the single source of every parameter.

A profile (``profiles/<name>.yaml``) is validated once, by pydantic models that forbid unknown
keys and non-finite numbers; the typed sections then pass as they are into ``lib.lm.data``,
``lib.stages.train`` and ``lib.stages.collect``. Every mistake raises ``UserError`` in one line naming the
file, the key and what is allowed (a YAML syntax error names the file and the line).
``Profile.from_dict(profile.as_dict())`` round-trips, which is how notebooks rebuild the profile
from papermill parameters.

Example::

    profile = load_profile("smoke")
    profile.runs()          # [RunName(L1-d32-e1-wd0.1-s0), ...]   the training runs
    profile.checkpoints()   # [RunName(L1-d32-e1-wd0.1-s0-ck1), ...] the measured models
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from lib.core.errors import UserError
from lib.core.paths import PROFILES_DIR, resolve
from lib.lm.model import PAPER_LOCAL_WINDOW, default_n_head
from lib.lm.runs import RunName

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


class _Section(BaseModel):
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


class CorpusConfig(_Section):
    """Where the text comes from and how much of it to use (see lib.lm.data.prepare_corpus)."""

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
        """The ``lib.lm.data.load_corpus`` source: the resolved folder, or the fallback without it."""
        if self.source != "path":
            return self.source
        folder = resolve(self.path)
        return self.fallback if self.fallback and not folder.exists() else str(folder)


class TokenizerConfig(_Section):
    """A BPE trained on the corpus (``vocab_size``) or a pretrained tokenizer (``name``)."""

    kind: Literal["bpe", "pretrained"]
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
        return self

    def spec(self) -> dict:
        """What identifies the tokenizer (recorded in the corpus manifest)."""
        if self.kind == "bpe":
            return {"kind": "bpe", "vocab_size": self.vocab_size}
        return {"kind": "pretrained", "name": self.name}

    def expected_vocab_size(self) -> int:
        """Vocabulary size known before any tokenizer exists (for cost estimates)."""
        if self.vocab_size:
            return self.vocab_size
        if self.name in PRETRAINED_VOCAB:
            return PRETRAINED_VOCAB[self.name]
        raise UserError(f"vocabulary size of tokenizer {self.name!r} is unknown; set "
                        "tokenizer.vocab_size in the profile")


class ModelConfig(_Section):
    """Architecture settings shared by every run (depth and width come from the grid)."""

    n_head: PositiveInt | None = None  # None: lib.lm.model.default_n_head(width)
    window_size: PositiveInt = PAPER_LOCAL_WINDOW
    init_seed: NonNegativeInt = 0  # initialisation seed, the same for every run
    attn_implementation: Literal["eager", "flash_attention_2"] = "eager"

    def heads(self, width: int) -> int:
        return self.n_head or default_n_head(width)


class TrainingConfig(_Section):
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


class Variant(_Section):
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


class GridConfig(_Section):
    """Widths x depths x variants at the main seed, plus optional seed replicas."""

    widths: tuple[PositiveInt, ...] = Field(min_length=1)
    depths: tuple[PositiveInt, ...] = Field(min_length=1)
    variants: tuple[Variant, ...] = Field(min_length=1)
    seed: NonNegativeInt = 0
    replicas: Replicas | None = None


class CollectConfig(_Section):
    """Statistics collection (lib.stages.collect): batch size and optional block caps (null: all)."""

    batch_size: PositiveInt = 16
    max_train_blocks: PositiveInt | None = None
    max_val_blocks: PositiveInt | None = None
    # residual streams whose statistics are gathered too (lib.stages.layers): null = top only, "all",
    # or indices (0 = embeddings, depth = last block's output before the final norm)
    layers: Literal["all"] | tuple[NonNegativeInt, ...] | None = None


class ClusterConfig(_Section):
    """SLURM resources per job (lib.stages.slurm.submit_slurm) and the cost-estimate assumptions."""

    partition: str | None = None
    account: str | None = None
    gpus_per_node: PositiveInt = 1
    cpus_per_task: PositiveInt = 8
    mem_gb: PositiveInt = 64
    timeout_min: PositiveInt = 720
    array_parallelism: PositiveInt = 32
    peak_tflops: PositiveFloat = 312.0  # A100 dense bf16 peak
    utilization: Fraction = 0.4  # assumed fraction of peak reached (model FLOPs utilisation)
    train_tokens_estimate: PositiveInt | None = None  # training tokens per epoch, before the corpus exists
    val_tokens_estimate: PositiveInt | None = None  # validation tokens, likewise


class AnalysisConfig(_Section):
    """Statistics of the analysis notebooks."""

    n_permutations: PositiveInt = 10000
    n_bootstrap: PositiveInt = 1000
    seed: NonNegativeInt = 0
    min_count: PositiveInt = 20  # token analysis: minimum training samples of a class


class SensitivityConfig(_Section):
    """Measured models whose statistics are re-collected on fractions of the training blocks."""

    runs: tuple[str, ...] = ()  # checkpoint names of the profile, e.g. L1-d32-e1-wd0.0005-s0-ck1
    fractions: tuple[Fraction, ...] = (0.125, 0.25, 0.5, 1.0)

    def checkpoints(self) -> list[RunName]:
        return [RunName.parse(name) for name in self.runs]


class DynamicsConfig(_Section):
    """Collapse through training (lib.stages.dynamics): runs trained again with evenly spaced snapshots,
    each collected and measured. No runs (the default): no dynamics."""

    runs: tuple[str, ...] = ()  # training runs of the profile (no -ck suffix), e.g. L1-d64-e1-wd0.0005-s0
    points_per_epoch: PositiveInt = 10  # evenly spaced snapshots per epoch (plus one at step 0)
    max_train_blocks: PositiveInt | None = None  # statistics cap per snapshot; None: collect's
    max_val_blocks: PositiveInt | None = None  # validation cap per snapshot; None: collect's

    def run_names(self) -> list[RunName]:
        return [RunName.parse(name) for name in self.runs]


# ---------------------------------------------------------------------------------------------
# The profile


def _check_names(key: str, names: Sequence[str], allowed: Sequence[RunName], what: str) -> None:
    """Each of ``names`` parses as a run name and is one of ``allowed``; else one line naming
    the key, the name and an example."""
    allowed_set = set(allowed)
    for name in names:
        try:
            parsed = RunName.parse(name)
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from None
        if parsed not in allowed_set:
            raise ValueError(f"{key}: {name} is not {what} (e.g. {allowed[0]})")


class Profile(_Section):
    """One population of models and every setting needed to train, collect and analyse it."""

    name: str
    out_dir: str
    context_len: Annotated[int, Strict(), Field(ge=2)]
    corpus: CorpusConfig
    tokenizer: TokenizerConfig
    training: TrainingConfig
    grid: GridConfig
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelConfig = ModelConfig()
    collect: CollectConfig = CollectConfig()
    cluster: ClusterConfig = ClusterConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    sensitivity: SensitivityConfig = SensitivityConfig()
    dynamics: DynamicsConfig = DynamicsConfig()

    @model_validator(mode="after")
    def _check(self) -> Profile:
        if not PROFILE_NAME_RE.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} may hold only letters, digits, '_' and '-' "
                             "(it names folders under runs/ and figures/)")
        reps = self.grid.replicas
        for width in sorted({*self.grid.widths, *([reps.width] if reps else [])}):
            heads = self.model.heads(width)
            if width % heads:
                raise ValueError(f"width {width} is not divisible into {heads} attention heads; "
                                 f"choose a multiple of {heads} or set model.n_head")
        _check_names("sensitivity.runs", self.sensitivity.runs, self.checkpoints(),
                     "a measured checkpoint of this profile")
        _check_names("dynamics.runs", self.dynamics.runs, self.runs(),
                     "a training run of this profile (a run name without -ck)")
        return self

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "profile") -> Profile:
        """Build and validate a profile from a plain mapping (the inverse of ``as_dict``).

        ``source`` names where the mapping came from in error messages (a file path).
        """
        return validated(cls, data, source)

    def as_dict(self) -> dict:
        """Plain data (lists, no tuples) that ``from_dict`` turns back into an equal profile."""
        return self.model_dump(mode="json")

    def section(self, name: str) -> Any:
        """One top-level section as plain data (for papermill parameters)."""
        data = self.as_dict()
        if name not in data:
            raise UserError(f"profile has no section {name!r}; sections: {', '.join(data)}")
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
            raise UserError(f"run {run} is not in profile {self.name!r}; see its grid")
        return [run.run.at(e) for e in sorted(measured[run.run])]

    def checkpoints(self) -> list[RunName]:
        """Every measured model (run at checkpoint epoch), in run order."""
        return [run.at(e) for run, eps in self._measured().items() for e in sorted(eps)]

    def batch_size(self, run: RunName) -> int:
        return self.training.batch_size_for(run.depth, run.width)


def validated(cls: type[_Section], data: Any, source: str) -> Any:
    """``data`` as section ``cls`` (an instance passes through); ``UserError`` naming ``source``."""
    if isinstance(data, cls):
        return data
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise UserError(_one_line(err, source)) from None


def _one_line(err: ValidationError, source: str) -> str:
    """``<source>: <key path>: <problem> (got <value>)``, plus how many more problems."""
    first = err.errors()[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        msg = "missing key (required)"
    elif first["type"] not in ("value_error", "assertion_error"):
        msg += f" (got {first['input']!r})"
    more = err.error_count() - 1
    return (f"{source}: {where + ': ' if where else ''}{msg}"
            + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))


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
            raise UserError(f"profile file {path} does not exist; pass an existing YAML file "
                            f"or a profile name ({', '.join(available_profiles())})")
        return path
    path = PROFILES_DIR / f"{text}.yaml"
    if not path.is_file():
        raise UserError(
            f"unknown profile {text!r}; available profiles: {', '.join(available_profiles())} "
            f"(files in {PROFILES_DIR}) or pass a path to a YAML file"
        )
    return path


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names one key twice (YAML would silently keep the last value)."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys and reads ``1e-3`` as a float (YAML 1.2)
    rather than the string YAML 1.1 makes of it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                continue  # SafeLoader refuses an unhashable key with its own message
            if key in seen:
                raise DuplicateKeyError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]})",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def load_yaml(path: Path) -> Any:
    """A YAML file through ``StrictLoader``; one-line ``UserError`` naming file and line."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)  # noqa: S506
    except DuplicateKeyError as err:
        raise UserError(f"{path}:{err.problem_mark.line + 1}: {err.problem}; a key may appear "
                        "once per section, delete one of them") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{path}{at}: YAML syntax error ({problem}); fix the file there") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the profile as UTF-8 YAML") from None


def load_profile(name_or_path: str | Path) -> Profile:
    """Read and validate a profile by name (``profiles/<name>.yaml``) or path."""
    path = profile_path(name_or_path)
    data = load_yaml(path)
    if not isinstance(data, Mapping):
        raise UserError(f"{path}: a profile must be a YAML mapping of sections (name, out_dir, "
                        f"corpus, ...), not {type(data).__name__}")
    return Profile.from_dict(data, source=str(path))
