"""Profiles: one YAML file per population of models, the single source of every parameter.

A profile (``profiles/<name>.yaml``) is validated once, by pydantic models that forbid unknown
keys and non-finite numbers; the typed sections then pass as they are into ``linguistic_collapse.lm.data``,
``linguistic_collapse.pipeline.train`` and ``linguistic_collapse.pipeline.collect``. Every mistake raises ``UserError`` in one line naming the
file, the key and what is allowed (a YAML syntax error names the file and the line).
``Profile.from_dict(profile.as_dict())`` round-trips, which is how notebooks rebuild the profile
from papermill parameters.

Example::

    profile = load_profile("smoke")
    profile.runs()          # [ModelName(L1-d32-e1-wd0.1-s0), ...]   the training runs
    profile.checkpoints()   # [ModelName(L1-d32-e1-wd0.1-s0-ck1), ...] the measured models
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, Strict, ValidationError, model_validator

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.names import ModelName
from linguistic_collapse.core.paths import profiles_dir, resolve
from linguistic_collapse.core.profile_sections import (
    PROFILE_NAME_RE,
    AnalysisConfig,
    ClusterConfig,
    CollectConfig,
    CorpusConfig,
    DynamicsConfig,
    GridConfig,
    ModelConfig,
    Section,
    SensitivityConfig,
    TokenizerConfig,
    TrainingConfig,
)

# ---------------------------------------------------------------------------------------------
# The profile


def _check_names(key: str, names: Sequence[str], allowed: Sequence[ModelName], what: str) -> None:
    """Each of ``names`` parses as a run name and is one of ``allowed``; else one line naming
    the key, the name and an example."""
    allowed_set = set(allowed)
    for name in names:
        try:
            parsed = ModelName.parse(name)
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from None
        if parsed not in allowed_set:
            raise ValueError(f"{key}: {name} is not {what} (e.g. {allowed[0]})")


class Profile(Section):
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
    analysis: AnalysisConfig  # required: every key of it is (no code default shadows it)
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

    def _measured(self) -> dict[ModelName, set[int]]:
        """Each training run -> the epochs measured (grid first, then replicas; no duplicates)."""
        g, out = self.grid, {}
        for depth in g.depths:
            for width in g.widths:
                for v in g.variants:
                    run = ModelName(depth, width, v.epochs, v.weight_decay, g.seed)
                    out.setdefault(run, set()).update(v.measured())
        if g.replicas:
            r = g.replicas
            for seed in r.seeds:
                run = ModelName(r.depth, r.width, r.epochs, r.weight_decay, seed)
                out.setdefault(run, set()).update(r.measured())
        return out

    def runs(self) -> list[ModelName]:
        """Every training run of the grid and the replicas, deduplicated, in order."""
        return list(self._measured())

    def checkpoints_of(self, run: ModelName) -> list[ModelName]:
        """The measured checkpoints of one run."""
        measured = self._measured()
        if run.run not in measured:
            raise UserError(f"run {run} is not in profile {self.name!r}; see its grid")
        return [run.run.at(e) for e in sorted(measured[run.run])]

    def checkpoints(self) -> list[ModelName]:
        """Every measured model (run at checkpoint epoch), in run order."""
        return [run.at(e) for run, eps in self._measured().items() for e in sorted(eps)]

    def batch_size(self, run: ModelName) -> int:
        return self.training.batch_size_for(run.depth, run.width)


def validated(cls: type[Section], data: Any, source: str) -> Any:
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
    return sorted(p.stem for p in profiles_dir().glob("*.yaml"))


def profile_path(name_or_path: str | Path) -> Path:
    """The YAML file of a profile name (``smoke``) or path (``profiles/smoke.yaml``)."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = resolve(text)
        if not path.is_file():
            raise UserError(f"profile file {path} does not exist; pass an existing YAML file "
                            f"or a profile name ({', '.join(available_profiles())})")
        return path
    path = profiles_dir() / f"{text}.yaml"
    if not path.is_file():
        raise UserError(
            f"unknown profile {text!r}; available profiles: {', '.join(available_profiles())} "
            f"(files in {profiles_dir()}) or pass a path to a YAML file"
        )
    return path


def profile_arg(text: str) -> str:
    """argparse ``type`` of every ``--profile``: a path (ending .yaml/.yml or holding a /) made
    absolute against the caller's working directory; a bare name as it is
    (``profiles/<name>.yaml`` of the checkout, ``profile_path``)."""
    if text.endswith((".yaml", ".yml")) or "/" in text:
        return str(Path(text).expanduser().absolute())
    return text


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
