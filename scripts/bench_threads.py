"""Training speed alone and beside one competing CPU-bound process, OpenMP's default wait
policy against ``OMP_WAIT_POLICY=PASSIVE`` (the policy the CLI, the notebook kernels and the
Makefile set: ``linguistic_collapse.core.openmp``).

Run as ``.venv/bin/python scripts/bench_threads.py`` (``--quick`` for a tiny model and few
steps). The wait policy is read once, when OpenMP loads with torch, so every measurement is a
fresh child interpreter started with its own environment: ``default`` removes
``OMP_WAIT_POLICY``, ``PASSIVE`` sets it. torch keeps its default thread count. In one run the
measurements alternate, round after round: alone (default, PASSIVE), then with one competing
process (a busy loop in another interpreter, started before and stopped after), so drifting
machine load touches both policies alike. A child builds a GPT-Neo of the given depth and width
(``lm.gpt_neo``), takes ``warmup`` AdamW training steps on random tokens, then times ``steps``
steps; it prints its tokens/s. Printed per model: the median tokens/s of each (load, policy)
and the ratios

    passive_vs_default_competing   PASSIVE / default, with the competing process
    passive_vs_default_alone       PASSIVE / default, alone
    default_competing_vs_alone     default with competition / default alone
    passive_competing_vs_alone     PASSIVE with competition / PASSIVE alone

with the 1-minute load average at the start and end (other processes count as load too).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

LIB = Path(__file__).resolve().parent.parent / "lib"
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
POLICIES = ("default", "PASSIVE")
LOADS = ("alone", "competing")
# (n_layer, n_embd): the small and the large end of the cpu grid; vocabulary and context as cpu
FULL = {"models": ((1, 64), (4, 128)), "vocab": 2048, "ctx": 256, "batch": 16, "warmup": 3,
        "steps": 12, "rounds": 2}
QUICK = {"models": ((1, 16),), "vocab": 64, "ctx": 16, "batch": 2, "warmup": 1, "steps": 2,
         "rounds": 1}
BUSY_LOOP = "while True: pass"


def child(spec: dict) -> dict:
    """Tokens/s of ``steps`` AdamW training steps after ``warmup`` steps (in a fresh process)."""
    sys.path.insert(0, str(LIB))
    import torch
    from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config

    model = build_model(gpt_neo_config(spec["n_layer"], spec["n_embd"], spec["vocab"], spec["ctx"]), seed=0)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, spec["vocab"], (spec["batch"], spec["ctx"]), generator=gen)

    def step() -> None:
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(spec["warmup"]):
        step()
    start = time.perf_counter()
    for _ in range(spec["steps"]):
        step()
    seconds = time.perf_counter() - start
    return {"tokens_per_s": spec["steps"] * batch.numel() / seconds, "threads": torch.get_num_threads(),
            "policy": os.environ.get(WAIT_POLICY_ENV, "default")}


def policy_env(policy: str) -> dict[str, str]:
    """This environment with OpenMP's wait policy removed (``default``) or set."""
    env = {k: v for k, v in os.environ.items() if k != WAIT_POLICY_ENV}
    if policy != "default":
        env[WAIT_POLICY_ENV] = policy
    return env


def measure(spec: dict, policy: str) -> dict:
    """One child measurement under ``policy``."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=policy_env(policy),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ratios(tps: dict[tuple[str, str], float]) -> dict[str, float]:
    """The four ratios of the module docstring from median tokens/s per (load, policy)."""
    return {
        "passive_vs_default_competing": tps["competing", "PASSIVE"] / tps["competing", "default"],
        "passive_vs_default_alone": tps["alone", "PASSIVE"] / tps["alone", "default"],
        "default_competing_vs_alone": tps["competing", "default"] / tps["alone", "default"],
        "passive_competing_vs_alone": tps["competing", "PASSIVE"] / tps["alone", "PASSIVE"],
    }


def run(sizes: dict) -> dict[str, dict]:
    """Every model, alternating loads and policies round after round; medians and ratios."""
    samples: dict[tuple, list[float]] = {}
    threads = {}
    for _ in range(sizes["rounds"]):
        for load in LOADS:
            busy = (subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load == "competing" else None)
            try:
                for n_layer, n_embd in sizes["models"]:
                    spec = {k: sizes[k] for k in ("vocab", "ctx", "batch", "warmup", "steps")}
                    spec.update(n_layer=n_layer, n_embd=n_embd)
                    for policy in POLICIES:
                        got = measure(spec, policy)
                        threads[policy] = got["threads"]
                        samples.setdefault((n_layer, n_embd, load, policy), []).append(got["tokens_per_s"])
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    report = {}
    for n_layer, n_embd in sizes["models"]:
        tps = {(load, policy): statistics.median(samples[n_layer, n_embd, load, policy])
               for load in LOADS for policy in POLICIES}
        report[f"L{n_layer} d{n_embd}"] = {
            "tokens_per_s": {f"{load}/{policy}": round(v, 1) for (load, policy), v in tps.items()},
            **{k: float(f"{v:.3g}") for k, v in ratios(tps).items()}}  # 3 significant figures
    report["_threads"] = threads
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model, few steps, one round")
    parser.add_argument("--rounds", type=int, help="alternation rounds (default: 2, quick: 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the competing process too
    sizes = dict(QUICK if args.quick else FULL)
    if args.rounds:
        sizes["rounds"] = args.rounds
    load_before = os.getloadavg()[0]
    report = run(sizes)
    print(f"cores {os.cpu_count()}, torch threads {report.pop('_threads')}, "
          f"1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    for model, row in report.items():
        print(model, json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
