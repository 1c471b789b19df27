"""GPT-Neo models as in the paper, run names, and loading any causal LM for measurement.

The features of a causal LM are the input of its LM head (final hidden state after the final
norm); its classifier is the LM head's weight ``W`` of shape (V, D).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

PAPER_LOCAL_WINDOW = 256  # GPT-Neo local-attention window used in the paper


def default_n_head(n_embd: int) -> int:
    """16 heads as in the paper, fewer for tiny widths (head size at least 16)."""
    return max(1, min(16, n_embd // 16))


def attention_types(n_layer: int) -> list:
    """GPT-Neo ``attention_types``: alternate global/local, starting with global."""
    pairs, odd = divmod(n_layer, 2)
    types = [[["global", "local"], pairs]] if pairs else []
    return types + ([[["global"], 1]] if odd else [])


def gpt_neo_config(
    n_layer: int,
    n_embd: int,
    vocab_size: int,
    n_ctx: int,
    n_head: int | None = None,
    window_size: int = PAPER_LOCAL_WINDOW,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    attn_implementation: str = "eager",
):
    """The paper's GPT-Neo architecture: MLP 4d, gelu_new, no dropout, tied LM head.

    ``attn_implementation="flash_attention_2"`` (CUDA, flash-attn installed) runs both GPT-Neo's
    global and its local (sliding-window) attention as flash kernels; "eager" runs everywhere.
    """
    from transformers import GPTNeoConfig

    n_head = n_head or default_n_head(n_embd)
    if n_layer < 1 or n_embd < 1:
        raise ValueError(f"depth and width must be positive, got n_layer={n_layer}, n_embd={n_embd}")
    if n_embd % n_head:
        raise ValueError(
            f"width {n_embd} is not divisible into {n_head} attention heads; "
            f"choose a width that is a multiple of {n_head} or set n_head explicitly"
        )
    return GPTNeoConfig(
        vocab_size=vocab_size,
        max_position_embeddings=n_ctx,
        hidden_size=n_embd,
        num_layers=n_layer,
        attention_types=attention_types(n_layer),
        num_heads=n_head,
        intermediate_size=4 * n_embd,
        window_size=min(window_size, n_ctx),
        activation_function="gelu_new",
        resid_dropout=0.0,
        embed_dropout=0.0,
        attention_dropout=0.0,
        classifier_dropout=0.0,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        tie_word_embeddings=True,
        use_cache=False,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        attn_implementation=attn_implementation,
    )


def build_model(config, seed: int = 0) -> nn.Module:
    """A freshly initialised GPT-Neo causal LM (initialisation seeded for reproducibility)."""
    from transformers import GPTNeoForCausalLM

    torch.manual_seed(seed)
    return GPTNeoForCausalLM(config)


def count_params(model: nn.Module) -> int:
    """Number of distinct trainable parameters (tied embeddings counted once)."""
    seen = {p.data_ptr(): p.numel() for p in model.parameters() if p.requires_grad}
    return sum(seen.values())


def paper_param_count(n_layer: int, n_embd: int, vocab_size: int, n_ctx: int) -> int:
    """Closed form of the paper: (V + n_ctx)·d + L·(12d² + 10d) + 2d."""
    d = n_embd
    return (vocab_size + n_ctx) * d + n_layer * (12 * d * d + 10 * d) + 2 * d


# ---------------------------------------------------------------------------------------------
# Run names: one string per (architecture, variant, seed[, checkpoint]) that parses back.

_RUN_RE = re.compile(
    r"^L(?P<depth>\d+)-d(?P<width>\d+)-e(?P<epochs>\d+)-wd(?P<wd>[0-9.eE+-]+)-s(?P<seed>\d+)"
    r"(?:-ck(?P<checkpoint>\d+))?$"
)


@dataclass(frozen=True)
class RunName:
    """Depth, width, epochs, weight decay, shuffling seed and (optional) checkpoint epoch."""

    depth: int
    width: int
    epochs: int
    weight_decay: float
    seed: int
    checkpoint: int | None = None

    def __str__(self) -> str:
        name = f"L{self.depth}-d{self.width}-e{self.epochs}-wd{self.weight_decay!r}-s{self.seed}"
        return name if self.checkpoint is None else f"{name}-ck{self.checkpoint}"

    @property
    def run(self) -> RunName:
        """The training run this checkpoint belongs to (checkpoint dropped)."""
        return RunName(self.depth, self.width, self.epochs, self.weight_decay, self.seed)

    def at(self, checkpoint: int) -> RunName:
        if not 1 <= checkpoint <= self.epochs:
            raise ValueError(f"checkpoint {checkpoint} outside epochs 1..{self.epochs} of {self}")
        return RunName(self.depth, self.width, self.epochs, self.weight_decay, self.seed, checkpoint)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, name: str) -> RunName:
        m = _RUN_RE.match(name)
        if not m:
            raise ValueError(
                f"{name!r} is not a run name; expected e.g. 'L2-d64-e1-wd0.0005-s0' or '...-ck1'"
            )
        ck = m["checkpoint"]
        return cls(
            int(m["depth"]), int(m["width"]), int(m["epochs"]), float(m["wd"]), int(m["seed"]),
            None if ck is None else int(ck),
        )


# ---------------------------------------------------------------------------------------------
# Any Hugging Face causal LM as (features, classifier).


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars (weight loading, shard writing) inside our own bars."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def load_causal_lm(name_or_path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> nn.Module:
    """Load a causal LM by hub name or local path, in eval mode; fails fast when offline."""
    from transformers import AutoModelForCausalLM

    path = Path(name_or_path).expanduser()
    hub_like = not path.is_absolute() and str(name_or_path).count("/") <= 1 and not str(name_or_path).startswith(".")
    if not path.exists() and not hub_like:
        raise FileNotFoundError(f"no model checkpoint at {name_or_path}; train it first or fix the path")
    try:
        with quiet_transformers():
            model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=dtype)
    except OSError as err:
        raise FileNotFoundError(
            f"could not load causal LM {name_or_path!r}: {err}. A hub model needs network access "
            "(HF_HUB_OFFLINE is set or the hub is unreachable); pass a local checkpoint instead."
        ) from err
    return model.to(device).eval()


def lm_head_weight(model: nn.Module) -> torch.Tensor:
    """The classifier W (V, D): the LM head's weight."""
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embedding (LM head)")
    return head.weight


def final_features(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Features (B, T, D): the LM head's input, i.e. the last hidden state after the final norm."""
    out = model.base_model(input_ids=input_ids, use_cache=False)
    return out.last_hidden_state
