"""The paper's GPT-Neo: its config (local-attention window, heads), a freshly built model, and
parameter counts (counted, and the paper's closed form)."""

from __future__ import annotations

import torch
from torch import nn

from linguistic_collapse.core.gpt_neo_defaults import PAPER_LOCAL_WINDOW, default_n_head


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
    # heavy (transformers): loaded only when a model or tokenizer is used
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
    # heavy (transformers): loaded only when a model or tokenizer is used
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
