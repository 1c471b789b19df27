"""Speed and peak memory of statistics accumulation and NC measures against plain baselines.

Run as ``make bench`` (``.venv/bin/python scripts/bench.py``); ``--quick`` for a small smoke run.
Every measurement runs in a fresh spawned process, so its peak resident memory (ru_maxrss,
which sees torch allocations, unlike tracemalloc) is its own. Printed per measurement: wall
time, extra peak memory of the call itself (peak after the call minus peak before it, inputs
already built) and the process's whole peak. Each speed ratio of (a)-(c) is the median of
``ALTERNATIONS`` rounds in which both calls run alternately in one process, so that both see
the same machine load.

    (a) accumulation of class counts and feature sums: linguistic_collapse.nc.accumulate.accumulate_sums
        (bincount + index_add_) vs the authors' dense one-hot matrix product in chunks
    (b) the measures at K = 8192, D = 256: linguistic_collapse.nc.measure.measure_stats vs pairwise
        differences broadcast in row chunks
    (c) the whole suite at the paper's K = 29,233, D = 1024, against the time of one
        float64 symmetric Gram matrix (the floor of any exact method using symmetry)
    (d) collection throughput: linguistic_collapse.pipeline.collect.collect_model_stats (train and validation passes)
        of a small GPT-Neo (width 128, 2 layers, vocabulary 2048, context 128) against the same
        model's plain forward pass over the same blocks (torch.no_grad, same batch size), in one
        process, alternating, best of ``COLLECT_REPEATS``; prints ``collect_vs_forward <ratio>``
        (collection tokens/s / forward tokens/s)
    (e) per-layer statistics: collect_model_stats of a GPT-Neo of 4 layers (width 128,
        vocabulary 2048, context 128) with ``layers="all"`` (5 residual streams gathered in the
        same forward pass) against top-layer-only collection, both passes, same blocks, in one
        process, alternating, best of ``COLLECT_REPEATS``; prints ``layers_all_vs_top <ratio>``
        (wall time with layers / wall time without)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))  # the package from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402

FULL = {"acc": (8192, 256, 131_072), "pair": (8192, 256), "suite": (29_233, 1024),
        "collect": (360, 40), "layers": (360, 40)}  # collect: train and validation blocks (9:1)
QUICK = {"acc": (1024, 64, 16_384), "pair": (512, 32), "suite": (2048, 128), "collect": (45, 5),
         "layers": (45, 5)}
TARGETS = {"acc_speedup": 100.0, "pair_speedup": 50.0, "rel_diff": 1e-6,
           "suite_s": 30.0, "suite_mb": 1024.0, "collect_vs_forward": 0.7}
COLLECT_MODEL = {"n_layer": 2, "n_embd": 128, "vocab_size": 2048, "n_ctx": 128}
LAYERS_MODEL = {**COLLECT_MODEL, "n_layer": 4}
COLLECT_BATCH, COLLECT_REPEATS = 32, 3  # (e) alternates 2 x COLLECT_REPEATS runs
ALTERNATIONS = 3  # (a)-(c): rounds of the two timed calls, alternating; the median ratio counts
WARMUP = {2: (16, 8), 3: (64, 8, 256)}  # tiny (K, D) or (K, D, N), by number of arguments
ONEHOT_CHUNK = 1024  # tokens per one-hot block in the baseline accumulation
ROW_CHUNK = 16  # rows per broadcast block in the baseline measures (16 x K x D float64)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _measured(task: str, args: tuple) -> dict:
    """Child process body: warm up on tiny inputs (first-call costs of torch kernels and MKL),
    build the inputs, then time one call and read its peak memory."""
    make, call = TASKS[task]
    call(*make(*WARMUP[len(args)]))
    inputs = make(*args)
    before = _peak_mb()
    start, cpu = time.perf_counter(), time.process_time()
    result = call(*inputs)
    return {"seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu,
            "extra_mb": _peak_mb() - before, "peak_mb": _peak_mb(), "result": result}


def run_isolated(task: str, *args) -> dict:
    """One measurement in a fresh spawned interpreter."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_measured, task, args).result()


def _alternated(tasks: tuple[str, str], args: tuple, repeats: int) -> list[float]:
    """Child process body: warm both tasks up, then time them alternately ``repeats`` times
    (fresh inputs each call, built outside the clock); returns the per-round ratios of wall
    times, first task / second task."""
    for task in tasks:
        make, call = TASKS[task]
        call(*make(*WARMUP[len(args)]))
    ratios = []
    for _ in range(repeats):
        seconds = []
        for task in tasks:
            make, call = TASKS[task]
            inputs = make(*args)
            start = time.perf_counter()
            call(*inputs)
            seconds.append(time.perf_counter() - start)
        ratios.append(seconds[0] / seconds[1])
    return ratios


def median_ratio(first: str, second: str, *args) -> float:
    """The median over ``ALTERNATIONS`` rounds of (wall time of ``first``) / (wall time of
    ``second``), both run alternately in one fresh process: both see the same machine load,
    so the ratio does not follow it."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return float(np.median(pool.submit(_alternated, (first, second), args,
                                           ALTERNATIONS).result()))


# ---------------------------------------------------------------------------------------------
# (a) accumulation


def make_tokens(K: int, D: int, N: int) -> tuple:
    """Features (N, D) float32 and Zipf-distributed labels (N,) over K classes, like tokens."""
    import linguistic_collapse.nc.accumulate  # noqa: F401  (imported before the clock starts)

    g = torch.Generator().manual_seed(0)
    p = 1.0 / torch.arange(1, K + 1, dtype=torch.float64)
    labels = torch.multinomial(p, N, replacement=True, generator=g)  # (N,)
    features = torch.randn(N, D, generator=g)
    return features, labels, torch.zeros(K, dtype=torch.int64), torch.zeros(K, D, dtype=torch.float64)


def ours_accumulate(features, labels, counts, sums) -> tuple:
    from linguistic_collapse.nc.accumulate import accumulate_sums

    accumulate_sums(features, labels, counts, sums)
    return counts.numpy(), sums.numpy()


def onehot_accumulate(features, labels, counts, sums) -> tuple:
    """The authors' approach: a dense (tokens x classes) one-hot matrix product per chunk."""
    K = counts.shape[0]
    for lo in range(0, len(labels), ONEHOT_CHUNK):
        onehot = torch.nn.functional.one_hot(labels[lo:lo + ONEHOT_CHUNK], K).double()  # (n, K)
        sums += onehot.T @ features[lo:lo + ONEHOT_CHUNK].double()  # (K, D)
        counts += onehot.sum(dim=0).long()
    return counts.numpy(), sums.numpy()


# ---------------------------------------------------------------------------------------------
# (b), (c) measures


def make_stats(K: int, D: int) -> tuple:
    """Random statistics of K classes (all with count >= 1), float64 sums, float32 head."""
    import linguistic_collapse.nc.measure  # noqa: F401  (imported before the clock starts)

    g = torch.Generator().manual_seed(1)
    counts = torch.randint(1, 1000, (K,), generator=g)
    sums = torch.randn(K, D, generator=g, dtype=torch.float64).add_(0.5).mul_(counts[:, None])
    stats = {"counts": counts, "sums": sums,
             "sq_dev": torch.rand(K, generator=g, dtype=torch.float64) * counts,
             "val_counts": counts.clone(), "val_agree": counts // 2,
             "lm_head": torch.randn(K, D, generator=g)}
    return (stats,)


def ours_measures(stats) -> dict:
    from linguistic_collapse.nc.measure import measure_stats

    return measure_stats(stats)[0]


def _class_level(stats) -> tuple[np.ndarray, ...]:
    N = stats["counts"].numpy().astype(np.float64)
    mu = stats["sums"].numpy() / N[:, None]  # (K, D)
    M = mu - mu.mean(axis=0)
    return mu, M, np.linalg.norm(M, axis=1), stats["sq_dev"].numpy() / N


def broadcast_measures(stats) -> dict:
    """Plain baseline: explicit pairwise differences (ROW_CHUNK x K x D) for every pair c < c'."""
    mu, M, norms, s2 = _class_level(stats)
    U = M / norms[:, None]
    K = len(mu)
    cdnv = galanti = 0.0
    cos_all, logk_all = [], []
    for lo in range(0, K, ROW_CHUNK):
        rows = np.arange(lo, min(lo + ROW_CHUNK, K))
        upper = np.arange(K)[None, :] > rows[:, None]  # (r, K): pairs c < c'
        d2 = np.square(mu[rows, None, :] - mu[None, :, :]).sum(axis=-1)[upper]
        h = np.sqrt(np.square(U[rows, None, :] - U[None, :, :]).sum(axis=-1))[upper]
        cos = (M[rows, None, :] * M[None, :, :]).sum(axis=-1) / np.outer(norms[rows], norms)
        s_pair = (s2[rows, None] + s2[None, :])[upper]
        cdnv += np.sum(s_pair / (2 * d2**2))
        galanti += np.sum(s_pair / (2 * d2))
        cos_all.append(cos[upper])
        logk_all.append(np.log(1 / h))
    cos, logk = np.concatenate(cos_all), np.concatenate(logk_all)
    W = stats["lm_head"].numpy().astype(np.float64)
    dual = np.sum(W * M, axis=1) / (np.linalg.norm(W, axis=1) * norms)
    n_pairs = K * (K - 1) / 2
    return {
        "nc1_cdnv": cdnv / n_pairs, "nc1_cdnv_galanti": galanti / n_pairs,
        "nc2_norm_cv": norms.std() / norms.mean(),
        "nc2_lognorm_cv": np.log(norms).std() / np.log(norms).mean(),
        "nc2_interference_mean": cos.mean(), "nc2_interference_std": cos.std(),
        "gnc2_logkernel_mean": logk.mean(), "gnc2_logkernel_var": logk.var(),
        "nc3_duality_mean": dual.mean(), "unc3_duality_cv": dual.std() / abs(dual.mean()),  # on |mean|, as the registry
        "nc4_agreement": stats["val_agree"].sum().item() / stats["val_counts"].sum().item(),
    }


def make_unit_means(K: int, D: int) -> tuple:
    import linguistic_collapse.nc.measure  # noqa: F401
    M = torch.randn(K, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return (M / M.norm(dim=1, keepdim=True),)


def gram_floor(U) -> None:
    """One symmetric float64 Gram matrix: the matmuls of the suite's tiles (j >= i), alone."""
    from linguistic_collapse.nc.pairwise import _tiles

    tile = min(2048, len(U))
    out = torch.empty(tile * tile, dtype=torch.float64)
    for ri, rj in _tiles(len(U), tile):
        torch.mm(U[ri], U[rj].T, out=out[: (ri.stop - ri.start) * (rj.stop - rj.start)]
                 .view(ri.stop - ri.start, rj.stop - rj.start))


TASKS: dict[str, tuple[Callable, Callable]] = {
    "acc_ours": (make_tokens, ours_accumulate),
    "acc_onehot": (make_tokens, onehot_accumulate),
    "pair_ours": (make_stats, ours_measures),
    "pair_broadcast": (make_stats, broadcast_measures),
    "suite": (make_stats, ours_measures),
    "gram": (make_unit_means, gram_floor),
}


# ---------------------------------------------------------------------------------------------
# (d) collection throughput


def _forward_only(model, blocks: list[np.ndarray], batch: int) -> int:
    """The plain forward pass (final features, no statistics) over every block; returns tokens."""
    from linguistic_collapse.lm.head import final_features

    tokens = 0
    with torch.no_grad():
        for split in blocks:
            for lo in range(0, len(split), batch):
                ids = torch.from_numpy(np.asarray(split[lo:lo + batch], dtype=np.int64))
                final_features(model, ids)
                tokens += ids.shape[0] * (ids.shape[1] - 1)
    return tokens


def _bench_model_and_blocks(c: dict, n_train: int, n_val: int) -> tuple:
    """A seeded GPT-Neo of config ``c`` and Zipf-distributed random blocks (n, T) of it."""
    from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config

    model = build_model(gpt_neo_config(c["n_layer"], c["n_embd"], c["vocab_size"], c["n_ctx"]),
                        seed=0).eval()
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, c["vocab_size"] + 1)
    train, val = (rng.choice(c["vocab_size"], (n, c["n_ctx"]), p=p / p.sum()).astype(np.int32)
                  for n in (n_train, n_val))
    return model, train, val


def layers_vs_top(n_train: int, n_val: int, threads: int = 1, config: dict | None = None) -> dict:
    """Child process body: best-of-``COLLECT_REPEATS`` wall times of collect_model_stats (both
    passes) with ``layers="all"`` and without layers, alternating, on ``threads`` threads."""
    import tempfile

    torch.set_num_threads(threads)
    from linguistic_collapse.pipeline.collect import collect_model_stats

    model, train, val = _bench_model_and_blocks(config or LAYERS_MODEL, n_train, n_val)
    times: dict[str, list[float]] = {"top": [], "all": [], "top_cpu": [], "all_cpu": []}
    with tempfile.TemporaryDirectory() as tmp:
        collect_model_stats(model, train[:COLLECT_BATCH], val[:4], Path(tmp) / "warm.safetensors",
                            batch_size=COLLECT_BATCH, progress=False, layers="all")  # warm-up
        for r in range(COLLECT_REPEATS):
            for name, spec in (("top", None), ("all", "all")):
                start, cpu = time.perf_counter(), time.process_time()
                collect_model_stats(model, train, val, Path(tmp) / f"{name}{r}.safetensors",
                                    batch_size=COLLECT_BATCH, progress=False, layers=spec)
                times[name].append(time.perf_counter() - start)
                times[f"{name}_cpu"].append(time.process_time() - cpu)
    return times


def bench_layers(n_train: int, n_val: int, threads: int = 1) -> None:
    c = LAYERS_MODEL
    print(f"(e) per-layer statistics: GPT-Neo L{c['n_layer']} d{c['n_embd']} V{c['vocab_size']} "
          f"T{c['n_ctx']}, {n_train} train + {n_val} validation blocks, batch {COLLECT_BATCH}, "
          f"{threads} thread(s); layers=all gathers {c['n_layer'] + 1} residual streams")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        t = pool.submit(layers_vs_top, n_train, n_val, threads).result()
    ratio, cpu_ratio = min(t["all"]) / min(t["top"]), min(t["all_cpu"]) / min(t["top_cpu"])
    print(f"  top only: runs {', '.join(f'{s:.2f}' for s in t['top'])} s; layers=all: runs "
          f"{', '.join(f'{s:.2f}' for s in t['all'])} s; extra {100 * (ratio - 1):.1f} % of "
          f"collection wall time (process time: {100 * (cpu_ratio - 1):.1f} %, best "
          f"{min(t['top_cpu']):.2f} s vs {min(t['all_cpu']):.2f} s)")
    print(f"layers_all_vs_top {ratio:.3f}")


def collect_vs_forward(n_train: int, n_val: int, threads: int = 1) -> dict:
    """Child process body: best-of-``COLLECT_REPEATS`` wall times of collect_model_stats (both
    passes, from nothing to the finished file) and of the plain forward pass, alternating so
    that both see the same machine load, on ``threads`` torch threads. Blocks: Zipf-distributed
    random token ids."""
    import tempfile

    torch.set_num_threads(threads)
    from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config
    from linguistic_collapse.nc.stats_file import load_stats_metadata
    from linguistic_collapse.pipeline.collect import collect_model_stats

    c = COLLECT_MODEL
    model = build_model(gpt_neo_config(c["n_layer"], c["n_embd"], c["vocab_size"], c["n_ctx"]),
                        seed=0).eval()
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, c["vocab_size"] + 1)
    train, val = (rng.choice(c["vocab_size"], (n, c["n_ctx"]), p=p / p.sum()).astype(np.int32)
                  for n in (n_train, n_val))  # (n, T) each
    _forward_only(model, [train[:COLLECT_BATCH]], COLLECT_BATCH)  # warm-up
    fwd, col = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(COLLECT_REPEATS):
            start = time.perf_counter()
            fwd_tokens = _forward_only(model, [train, val], COLLECT_BATCH)
            fwd.append(time.perf_counter() - start)
            out = Path(tmp) / f"stats{r}.safetensors"
            start = time.perf_counter()
            collect_model_stats(model, train, val, out, batch_size=COLLECT_BATCH, progress=False)
            col.append(time.perf_counter() - start)
        meta = load_stats_metadata(out)
    col_tokens = int(meta["pass1_tokens"]) + int(meta["pass2_tokens"])
    return {"forward_tok_s": fwd_tokens / min(fwd), "collect_tok_s": col_tokens / min(col),
            "forward_s": fwd, "collect_s": col, "tokens": col_tokens}


def bench_collect(n_train: int, n_val: int, threads: int = 1) -> None:
    c = COLLECT_MODEL
    print(f"(d) collection throughput: GPT-Neo L{c['n_layer']} d{c['n_embd']} V{c['vocab_size']}"
          f" T{c['n_ctx']}, {n_train} train + {n_val} validation blocks, batch {COLLECT_BATCH}, "
          f"{threads} thread(s)")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        r = pool.submit(collect_vs_forward, n_train, n_val, threads).result()
    ratio = r["collect_tok_s"] / r["forward_tok_s"]
    print(f"  forward {r['forward_tok_s']:,.0f} tok/s (runs {', '.join(f'{s:.2f}' for s in r['forward_s'])} s); "
          f"collect {r['collect_tok_s']:,.0f} tok/s (runs {', '.join(f'{s:.2f}' for s in r['collect_s'])} s); "
          f"target ratio >= {TARGETS['collect_vs_forward']}: "
          f"{verdict(ratio >= TARGETS['collect_vs_forward'])}")
    print(f"collect_vs_forward {ratio:.3f}")


# ---------------------------------------------------------------------------------------------
# Report


def rel_diff_arrays(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference relative to the largest magnitude of the reference."""
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def rel_diff_measures(a: dict, b: dict) -> tuple[float, str]:
    """Largest relative difference over every measure, and which measure it is."""
    diffs = {k: abs(a[k] - b[k]) / max(abs(b[k]), 1e-300) for k in b}
    worst = max(diffs, key=diffs.get)
    return diffs[worst], worst


def line(name: str, r: dict) -> str:
    return (f"  {name:<22} {r['seconds']:9.3f} s (cpu {r['cpu_s']:8.3f} s)   "
            f"extra peak {r['extra_mb']:7.1f} MB   process peak {r['peak_mb']:7.1f} MB")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def bench_accumulation(K: int, D: int, N: int) -> None:
    print(f"(a) accumulation of counts and sums: K={K}, D={D}, {N} tokens")
    ours, base = run_isolated("acc_ours", K, D, N), run_isolated("acc_onehot", K, D, N)
    print(line("ours (index_add_)", ours))
    print(line("one-hot matmul", base))
    speedup = median_ratio("acc_onehot", "acc_ours", K, D, N)
    counts_equal = np.array_equal(ours["result"][0], base["result"][0])
    diff = rel_diff_arrays(ours["result"][1], base["result"][1])
    print(f"  speed-up {speedup:.1f}x (median of {ALTERNATIONS} alternating rounds; target >= {TARGETS['acc_speedup']:.0f}x: "
          f"{verdict(speedup >= TARGETS['acc_speedup'])}); counts equal: {counts_equal}; "
          f"max relative difference of sums {diff:.2e} "
          f"({verdict(diff <= TARGETS['rel_diff'] and counts_equal)})")


def bench_pairwise(K: int, D: int) -> None:
    print(f"(b) measures: K={K}, D={D} ({K * (K - 1) // 2} pairs)")
    ours, base = run_isolated("pair_ours", K, D), run_isolated("pair_broadcast", K, D)
    print(line("ours (tiled Gram)", ours))
    print(line(f"broadcast ({ROW_CHUNK} rows)", base))
    speedup = median_ratio("pair_broadcast", "pair_ours", K, D)
    diff, worst = rel_diff_measures(ours["result"], base["result"])
    print(f"  speed-up {speedup:.1f}x (median of {ALTERNATIONS} alternating rounds; target >= {TARGETS['pair_speedup']:.0f}x: "
          f"{verdict(speedup >= TARGETS['pair_speedup'])}); max relative difference over all "
          f"measures {diff:.2e} in {worst} ({verdict(diff <= TARGETS['rel_diff'])})")


def bench_suite(K: int, D: int) -> None:
    print(f"(c) whole measure suite: K={K}, D={D}")
    suite, gram = run_isolated("suite", K, D), run_isolated("gram", K, D)
    print(line("measure_stats", suite))
    print(line("Gram floor (matmuls)", gram))
    floor = median_ratio("suite", "gram", K, D)
    print(f"  {suite['seconds']:.1f} s = {floor:.2f}x the Gram floor (median of {ALTERNATIONS} "
          f"alternating rounds); target < {TARGETS['suite_s']:.0f} s: "
          f"{verdict(suite['seconds'] < TARGETS['suite_s'])}; extra peak memory "
          f"{suite['extra_mb']:.0f} MB, target < {TARGETS['suite_mb']:.0f} MB: "
          f"{verdict(suite['extra_mb'] < TARGETS['suite_mb'])} (process peak with its inputs "
          f"{suite['peak_mb']:.0f} MB: {verdict(suite['peak_mb'] < TARGETS['suite_mb'])})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", choices=["acc", "pair", "suite", "collect", "layers"], nargs="*",
                        help="run only these parts (default: all)")
    parser.add_argument("--collect-threads", type=int, default=1,
                        help="torch threads for (d) (default 1: on shared cores more threads "
                        "make both timings erratic, the ratio meaningless)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f} (other work on the cores inflates wall times; cpu = process "
          "time of all threads)"
          + ("\nquick sizes: a smoke run, the targets are for the full sizes" if args.quick else ""))
    parts = {"acc": bench_accumulation, "pair": bench_pairwise, "suite": bench_suite,
             "collect": bench_collect, "layers": bench_layers}
    for name in args.only or parts:
        extra = (args.collect_threads,) if name in ("collect", "layers") else ()
        parts[name](*sizes[name], *extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
