"""A GPU check of the paper's CUDA path, ready to run (``scripts/gpu_check.sh``), offline.

On one CUDA GPU (within 8 minutes): tokenizes the local TinyStories text with the paper's
tokenizer (GPT-2's 50,257-token BPE, built offline by ``linguistic_collapse.lm.gpt2_bpe`` from
``data/gpt2-bpe/gpt2.tiktoken``, so the LM head has the paper's size), trains one paper-like GPT-Neo (4 layers, width 512, context 512) for a few hundred steps in bf16
autocast with fused AdamW and flash attention when ``flash_attn`` is importable, collects its
statistics (``linguistic_collapse.pipeline.collect.collect_model_stats``) and measures them
(``linguistic_collapse.nc.measure.measure_stats``), and prints training tokens/s, model FLOP utilisation
(6·N·tokens/s over the GPU's peak dense bf16 FLOP/s), peak GPU memory, collection tokens/s, and
the largest relative difference between the measures of the CUDA and a CPU collection of the
same checkpoint on the same blocks.

Without CUDA (or with ``--device cpu``) the same steps run on CPU at a tiny size (a 384-token
BPE trained on the text, 1 layer, width 32, context 64, 20 steps, 16 blocks) so CI runs it; the CUDA-vs-CPU line then compares two
CPU collections with different batch sizes instead.

Text: ``--text PATH`` (a folder with train.txt and validation.txt, or one .txt file whose last
tenth of lines is the validation text); default ../shared/data/tinystories, then
data/tinystories. Every line starting with a lower-case key and a colon is a result line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "lib"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of the device name.
PEAK_BF16 = [
    ("GB200", 2.5e15), ("B200", 2.25e15), ("H200", 989e12), ("H100", 989e12), ("H800", 989e12),
    ("GH200", 989e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L40", 181e12),
    ("A6000", 155e12), ("L4", 121e12), ("A10G", 70e12), ("A10", 125e12),
]


@dataclass
class Size:
    n_layer: int
    width: int
    context: int
    vocab: int
    steps: int
    batch: int
    lr: float
    compare_train_blocks: int  # CUDA vs CPU collection on these train blocks
    compare_val_blocks: int
    throughput_train_blocks: int  # CUDA collection throughput
    max_train_lines: int | None
    max_val_lines: int | None
    tokenizer: str = "bpe"  # "gpt2-bpe": the paper's GPT-2 BPE (vocab ignored); "bpe": trained


GPU_SIZE = Size(4, 512, 512, 50257, 300, 32, 1e-3, 256, 64, 2048, None, None, "gpt2-bpe")
CPU_SIZE = Size(1, 32, 64, 384, 20, 8, 3e-3, 16, 8, 16, 3000, 400)


def log(key: str, text: str) -> None:
    print(f"{key}: {text}", flush=True)


def peak_flops(device_name: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    for key, peak in PEAK_BF16:
        if key.lower() in device_name.lower():
            return peak
    return None


def find_text(arg: str | None) -> tuple[list[str], list[str], str]:
    """(train lines, validation lines, where) or SystemExit(2) with the fix."""
    if arg is not None:
        candidates = [Path(arg).expanduser()]
    else:
        candidates = [REPO.parent / "shared" / "data" / "tinystories", REPO / "data" / "tinystories"]
    for p in candidates:
        if p.is_dir() and (p / "train.txt").is_file() and (p / "validation.txt").is_file():
            return _lines(p / "train.txt"), _lines(p / "validation.txt"), str(p)
        if p.is_file():
            lines = _lines(p)
            cut = max(1, len(lines) // 10)
            if len(lines) < 2:
                break
            return lines[:-cut], lines[-cut:], str(p)
    where = " or ".join(str(c) for c in candidates)
    raise SystemExit(f"gpu_check: error: no text at {where}: put TinyStories train.txt and "
                     "validation.txt there, or pass --text PATH (a folder with train.txt and "
                     "validation.txt, or one .txt file)")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def flash_attention_status(device: torch.device) -> tuple[str, str]:
    """(attn_implementation, message)."""
    if device.type != "cuda":
        return "eager", "not used (CPU run; attention: eager)"
    if importlib.util.find_spec("flash_attn") is None:
        return "eager", ("NOT USED: the flash_attn package is not installed (attention: eager; "
                         "pip install flash-attn for the paper profile's speed)")
    try:
        import flash_attn
    except Exception as err:  # installed but broken (e.g. built for another torch)
        return "eager", f"NOT USED: flash_attn failed to import ({type(err).__name__}: {err})"
    from transformers.utils import is_flash_attn_2_available

    version = getattr(flash_attn, "__version__", "?")
    if not is_flash_attn_2_available():
        return "eager", (f"NOT USED: transformers does not accept flash_attn {version} "
                         "(is_flash_attn_2_available() is False)")
    return "flash_attention_2", f"used (flash_attn {version})"


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train(model, blocks: np.ndarray, size: Size, device: torch.device, max_seconds: float,
          seed: int = 0) -> dict:
    """``size.steps`` AdamW steps (fused on CUDA) on random batches; linear warmup and decay."""
    data = torch.from_numpy(blocks.astype(np.int64)).to(device)  # (n, T)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    other = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": other, "weight_decay": 0.0}], lr=size.lr,
                            betas=(0.9, 0.95), fused=device.type == "cuda")
    warm = max(1, size.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (size.steps - s) / (size.steps - warm + 1))))
    model.train()
    losses, tokens, steps, timed_tokens, timed_s = [], 0, 0, 0, 0.0
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for step in range(size.steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, data.shape[0], (size.batch,), generator=gen)
        ids = data[idx.to(device)]  # (B, T)
        with autocast(device):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == size.steps - 1:
            losses.append((step, loss.item()))
        sync()
        tokens += ids.numel()
        steps += 1
        if step >= min(5, size.steps // 4):  # skip warm-up steps (allocator, kernels)
            timed_tokens += ids.numel()
            timed_s += time.perf_counter() - t0
        if time.perf_counter() - start > max_seconds:
            break
    model.eval()
    return {"steps": steps, "tokens": tokens, "seconds": time.perf_counter() - start,
            "tokens_per_s": timed_tokens / timed_s if timed_s else tokens / (time.perf_counter() - start),
            "first_loss": losses[0][1], "last_loss": loss.item()}


@torch.no_grad()
def val_loss(model, blocks: np.ndarray, device: torch.device, batch: int) -> float:
    nll, n = 0.0, 0
    for a in range(0, len(blocks), batch):
        ids = torch.from_numpy(blocks[a:a + batch].astype(np.int64)).to(device)
        with autocast(device):
            logits = model(input_ids=ids).logits[:, :-1].float()
        nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 ids[:, 1:].reshape(-1), reduction="sum").item()
        n += ids[:, 1:].numel()
    return nll / n


def collect_and_measure(model, train_blocks, val_blocks, out: Path, device: str,
                        batch: int) -> tuple[dict, float, int]:
    """(measures, seconds, tokens) of one collection of ``model`` on ``device``."""
    from linguistic_collapse.nc.measure import measure_stats
    from linguistic_collapse.pipeline.collect import collect_model_stats
    from safetensors.torch import load_file

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    collect_model_stats(model, np.ascontiguousarray(train_blocks), np.ascontiguousarray(val_blocks),
                        out, batch_size=batch, device=device, progress=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    T = train_blocks.shape[1]
    tokens = (len(train_blocks) + len(val_blocks)) * (T - 1)  # feature/label pairs of the data
    return measure_stats(load_file(str(out)), device="cpu")[0], seconds, tokens


def max_rel_diff(a: dict, b: dict) -> tuple[float, str]:
    worst, which = 0.0, "-"
    for k in a:
        x, y = float(a[k]), float(b[k])
        if not (math.isfinite(x) and math.isfinite(y)):
            return math.inf, k
        d = abs(x - y) / max(abs(x), abs(y), 1e-12)
        if d > worst:
            worst, which = d, k
    return worst, which


def cpu_copy(model, config_kwargs: dict):
    """The same checkpoint as an eager-attention float32 model on CPU."""
    from linguistic_collapse.lm.gpt_neo import build_model, gpt_neo_config

    cpu = build_model(gpt_neo_config(**{**config_kwargs, "attn_implementation": "eager"}))
    cpu.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    return cpu.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", help="folder with train.txt + validation.txt, or one .txt file")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--steps", type=int, help="training steps (default 300 on CUDA, 20 on CPU)")
    p.add_argument("--peak-tflops", type=float,
                   help="the GPU's peak dense bf16 TFLOP/s (default: from the device name)")
    p.add_argument("--max-train-seconds", type=float, default=180.0)
    p.add_argument("--out", help="folder for the tokenizer, checkpoint, stats and summary JSON "
                                 "(default: a temporary folder)")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if args.device == "cuda" and not cuda:
        raise SystemExit("gpu_check: error: --device cuda but torch.cuda.is_available() is False "
                         f"(torch {torch.__version__})")
    device = torch.device("cuda" if cuda else "cpu")
    size = GPU_SIZE if cuda else CPU_SIZE
    if args.steps:
        size = replace(size, steps=args.steps)
    name = torch.cuda.get_device_name(0) if cuda else "CPU"
    import transformers

    log("device", f"{device.type} ({name}), torch {torch.__version__}, transformers "
        f"{transformers.__version__}" + ("" if cuda else " — no CUDA: tiny CPU form"))
    if not cuda and args.device == "auto" and shutil.which("nvidia-smi"):
        log("warning", f"a GPU is present (nvidia-smi) but torch {torch.__version__} sees no CUDA "
            "device: install a CUDA build of torch (e.g. pip install torch --index-url "
            "https://download.pytorch.org/whl/cu128) and rerun; running the tiny CPU form")
    train_txt, val_txt, where = find_text(args.text)
    train_txt = train_txt[:size.max_train_lines] if size.max_train_lines else train_txt
    val_txt = val_txt[:size.max_val_lines] if size.max_val_lines else val_txt
    log("text", f"{where}: {len(train_txt):,} train lines, {len(val_txt):,} validation lines")

    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        out.mkdir(parents=True, exist_ok=True)
        summary = run(args, size, device, name, train_txt, val_txt, out)
        summary["wall_seconds"] = time.perf_counter() - t_start
        (out / "gpu_check.json").write_text(json.dumps(summary, indent=2, default=str))
    log("done", f"in {time.perf_counter() - t_start:.1f} s")
    return 0


def run(args, size: Size, device: torch.device, name: str, train_txt, val_txt, out: Path) -> dict:
    import warnings

    from linguistic_collapse.lm.data import tokenize_blocks, train_bpe_tokenizer
    from linguistic_collapse.lm.gpt_neo import build_model, count_params, gpt_neo_config
    from linguistic_collapse.lm.loading import quiet_transformers

    cuda = device.type == "cuda"
    t0 = time.perf_counter()
    if size.tokenizer == "gpt2-bpe":
        from linguistic_collapse.lm.gpt2_bpe import gpt2_tokenizer

        tok, what = gpt2_tokenizer(), "GPT-2 byte-level BPE (the paper's)"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a small text may stop short of the vocabulary size
            tok, what = train_bpe_tokenizer(train_txt, size.vocab, out / "tokenizer"), "byte-level BPE"
    train_blocks = tokenize_blocks(train_txt, tok, size.context, progress=False)
    val_blocks = tokenize_blocks(val_txt, tok, size.context, progress=False)
    log("tokenizer", f"{what} of {len(tok):,} tokens in {time.perf_counter() - t0:.1f} s; "
        f"{len(train_blocks):,} train and {len(val_blocks):,} validation blocks of {size.context}")

    attn, flash_msg = flash_attention_status(device)
    log("flash attention", flash_msg)
    cfg = {"n_layer": size.n_layer, "n_embd": size.width, "vocab_size": len(tok),
           "n_ctx": size.context, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id}
    try:
        model = build_model(gpt_neo_config(**cfg, attn_implementation=attn), seed=0).to(device)
    except (ImportError, ValueError) as err:
        log("flash attention", f"NOT USED after all: {type(err).__name__}: {err}")
        attn = "eager"
        model = build_model(gpt_neo_config(**cfg, attn_implementation=attn), seed=0).to(device)
    n_params = count_params(model)
    log("model", f"GPT-Neo L{size.n_layer} d{size.width} ctx{size.context}, {n_params:,} parameters, "
        f"attention {attn}")

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    tr = train(model, train_blocks, size, device, args.max_train_seconds)
    precision = "bf16 autocast, fused AdamW" if cuda else "float32, AdamW"
    log("train", f"{tr['steps']} steps x {size.batch} blocks ({precision}) in {tr['seconds']:.1f} s; "
        f"loss {tr['first_loss']:.3f} -> {tr['last_loss']:.3f}")
    log("train tokens/s", f"{tr['tokens_per_s']:,.0f}")
    peak = peak_flops(name, args.peak_tflops) if cuda else None
    mfu = 6 * n_params * tr["tokens_per_s"] / peak if peak else None
    if mfu is not None:
        log("model flop utilisation", f"{100 * mfu:.1f} % (6·N·tokens/s = "
            f"{6 * n_params * tr['tokens_per_s'] / 1e12:.1f} TFLOP/s over {peak / 1e12:.0f} TFLOP/s "
            f"peak dense bf16 of {name}; attention FLOPs not counted)")
    else:
        why = "CPU run" if not cuda else f"unknown peak for {name!r}; pass --peak-tflops"
        log("model flop utilisation", f"n/a ({why}); 6·N·tokens/s = "
            f"{6 * n_params * tr['tokens_per_s'] / 1e9:.2f} GFLOP/s")
    mem = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    log("peak GPU memory", f"{mem:.2f} GiB (training)" if cuda else "n/a (CPU run)")
    vloss = val_loss(model, val_blocks[:size.compare_val_blocks * 2], device, size.batch)
    log("val loss", f"{vloss:.4f} nats/token ({min(len(val_blocks), size.compare_val_blocks * 2)} "
        "blocks)")

    with quiet_transformers():
        model.save_pretrained(out / "checkpoint")
    tok.save_pretrained(out / "checkpoint")
    dev = device.type
    n_tp = min(len(train_blocks), size.throughput_train_blocks)
    n_vb = min(len(val_blocks), size.compare_val_blocks)
    collect_and_measure(model, train_blocks[:2], val_blocks[:1], out / "stats_warmup.safetensors",
                        dev, size.batch)  # one-time costs (kernels, allocator) out of the timing
    m_tp, s_tp, k_tp = collect_and_measure(model, train_blocks[:n_tp], val_blocks[:n_vb],
                                           out / f"stats_{dev}_throughput.safetensors", dev,
                                           size.batch)
    log("collection tokens/s", f"{k_tp / s_tp:,.0f} ({dev}; {n_tp} train + {n_vb} validation "
        f"blocks, {k_tp:,} data tokens in {s_tp:.1f} s, every pass included)")
    log("measures", " ".join(f"{k}={v:.4g}" for k, v in m_tp.items()))

    n_cmp = min(len(train_blocks), size.compare_train_blocks)
    cmp_train, cmp_val = train_blocks[:n_cmp], val_blocks[:n_vb]
    if cuda:
        m_a, _, _ = collect_and_measure(model, cmp_train, cmp_val, out / "stats_cuda.safetensors",
                                        "cuda", size.batch)
        cpu_model = cpu_copy(model, cfg)
        t1 = time.perf_counter()
        m_b, s_b, k_b = collect_and_measure(cpu_model, cmp_train, cmp_val,
                                            out / "stats_cpu.safetensors", "cpu", size.batch)
        worst, which = max_rel_diff(m_a, m_b)
        log("cpu collection tokens/s", f"{k_b / s_b:,.0f} ({time.perf_counter() - t1:.1f} s)")
        log("max relative difference cuda vs cpu measures",
            f"{worst:.2e} ({which}; {n_cmp} train + {n_vb} validation blocks; CUDA in bf16 "
            "autocast, CPU in float32)")
    else:
        m_a, _, _ = collect_and_measure(model, cmp_train, cmp_val, out / "stats_cpu_a.safetensors",
                                        "cpu", size.batch)
        m_b, _, _ = collect_and_measure(model, cmp_train, cmp_val, out / "stats_cpu_b.safetensors",
                                        "cpu", max(1, size.batch // 3))
        worst, which = max_rel_diff(m_a, m_b)
        log("max relative difference cuda vs cpu measures",
            f"n/a (no CUDA); cpu batch {size.batch} vs batch {max(1, size.batch // 3)}: "
            f"{worst:.2e} ({which}; {n_cmp} train + {n_vb} validation blocks)")
    finite = all(math.isfinite(v) for v in {**m_a, **m_b, **m_tp}.values())
    log("measures finite", "yes" if finite else "NO")
    return {"device": name, "size": asdict(size), "n_params": n_params, "train": tr,
            "mfu": mfu, "peak_gpu_memory_gib": mem, "val_loss": vloss,
            "flash_attention": flash_msg, "collection_tokens_per_s": k_tp / s_tp,
            "measures": m_tp, "max_rel_diff": worst, "max_rel_diff_measure": which,
            "measures_finite": finite}


if __name__ == "__main__":
    sys.exit(main())
