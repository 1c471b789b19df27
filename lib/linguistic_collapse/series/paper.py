"""The notebook series and its one parameter route.

``python -m linguistic_collapse paper --profile cpu`` executes ``notebooks/NN_*.ipynb`` with papermill, in order,
into ``runs/<profile>/``. papermill passes only ``profile`` (and ``progress=False``): the name of
a shipped profile, or the path of the profile file the series was given (``notebook_profile``), so
every notebook runs that very file. Every other value comes from the profile *inside* the
notebook, through one call in its setup cell::

    cfg = paper.notebook_setup(profile, results_table=results_table, output_dir=output_dir)

which returns the profile plus the paths derived from it (results table, tables folder, figures
folder). ``results_table`` and ``output_dir`` are the only overrides; a table of another profile
(or of your own) is refused unless ``output_dir`` says where its figures and tables go, so no
override ever rewrites one profile's committed figures from another's data.

All output roots pass through ``output_root()``: the repository, or ``$LC_OUTPUT_ROOT`` when set
(the tests set it, so nbval runs never touch tracked files).

A stage is skipped when its stamp (a hash of the notebook source, its parameters, the output
root, the profile file, the ``lib`` sources and the previous stage's stamp) matches the one
recorded in ``<out_dir>/stamps/`` after its last successful run. The stamp is removed before a
stage starts, and the stage executes into ``.<stage>.partial.ipynb``, renamed onto the executed
copy when it ends, so a killed or failed stage is never up to date. While a stage runs, a watcher
prints a progress line at least every 30 s (runs or checkpoints done/total, the current one,
elapsed time and an ETA), read from the files the stage writes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from linguistic_collapse.core.errors import UserError, os_error_line
from linguistic_collapse.core.openmp import WAIT_POLICY_ENV, default_wait_policy
from linguistic_collapse.core.paths import (
    RESULTS_TABLE,
    ROOT_ENV,
    Layout,
    atomic_write_text,
    executed_notebook_for,
    figures_dir_for,
    figures_dir_in,
    find_root,
    notebooks_dir,
    output_root,
    profiles_dir,
    repo_root,
    resolve,
    results_table_for,
    runs_dir,
    short,
    tables_dir_for,
)
from linguistic_collapse.core.profiles import Profile, load_profile, profile_arg, profile_path
from linguistic_collapse.figures.style import apply_style
from linguistic_collapse.lm.devices import apply_thread_setting
from linguistic_collapse.series.progress import ProgressWatcher, hms, stage_counter
from linguistic_collapse.series.sources import sync_notebooks
from linguistic_collapse.series.stamps import inputs_digest, lib_digest, stage_inputs, stage_stamp
from linguistic_collapse.tables.reproduce import rerun_summary

STAGES = ("01_train", "02_collect", "03_measure", "04_correlate", "05_permutation", "06_tokens",
          "07_layers", "08_dynamics")
# Every parameter a notebook may declare; papermill sets only the first two.
PARAMETERS = ("profile", "progress", "results_table", "output_dir")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _owner(table: Path) -> str | None:
    """The profile whose default results table ``table`` is (``runs/<name>/results.csv``)."""
    if table.name != RESULTS_TABLE:
        return None
    for root in {repo_root(), output_root()}:
        if table.parent.parent == runs_dir(root):
            return table.parent.name
    return None


@dataclass(frozen=True)
class NotebookConfig:
    """A profile plus the paths a notebook reads and writes, all derived from it.

    Profile settings are read through ``cfg.profile`` (``cfg.profile.analysis.n_bootstrap``,
    ``cfg.profile.out_path``): one spelling, nothing forwarded.
    """

    profile: Profile
    results_table: Path  # written by 03_measure, read by 04-06
    tables_dir: Path  # correlations.csv, permutation.csv
    figures_dir: Path  # <name>.png / <name>.svg
    progress: bool

    def table_path(self, name: str) -> Path:
        """Where a derived table is written, e.g. ``cfg.table_path("correlations.csv")``."""
        return self.tables_dir / name

    def __repr__(self) -> str:
        return (f"NotebookConfig(profile={self.profile.name!r}, results_table={short(self.results_table)!r}, "
                f"tables_dir={short(self.tables_dir)!r}, figures_dir={short(self.figures_dir)!r}, "
                f"progress={self.progress})")


def notebook_setup(profile: str | Profile, *, results_table: str | os.PathLike | None = None,
                   output_dir: str | os.PathLike | None = None, progress: bool = True,
                   style: bool = True) -> NotebookConfig:
    """The setup cell of every notebook: load the profile, derive its paths, apply the style.

    Defaults: table ``<root>/runs/<profile>/results.csv``, tables beside it, figures in
    ``<root>/figures/<profile>/``. ``output_dir`` moves tables there and figures to
    ``<output_dir>/figures/``. A ``results_table`` that is not this profile's own needs an
    ``output_dir`` (``UserError`` otherwise), so its figures never replace the profile's.
    """
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    default_table = results_table_for(prof.name)
    table = default_table if results_table is None else resolve(results_table).resolve()
    if output_dir is None:
        tables_dir, figures_dir = tables_dir_for(prof.name), figures_dir_for(prof.name)
        if table != default_table and _owner(table) != prof.name:
            owner = _owner(table)
            whose = f"profile {owner!r}'s table" if owner else "not a profile's own table"
            fix = (f"set profile = {owner!r}, or also pass output_dir" if owner
                   else "pass output_dir") + " = '<a folder of yours>' for its figures and tables"
            raise UserError(
                f"results_table {short(table)} is {whose}, but profile {prof.name!r} would write "
                f"figures and tables computed from it into {short(figures_dir)}/ and "
                f"{short(tables_dir)}/, replacing that profile's; {fix}")
    else:
        tables_dir = resolve(output_dir).resolve()
        figures_dir = figures_dir_in(tables_dir)
    _apply_kernel_threads()
    _unwrapped_table_text()
    if style:
        apply_style()
    return NotebookConfig(prof, table, tables_dir, figures_dir, bool(progress))


def _apply_kernel_threads() -> None:
    """Honour ``$LC_TORCH_THREADS`` in the notebook's kernel (see ``linguistic_collapse.lm.devices``)."""
    apply_thread_setting()


def _unwrapped_table_text() -> None:
    """Tables print as one block of columns: pandas wraps wide text at 80 characters, so a
    column one digit wider on another machine would move the others to another block."""
    # heavy (pandas): loaded only when the table is built
    import pandas as pd

    pd.set_option("display.expand_frame_repr", False)


# ---------------------------------------------------------------------------------------------


# Parameters and stamps


def stage_parameters(notebook: Path, available: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a notebook declares, taken from ``available``; refuses unknown names."""
    # notebook tooling: loaded only when notebooks are run or synced
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(declared) - set(PARAMETERS))
    if unknown:
        raise UserError(
            f"{notebook.name} declares parameters {unknown}; a notebook may declare only "
            f"{list(PARAMETERS)} and reads every other value from its profile "
            f"(paper.notebook_setup)")
    return {name: available[name] for name in declared if name in available}


# ---------------------------------------------------------------------------------------------
# Running the series


def partial_path(output: Path) -> Path:
    """Where a stage executes before it is renamed onto ``output`` (``.<stem>.partial.ipynb``)."""
    return output.with_name(f".{output.stem}.partial.ipynb")


def _running_cell(executed: Path) -> tuple[int | None, int | None]:
    """(index, execution count) of the last cell papermill started in an executed copy."""
    # notebook tooling: loaded only when notebooks are run or synced
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return None, None
    started = [(i, c.get("execution_count")) for i, c in enumerate(nb.cells)
               if c.metadata.get("papermill", {}).get("start_time")]  # status ends "completed"
    return started[-1] if started else (None, None)


def _point_at(executed: Path) -> None:
    """Record the executed copy's own path as its papermill output path (it ran as the partial
    file, whose name papermill recorded)."""
    # notebook tooling: loaded only when notebooks are run or synced
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    meta = nb.metadata.get("papermill", {})
    if meta.get("output_path"):
        meta["output_path"] = short(executed)
        atomic_write_text(executed, nbformat.writes(nb) + "\n")


def execute_stage(notebook: Path, output: Path, params: Mapping[str, Any]) -> None:
    """Execute one notebook with papermill into a partial file, renamed onto ``output`` when it
    ends (a killed run leaves the old executed copy); on failure name the notebook and cell."""
    # notebook tooling: loaded only when notebooks are run or synced
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(output)
    try:
        with kernel_environment():
            papermill.execute_notebook(
                str(notebook), str(partial), parameters=dict(params), kernel_name="python3",
                progress_bar=False, cwd=str(notebooks_dir()),
                # the kernel's "running over TCP without encryption" warning: local, not news
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
            )
        _finish(partial, output)
    except PapermillExecutionError as err:
        _finish(partial, output)
        raise RuntimeError(
            f"notebook {notebook.name} failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"the executed copy with the traceback is {output}"
        ) from err
    except DeadKernelError as err:
        cell, count = _running_cell(partial)
        _finish(partial, output)
        raise RuntimeError(
            f"notebook {notebook.name}: the kernel died in cell {cell} (execution count {count}) "
            f"({' '.join(str(err).split()) or 'no reason given'}; out of memory or killed?); "
            f"the executed copy up to that cell is {short(output)}") from err
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def kernel_environment() -> Iterator[None]:
    """The environment a notebook's kernel starts with: ``OMP_WAIT_POLICY=PASSIVE`` unless set
    (``linguistic_collapse.core.openmp``); the kernel inherits this process's environment, which
    is restored afterwards, so library callers of ``run_paper`` keep theirs."""
    had = os.environ.get(WAIT_POLICY_ENV)
    default_wait_policy()
    try:
        yield
    finally:
        if had is None:
            os.environ.pop(WAIT_POLICY_ENV, None)


def _finish(partial: Path, output: Path) -> None:
    """Normalise an executed partial copy and rename it onto ``output``."""
    if not partial.exists():
        return
    _normalise_executed(partial)
    os.replace(partial, output)
    _point_at(output)


def _normalise_executed(output: Path) -> None:
    """Drop what changes on every run of an executed copy (wall-clock times, this machine's
    paths) so re-running unchanged inputs rewrites the same bytes, outputs aside."""
    # notebook tooling: loaded only when notebooks are run or synced
    import nbformat

    if not output.exists():
        return
    nb = nbformat.read(output, as_version=4)
    meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration"):
        meta.pop(key, None)
    for key in ("input_path", "output_path"):
        if key in meta and meta[key]:
            meta[key] = short(meta[key])
    repo_relative_outputs(nb, (output_root(), repo_root()))
    nb.metadata.pop("widgets", None)  # live widget state: random model ids, no use on disk
    for i, cell in enumerate(nb.cells):
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"  # papermill draws a random id
        for j, out in enumerate(cell.get("outputs", [])):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is not None:  # the explorer: a stable id instead of a random one
                view["model_id"] = f"cell{i}-output{j}"
        cell.metadata.pop("execution", None)
        for key in ("start_time", "end_time", "duration"):
            cell.metadata.get("papermill", {}).pop(key, None)
    atomic_write_text(output, nbformat.writes(nb) + "\n")


def notebook_profile(path: Path, name: str) -> str:
    """The ``profile`` parameter each notebook loads: the name of a shipped profile
    (``profiles/<name>.yaml``), else the file's path (repository-relative inside it), so every
    notebook runs the very file the series was given, never ``profiles/<name>.yaml`` instead."""
    path, root = path.resolve(), repo_root()
    if path == (profiles_dir() / f"{name}.yaml").resolve():
        return name
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _relative(value: Any, prefixes: tuple[str, ...]) -> Any:
    """``value`` (output JSON) with every ``<root>/`` prefix removed from its strings."""
    if isinstance(value, str):
        for prefix in prefixes:
            value = value.replace(prefix, "")
        return value
    if isinstance(value, list):
        return [_relative(v, prefixes) for v in value]
    if isinstance(value, dict):
        return {k: _relative(v, prefixes) for k, v in value.items()}
    return value


def repo_relative_outputs(nb: Any, roots: tuple[str | os.PathLike, ...]) -> None:
    """Rewrite the paths under ``roots`` in ``nb``'s outputs relative to them, in place, so an
    executed copy names ``figures/smoke/x.png``, never the folder of the machine that ran it."""
    # notebook tooling: loaded only when notebooks are run or synced
    import nbformat

    prefixes = tuple(sorted({f"{Path(r)}/" for r in roots}, key=len, reverse=True))
    for cell in nb.cells:
        if "outputs" in cell:
            cell.outputs = [nbformat.from_dict(_relative(out, prefixes)) for out in cell.outputs]


@contextmanager
def kernels_root(root: Path) -> Iterator[None]:
    """Every notebook kernel started inside gets ``$LC_ROOT`` = ``root`` (kernels inherit this
    process's environment), so a kernel finds the checkout the series runs in and never guesses
    it from where the code lies (an editable install of another clone)."""
    before = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(root)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = before


def code_elsewhere_note(root: Path) -> str | None:
    """One line when the running code lies in another checkout than ``root``: the series still
    reads and writes only ``root``."""
    code = find_root(Path(__file__).resolve().parent)
    if code is None or code == root:
        return None
    return f"[paper] note: the code is {code}'s, the checkout is {root}: only {root} is written"


class StageInterrupted(KeyboardInterrupt):
    """Ctrl-C while a stage ran: carries the stage's name for the one line the CLI prints."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


def runner_lock(profile: Profile) -> Any:
    """The lock one ``paper`` runner of ``profile`` holds (``data/<profile>/.paper.lock``); it
    never waits: a second runner of the same profile is refused, other profiles run beside."""
    root = Layout(profile.out_path).root
    root.mkdir(parents=True, exist_ok=True)
    return FileLock(root / ".paper.lock", timeout=0)


def run_paper(profile_name: str, stages: tuple[str, ...] = STAGES, force: bool = False) -> list[str]:
    """Run the given stages in order for a profile, in the checkout you work in (``repo_root``),
    one runner per profile at a time (a second is refused in one line); returns the stages that
    actually ran."""
    root = repo_root()
    note = code_elsewhere_note(root)
    if note:
        print(note, flush=True)
    profile = load_profile(profile_name)
    lock = runner_lock(profile)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"another `paper` of profile {profile.name!r} is "
                        f"running (it holds {short(Path(lock.lock_file))}); wait for it to "
                        "finish, then run again (finished stages are kept)") from None
    try:
        with kernels_root(root):
            return _run_stages(profile_name, profile, stages, force)
    finally:
        lock.release()


def _run_stages(profile_name: str, profile: Profile, stages: tuple[str, ...], force: bool) -> list[str]:
    """``run_paper``'s loop over the stages, under the profile's runner lock (``profile``: the
    profile ``profile_name`` names, loaded once by ``run_paper``)."""
    for change in sync_notebooks():  # the .py twins are the source
        print(f"[paper] {change.describe()}", flush=True)
    available = {"profile": notebook_profile(profile_path(profile_name), profile.name),
                 "progress": False}
    layout = Layout(profile.out_path)
    previous, ran, code = "", [], lib_digest()
    for stage in STAGES:
        notebook = notebooks_dir() / f"{stage}.ipynb"
        params = stage_parameters(notebook, available)
        inputs = inputs_digest(stage_inputs(stage, profile, results_table_for(profile.name)))
        stamp = stage_stamp(notebook, params, profile_path(profile_name), previous, code,
                            str(output_root()), inputs)
        previous = stamp
        stamp_file = layout.stamp(stage)
        output = executed_notebook_for(profile.name, stage)
        up_to_date = stamp_file.exists() and stamp_file.read_text().strip() == stamp and output.exists()
        if stage not in stages or (up_to_date and not force):
            print(f"[paper] {stage}: {'up to date' if up_to_date else 'not selected'}", flush=True)
            continue
        start = time.perf_counter()
        print(f"[paper] {stage}: running ({profile.name})", flush=True)
        stamp_file.unlink(missing_ok=True)  # a killed or failed run is never "up to date"
        with ProgressWatcher(stage, stage_counter(stage, profile)):
            try:
                execute_stage(notebook, output, params)
            except KeyboardInterrupt:
                raise StageInterrupted(stage) from None
        atomic_write_text(stamp_file, stamp + "\n")  # only after the executed copy is in place
        print(f"[paper] {stage}: done in {hms(time.perf_counter() - start)} -> {short(output)}",
              flush=True)
        ran.append(stage)
    return ran


def print_rerun_summary(profile_name: str) -> None:
    """The run's last line: how many committed output files it changed and the largest relative
    change of a number in its tables, against the tolerance (``tables.reproduce.rerun_summary``)."""
    name = load_profile(profile_name).name
    print(f"[paper] against the committed outputs: {rerun_summary(repo_root(), output_root(), name)}",
          flush=True)


def register_cli(subparsers: Any) -> None:
    """``paper``: execute the notebook series for a profile."""
    p = subparsers.add_parser("paper", help="execute the notebook series for a profile")
    p.add_argument("--profile", default="cpu", type=profile_arg,
                   help="profile name (profiles/<name>.yaml) or path to a profile YAML file")
    p.add_argument("--stage", action="append", choices=STAGES, help="run only these stages")
    p.add_argument("--force", action="store_true", help="re-run stages even when up to date")
    p.add_argument("--sync-notebooks", action="store_true",
                   help="only rebuild notebooks/*.ipynb from their .py twins, then exit")
    p.set_defaults(func=_cli_paper)


def interrupted_line(err: KeyboardInterrupt) -> str:
    """The one line Ctrl-C of ``paper`` prints: the stage it stopped and that a rerun resumes."""
    where = f"stage {err.stage}" if isinstance(err, StageInterrupted) else "between stages"
    return (f"[paper] interrupted in {where} (Ctrl-C); nothing finished is lost: run the same "
            "command again to resume from that stage")


def _cli_paper(args: Any) -> int:
    try:
        if args.sync_notebooks:
            for change in sync_notebooks():
                print(f"[paper] {change.describe()}")
            return 0
        run_paper(args.profile, tuple(args.stage or STAGES), args.force)
        print_rerun_summary(args.profile)
    except UserError as err:
        print(f"[paper] error: {err}", flush=True)
        return 2
    except KeyboardInterrupt as err:
        print(interrupted_line(err), flush=True)
        return 130
    except OSError as err:
        if err.errno is None:  # lib's own "no such file; run X first" messages
            print(f"[paper] FAILED: {err}", flush=True)
            return 1
        print(f"[paper] error: {os_error_line(err)}", flush=True)
        return 2
    except RuntimeError as err:
        print(f"[paper] FAILED: {err}", flush=True)
        return 1
    return 0
