"""Any Hugging Face causal LM as (features, classifier): its features are exactly the input of
its LM head, its classifier the LM head's weight ``W`` (V, D) and bias, where it has one.

Verified exactly (logits == features @ W.T + b to float tolerance, tests/test_pretrained.py) on
GPT-Neo, GPT-2, GPT-NeoX (Pythia: untied head), Llama (untied head) and OPT, including OPT with
``word_embed_proj_dim != hidden_size``: there the decoder's ``project_out`` maps the final
hidden state (after ``final_layer_norm``) to the head's width, so the features have
``word_embed_proj_dim`` dimensions, not ``hidden_size``. ``final_features`` reads the head's
input itself (a forward pre-hook that stops the forward there), so no per-architecture code can
miss such a step and no logits are computed.
"""

from __future__ import annotations

import torch
from torch import nn


def _output_embeddings(model: nn.Module) -> nn.Module:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise ValueError(f"{type(model).__name__} has no output embedding (LM head); "
                         "load it with AutoModelForCausalLM")
    return head


def lm_head_weight(model: nn.Module) -> torch.Tensor:
    """The classifier W (V, D): the LM head's weight (the input embedding when tied, the
    separate ``lm_head``/``embed_out`` when untied, as in Llama and Pythia)."""
    return _output_embeddings(model).weight


def lm_head_bias(model: nn.Module) -> torch.Tensor | None:
    """The LM head's bias (V,), or None (GPT-Neo, GPT-2, Pythia, Llama, OPT have none; GPT-J
    and CodeGen have one)."""
    bias = getattr(_output_embeddings(model), "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


class _HeadInput(Exception):
    """Carries the LM head's input out of the forward (which stops there)."""

    def __init__(self, x: torch.Tensor) -> None:
        super().__init__("LM head input captured")
        self.x = x


def _grab_head_input(module: nn.Module, args: tuple, kwargs: dict) -> None:
    raise _HeadInput(args[0] if args else next(iter(kwargs.values())))


def final_features(model: nn.Module, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Features (B, T, D): exactly the LM head's input (last hidden state after the final norm,
    and after OPT's ``project_out``), read by a forward pre-hook on the head that ends the forward
    before any logits are computed; ``attention_mask`` (B, T) is passed on when given."""
    handle = _output_embeddings(model).register_forward_pre_hook(_grab_head_input,
                                                                  with_kwargs=True)
    mask = {} if attention_mask is None else {"attention_mask": attention_mask}
    try:
        model(input_ids=input_ids, use_cache=False, **mask)
    except _HeadInput as got:
        return got.x
    finally:
        handle.remove()
    raise RuntimeError(f"{type(model).__name__}'s forward never called its LM head")


def head_logits(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Logits (..., V) = features @ W.T (+ b) from the LM head's weight and bias."""
    return torch.nn.functional.linear(features, lm_head_weight(model).to(features.dtype),
                                      None if (b := lm_head_bias(model)) is None
                                      else b.to(features.dtype))


@torch.no_grad()
def feature_logit_gap(model: nn.Module, input_ids: torch.Tensor) -> float:
    """max |model logits - head_logits(final_features)| / max |model logits| on ``input_ids``.

    About 1e-7 in float32 when the features are the head's input and the model applies nothing
    after the head; larger for heads with logit soft-capping or scaling (e.g. Gemma 2)."""
    logits = model(input_ids=input_ids, use_cache=False).logits.float()
    rebuilt = head_logits(model, final_features(model, input_ids)).float()
    return float((logits - rebuilt).abs().max() / logits.abs().max().clamp(min=1e-30))
