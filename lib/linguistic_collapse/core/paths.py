"""Checkout-anchored paths, the ``data/<profile>/`` layout, atomic writes and locks.

The checkout (a clone holding ``profiles/`` and ``notebooks/``) is found from where you work,
never from where the code lies (``repo_root``): ``--root`` / ``$LC_ROOT``, else the nearest
folder at or above the working directory that holds both. The core (``linguistic_collapse.nc``,
the Trainer callback) needs none; relative paths and profile names do.

Atomic writes: a file or folder is built under a temporary name beside its target and renamed
into place, so readers see the old or the new version, never half of one. Temporary files and
folders get the permissions an ordinary ``open``/``mkdir`` would (0644 / 0755 under umask 022),
not ``mkstemp``'s private 0600 / 0700, so colleagues on a shared cluster can read results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.core.outputs import CorpusLayout, DynamicsLayout, checkpoint_in

TEMP_SUFFIX = ".tmp"  # every temporary file or folder of an atomic write ends so

# ---------------------------------------------------------------------------------------------
# Where the checkout is: from where you work, never from the package's location

ROOT_ENV = "LC_ROOT"  # an explicit checkout (``python -m linguistic_collapse --root DIR`` sets it)
CHECKOUT_MARKERS = ("profiles", "notebooks")  # a checkout holds both folders


def is_checkout(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds ``profiles/`` and ``notebooks/`` (a clone of this project)."""
    return all((Path(folder) / name).is_dir() for name in CHECKOUT_MARKERS)


def checked_root(folder: str | os.PathLike, given: str = f"${ROOT_ENV}") -> Path:
    """``folder`` made absolute if it is a checkout, else ``UserError`` naming ``given``."""
    root = Path(folder).expanduser().resolve()
    if not is_checkout(root):
        raise UserError(f"{given} {folder} is not a linguistic-collapse checkout (it holds no "
                        f"{'/ and '.join(CHECKOUT_MARKERS)}/); give the folder of a clone")
    return root


def find_root(start: str | os.PathLike | None = None) -> Path | None:
    """The checkout you work in: ``$LC_ROOT`` when set (checked), else the nearest folder at or
    above ``start`` (the working directory) holding ``profiles/`` and ``notebooks/``; None when
    there is none. Never the folder the code was imported from."""
    env = os.environ.get(ROOT_ENV)
    if env and start is None:
        return checked_root(env)
    here = Path.cwd() if start is None else Path(start)
    here = here.expanduser().resolve()
    return next((folder for folder in (here, *here.parents) if is_checkout(folder)), None)


def repo_root() -> Path:
    """``find_root()``, or ``UserError`` in one line saying that none was found and how to give
    one (profiles, notebooks, runs, figures and data need a checkout; the core does not)."""
    root = find_root()
    if root is None:
        raise UserError(
            f"no linguistic-collapse checkout found at or above {Path.cwd()} (a folder holding "
            f"profiles/ and notebooks/); run from inside a clone, or give one with "
            f"--root <clone> or {ROOT_ENV}=<clone>")
    return root


def profiles_dir() -> Path:
    """``<checkout>/profiles/``: the shipped profiles."""
    return repo_root() / "profiles"


def notebooks_dir() -> Path:
    """``<checkout>/notebooks/``: the notebook series."""
    return repo_root() / "notebooks"


def resolve(path: str | os.PathLike) -> Path:
    """A path relative to the checkout's root (absolute paths pass through, with no checkout)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def resolve_if_checkout(path: str | os.PathLike) -> Path:
    """``resolve(path)`` inside a checkout; outside any, the path as given (a name that may be a
    local folder or a hub model, e.g. ``gpt2``, needs no checkout)."""
    p = Path(path).expanduser()
    root = None if p.is_absolute() else find_root()
    return p if root is None else root / p


def _umask() -> int:
    """The process umask (read by setting and restoring it; os has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _ordinary_mode(path: Path, is_dir: bool) -> None:
    """Give a ``mkstemp``/``mkdtemp`` product the mode ``open``/``mkdir`` would have given."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_umask())


def _ordinary_tree(root: Path) -> None:
    """Ordinary modes for everything under ``root`` (some writers, e.g. safetensors, make 0600)."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            _ordinary_mode(Path(folder) / name, is_dir=True)
        for name in files:
            path = Path(folder) / name
            if not os.stat(path).st_mode & 0o100:  # executables keep their mode
                _ordinary_mode(path, is_dir=False)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers see the old or the new file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        os.close(fd)
        write(Path(tmp))
        _ordinary_mode(Path(tmp), is_dir=False)  # after: some writers recreate the file 0600
        os.replace(tmp, path)
    except OSError as err:  # name the file the user asked for, not its temporary sibling
        if err.errno is None or err.filename in (None, str(path)):
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _finite(obj: Any, undefined: dict[str, str], key: str = "") -> Any:
    """``obj`` with every NaN or infinite float replaced by None (its key noted in ``undefined``)."""
    if isinstance(obj, Mapping):
        return {k: _finite(v, undefined, str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, undefined, key) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        undefined.setdefault(key, f"not a finite number ({obj})")
        return None
    return obj


def strict_json(obj: Any) -> str:
    """Strict JSON text (sorted keys): NaN and infinities become null, and a top-level mapping
    gains ``undefined`` {key: reason} for them unless the writer gave reasons itself. Readers
    take null as NaN (and still read the NaN of older files)."""
    found: dict[str, str] = {}
    plain = _finite(obj, found)
    if isinstance(plain, dict) and found:
        given = plain.get("undefined") if isinstance(plain.get("undefined"), dict) else {}
        plain["undefined"] = {**found, **given}
    return json.dumps(plain, indent=2, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (``strict_json``), atomically."""
    return atomic_write_text(path, strict_json(obj))


def _move_aside(target: Path) -> Path:
    """Rename ``target`` into a fresh temporary sibling folder, which is returned."""
    aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old.",
                                  suffix=TEMP_SUFFIX))
    os.replace(target, aside / target.name)
    return aside


def discard_dir(target: Path) -> None:
    """Remove a folder: renamed aside first, so nobody ever sees it half deleted."""
    shutil.rmtree(_move_aside(target))


def replace_dir(build: Path, target: Path) -> None:
    """Move a finished folder ``build`` onto ``target``; an old ``target`` is removed after."""
    aside = _move_aside(target) if target.exists() else None
    os.replace(build, target)
    if aside is not None:
        shutil.rmtree(aside)


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces ``target`` whole.

    On an exception the temporary folder is removed and ``target`` is left as it was. Callers
    that may race for one target hold its lock (``lock_for(target)``) around this.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=TEMP_SUFFIX))
    _ordinary_mode(tmp, is_dir=True)
    try:
        yield tmp
        _ordinary_tree(tmp)
        replace_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def remove_leftover_temps(folder: str | os.PathLike) -> None:
    """Remove the temporary files and folders (``.*.tmp``) an interrupted atomic write left in
    ``folder``. Call only under the lock of every writer into ``folder``: then they are nobody's
    work in progress."""
    for leftover in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def lock_for(path: str | os.PathLike, timeout: float = -1) -> Any:
    """A ``filelock.FileLock`` guarding ``path`` (a file or folder): ``.<name>.lock`` beside it.

    The lock file lives outside the folder it guards, so it survives that folder's replacement.
    ``timeout=-1`` waits for as long as another process holds it. The returned lock is re-entrant
    through the same object only: a second ``lock_for`` of the same path in one thread is another
    lock, which filelock refuses as a deadlock, so code that holds it passes it on (or calls the
    ``*_under_lock`` variant, as ``pipeline.refresh.measure_under_lock``).
    """
    # not a dependency of the core install (tests/test_core_deps.py)
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.parent / f".{path.name}.lock", timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Every path of a profile's output folder


@dataclass(frozen=True)
class Layout:
    """Paths under a profile's ``out_dir`` (``data/<profile>/``) for the grid's steps.

    ``run`` and ``ck`` arguments are ``linguistic_collapse.core.names.ModelName`` objects (duck-typed:
    ``run.run`` drops the checkpoint, ``run.checkpoint`` is its epoch or None, ``str`` is the name).
    """

    root: Path  # ``Layout("data/cpu")``: anchored at the repository root when relative

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", resolve(self.root))

    # corpus (linguistic_collapse.lm.data.prepare_corpus)
    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def corpus_files(self) -> CorpusLayout:
        return CorpusLayout(self.corpus)

    @property
    def manifest(self) -> Path:
        return self.corpus_files.manifest

    @property
    def tokenizer_dir(self) -> Path:
        return self.corpus_files.tokenizer_dir

    @property
    def train_blocks(self) -> Path:
        return self.corpus_files.train_blocks

    @property
    def val_blocks(self) -> Path:
        return self.corpus_files.val_blocks

    # models (linguistic_collapse.pipeline.train)
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def run_dir(self, run: Any) -> Path:
        """``models/<run>`` (a checkpoint epoch in the name is dropped)."""
        return self.models_dir / str(run.run)

    def checkpoint_dir(self, ck: Any) -> Path:
        """``models/<run>/checkpoint-<epoch>`` of a run name with a checkpoint."""
        if ck.checkpoint is None:
            raise ValueError(f"{ck} names no checkpoint; use run.at(epoch), e.g. {ck.at(ck.epochs)}")
        return checkpoint_in(self.run_dir(ck), ck.checkpoint)

    def results(self, run: Any) -> Path:
        return self.run_dir(run) / "results.json"

    # statistics and measures (linguistic_collapse.pipeline.collect, linguistic_collapse.nc.measure); ``fraction``, ``draw``: the
    # sensitivity study, statistics re-collected on random subsample ``draw`` of that fraction of
    # the training blocks
    def _measured_dir(self, ck: Any, fraction: float | None, draw: int = 0) -> Path:
        if fraction is None or fraction >= 1:  # the whole split: the main statistics
            return self.stats_dir / str(ck)
        return self.root / "sensitivity" / str(ck) / f"fraction-{fraction:g}" / f"draw-{draw}"

    @property
    def stats_dir(self) -> Path:
        """``stats/``: one ``<run>-ck<epoch>/stats.safetensors`` per collected checkpoint."""
        return self.root / "stats"

    def stats(self, ck: Any, fraction: float | None = None, draw: int = 0) -> Path:
        return self._measured_dir(ck, fraction, draw) / "stats.safetensors"

    def throughput(self, ck: Any, fraction: float | None = None, draw: int = 0) -> Path:
        return self._measured_dir(ck, fraction, draw) / "throughput.json"

    def fixed_k_metrics(self, ck: Any) -> Path:
        """``sensitivity/<ck>/fixed_k.json``: every sample of ``ck`` measured on the classes
        seen in all of them (``linguistic_collapse.pipeline.fixed_k``)."""
        return self.root / "sensitivity" / str(ck) / "fixed_k.json"

    @property
    def metrics_dir(self) -> Path:
        """``metrics/``: one ``<run>-ck<epoch>.json`` per measured checkpoint of the grid."""
        return self.root / "metrics"

    def metrics(self, ck: Any, fraction: float | None = None, draw: int = 0) -> Path:
        if fraction is None or fraction >= 1:
            return self.metrics_dir / f"{ck}.json"
        return self._measured_dir(ck, fraction, draw) / "metrics.json"

    # collapse through training (linguistic_collapse.pipeline.dynamics): a run trained again with snapshots
    def dynamics_dir(self, run: Any) -> Path:
        """``dynamics/<run>``: snapshots ``checkpoint-<step>/``, their ``stats/`` and
        ``metrics/``, and the run's table ``dynamics.csv`` (a checkpoint in the name is dropped)."""
        return self.root / "dynamics" / str(run.run)

    def dynamics(self, run: Any) -> DynamicsLayout:
        """The files of ``dynamics_dir(run)``."""
        return DynamicsLayout(self.dynamics_dir(run))

    # bookkeeping
    def stamp(self, stage: str) -> Path:
        """What an executed notebook stage was run from (linguistic_collapse.series.paper)."""
        return self.stamps_dir / f"{stage}.sha256"

    @property
    def stamps_dir(self) -> Path:
        return self.root / "stamps"

    @property
    def slurm(self) -> Path:
        return self.root / "slurm"


def cli_path(text: str) -> Path:
    """argparse ``type`` for paths given on the command line: relative to the caller's working
    directory (not the repository), made absolute so later ``resolve`` calls keep them."""
    return Path(text).expanduser().absolute()


def check_out(out: Path, *, suffix: str, inputs: Sequence[Path] = (),
              ours: Callable[[Path], bool] | None = None, flag: str = "--out") -> Path:
    """``out`` if a command may write it, else ``UserError`` in one line: not a folder, ending
    in ``suffix``, none of ``inputs``, and (when it exists) a file ``ours`` says this command
    wrote, so model weights, tokenizer files or another tool's file are never overwritten."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{flag} {out} is a folder; give the path of a {suffix} file to write")
    if out.suffix != suffix:
        raise UserError(f"{flag} {out} does not end in {suffix}; give the path of a {suffix} "
                        "file (this refuses writing over a file of another kind)")
    for given in inputs:
        given = Path(given)
        same = (os.path.samefile(out, given) if out.exists() and given.exists()
                else out.resolve() == given.resolve())
        if same:
            raise UserError(f"{flag} {out} is also an input of this command; writing it would "
                            "destroy that input, choose another path")
    if out.exists() and ours is not None and not ours(out):
        raise UserError(f"{flag} {out} exists and is not a file this command writes; it is "
                        "left alone: choose another path or delete it yourself")
    return out


def is_json_with(path: Path, key: str) -> bool:
    """True when ``path`` holds a JSON object with ``key`` (how a writer recognises its file)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(obj, dict) and key in obj


def is_csv_with(path: Path, columns: Sequence[str]) -> bool:
    """True when the first line of ``path`` is a CSV header holding ``columns``."""
    try:
        with path.open(encoding="utf-8") as f:
            header = f.readline().strip().split(",")
    except (OSError, ValueError):
        return False
    return set(columns) <= set(header)


def positive_int(text: str) -> int:
    """argparse ``type`` for counts that must be at least 1 (one line from argparse otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# ---------------------------------------------------------------------------------------------
# Where the notebooks' outputs go

OUTPUT_ROOT_ENV = "LC_OUTPUT_ROOT"


def output_root() -> Path:
    """Root of ``runs/`` and ``figures/``: ``$LC_OUTPUT_ROOT`` when set, else the checkout."""
    env = os.environ.get(OUTPUT_ROOT_ENV)
    return Path(env).expanduser().resolve() if env else repo_root()


def runs_dir(root: Path | None = None) -> Path:
    """``<root>/runs/`` (``root``: the output root unless given), one folder per profile."""
    return (output_root() if root is None else root) / "runs"


def tables_dir_for(profile_name: str) -> Path:
    """``<root>/runs/<profile>/``: executed notebooks, results, correlations, permutations."""
    return runs_dir() / profile_name


RESULTS_TABLE = "results.csv"  # a profile's results table, in its tables folder


def results_table_for(profile_name: str) -> Path:
    """``<root>/runs/<profile>/results.csv``: written by 03_measure, read by 04-06."""
    return tables_dir_for(profile_name) / RESULTS_TABLE


def executed_notebook_for(profile_name: str, stage: str) -> Path:
    """``<root>/runs/<profile>/<stage>.ipynb``: a notebook stage as executed for a profile."""
    return tables_dir_for(profile_name) / f"{stage}.ipynb"


def figures_dir_in(tables_dir: Path) -> Path:
    """``<tables_dir>/figures/``: where figures go when a notebook is given an ``output_dir``."""
    return tables_dir / "figures"


def figures_dir_for(profile_name: str) -> Path:
    """``<root>/figures/<profile>/``: every figure of a profile."""
    return output_root() / "figures" / profile_name


def short(path: str | os.PathLike) -> str:
    """``path`` relative to the output root or the checkout when inside one (for messages;
    needs no checkout)."""
    p = Path(path)
    env = os.environ.get(OUTPUT_ROOT_ENV)
    try:
        checkout = find_root()
    except UserError:
        checkout = None
    for root in (Path(env).expanduser().resolve() if env else None, checkout):
        if root is not None and p.resolve().is_relative_to(root):
            return str(p.resolve().relative_to(root))
    return str(p)
