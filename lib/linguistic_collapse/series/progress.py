"""Progress of a running notebook stage, read from the files it writes (no torch): the counters
of the long stages and the watcher that prints ``[paper]`` progress lines while a stage runs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from linguistic_collapse.core.outputs import CHECKPOINT_PREFIX
from linguistic_collapse.core.paths import Layout
from linguistic_collapse.core.profiles import Profile

HEARTBEAT_S = 30.0


def hms(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def stage_counter(stage: str, profile: Profile) -> Callable[[], tuple[int, int, str, str]] | None:
    """For the long stages, a function returning (done, total, unit, current item)."""
    layout = Layout(profile.out_path)

    def latest(candidates: list[tuple[str, Path]]) -> str:
        live = [(p.stat().st_mtime, name) for name, p in candidates if p.exists()]
        return max(live)[1] if live else "-"

    if stage == "01_train":
        runs = profile.runs()

        def trained() -> tuple[int, int, str, str]:
            done, pending = 0, []
            for run in runs:
                try:
                    complete = json.loads(layout.results(run).read_text()).get("status") == "complete"
                except (OSError, ValueError):
                    complete = False
                done += complete
                if not complete:
                    pending.append((str(run), layout.run_dir(run)))
            return done, len(runs), "runs trained", latest(pending)

        return trained
    if stage == "03_measure":
        return measure_counter(profile)
    # (file that marks a checkpoint done, what shows it is under way: its stats folder exists)
    targets = {"02_collect": (layout.stats, lambda ck: layout.stats(ck).parent, "checkpoints collected")}
    if stage in targets:
        target, started, unit = targets[stage]
        cks = profile.checkpoints()

        def counted() -> tuple[int, int, str, str]:
            done = [target(ck).is_file() for ck in cks]
            pending = [(str(ck), started(ck)) for ck, d in zip(cks, done, strict=True) if not d]
            return sum(done), len(cks), unit, latest(pending)

        return counted
    if stage == "08_dynamics":
        return dynamics_counter(profile)
    return None


def measure_counter(profile: Profile) -> Callable[[], tuple[int, int, str, str]]:
    """03_measure's work: every checkpoint's measures, then the sensitivity draws (statistics
    collected again on subsamples and measured: one metrics file each)."""
    layout = Layout(profile.out_path)
    items = [(str(ck), layout.metrics(ck)) for ck in profile.checkpoints()]
    items += [(f"{ck} on {fraction:g} of its blocks, draw {draw}", layout.metrics(ck, fraction, draw))
              for ck in profile.sensitivity.checkpoints() for fraction in profile.sensitivity.fractions
              if fraction < 1 for draw in profile.sensitivity.draws_of(fraction)]

    def counted() -> tuple[int, int, str, str]:
        pending = [name for name, path in items if not path.is_file()]
        return len(items) - len(pending), len(items), "measured (checkpoints and sensitivity draws)", (
            pending[0] if pending else "-")

    return counted


class ProgressWatcher:
    """Prints ``[paper] <stage>: done/total unit · now <item> · elapsed · ETA`` while a stage
    runs: at once when the count moves (polled every ``poll_s``), and every ``heartbeat_s``."""

    def __init__(self, stage: str, counter: Callable[[], tuple[int, int, str, str]] | None,
                 heartbeat_s: float = HEARTBEAT_S, poll_s: float = 2.0,
                 emit: Callable[[str], None] | None = None) -> None:
        self.stage, self.counter = stage, counter
        self.heartbeat_s, self.poll_s = heartbeat_s, poll_s
        self.emit = emit or (lambda line: print(line, flush=True))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.start_time = time.monotonic()
        self.first_done: int | None = None

    def line(self) -> str:
        """The current progress line."""
        elapsed = time.monotonic() - self.start_time
        parts = [f"[paper] {self.stage}:"]
        if self.counter is not None:
            done, total, unit, current = self.counter()
            if self.first_done is None:
                self.first_done = done
            parts.append(f"{done}/{total} {unit}")
            if done < total and current != "-":
                parts.append(f"· now {current}")
            parts.append(f"· {hms(elapsed)} elapsed")
            new = done - self.first_done
            if done >= total:
                parts.append("· finishing")
            elif new > 0:
                parts.append(f"· ETA {hms(elapsed / new * (total - done))}")
        else:
            parts.append(f"running · {hms(elapsed)} elapsed")
        return " ".join(parts)

    def _loop(self) -> None:
        last_emit, last_count = time.monotonic(), None
        while not self._stop.wait(self.poll_s):
            count = self.counter()[0] if self.counter is not None else None
            now = time.monotonic()
            if count != last_count and last_count is not None or now - last_emit >= self.heartbeat_s:
                self.emit(self.line())
                last_emit = now
            last_count = count

    def __enter__(self) -> ProgressWatcher:
        if self.counter is not None:
            self.first_done = self.counter()[0]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def dynamics_counter(profile: Profile) -> Callable[[], tuple[int, int, str, str]]:
    """A function returning (done, total, unit, current run): snapshots saved plus snapshots
    measured, over twice the snapshots (epochs x points_per_epoch + 1 per run)."""
    layout, P = Layout(profile.out_path), profile.dynamics.points_per_epoch

    def count() -> tuple[int, int, str, str]:
        done, total, current = 0, 0, "-"
        for run in profile.dynamics.run_names():
            files, n = layout.dynamics(run), 2 * (run.epochs * P + 1)
            k = (len(list(Path(files.root).glob(f"{CHECKPOINT_PREFIX}*")))
                 + len(list(files.metrics_dir.glob("step-*.json"))))
            done, total = done + min(k, n), total + n
            current = str(run) if current == "-" and k < n else current
        return done, total, "snapshot steps (saved + measured)", current

    return count
