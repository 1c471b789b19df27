"""The (features, labels) of a causal language model's batch, for ``linguistic_collapse.nc.ClassStats``:
the LM head's input at each position and the next token there, as Hugging Face's loss pairs
them (``labels`` shifted by one inside the model, ``-100`` ignored), honouring the attention
mask (a padded position is neither a feature nor a label). Works on any
``AutoModelForCausalLM`` (``linguistic_collapse.lm.head.final_features``) in any dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm.head import final_features, lm_head_weight
from linguistic_collapse.nc.classstats import IGNORE_INDEX  # Hugging Face's ignored label


def vocab_and_positions(model: nn.Module) -> tuple[int, int | None]:
    """(classes V = the LM head's rows, the most positions the model takes or None)."""
    config = getattr(model, "config", None)
    positions = next((getattr(config, k) for k in ("max_position_embeddings", "n_positions",
                                                   "n_ctx") if isinstance(getattr(config, k, None), int)),
                     None)
    return int(lm_head_weight(model).shape[0]), positions


def check_token_blocks(model: nn.Module, input_ids: torch.Tensor, what: str = "input_ids") -> None:
    """UserError in one line unless ``input_ids`` (B, T) are integer token ids of ``model``'s
    vocabulary, T >= 2, and T within the model's positions."""
    if input_ids.ndim != 2 or input_ids.shape[1] < 2 or input_ids.is_floating_point() \
            or input_ids.dtype == torch.bool:
        raise UserError(f"{what} must be integer token ids (batch, T >= 2), got shape "
                        f"{tuple(input_ids.shape)} of {input_ids.dtype}")
    V, positions = vocab_and_positions(model)
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= V):
        bad = int(input_ids.max()) if int(input_ids.max()) >= V else int(input_ids.min())
        raise UserError(f"{what} holds token id {bad} outside the model's vocabulary of {V}: "
                        "tokenize with the model's own tokenizer")
    if positions is not None and input_ids.shape[1] > positions:
        raise UserError(f"{what} blocks have {input_ids.shape[1]} tokens, more than the "
                        f"model's {positions} positions: cut them to at most {positions}")


@torch.no_grad()
def head_features(model: nn.Module, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                  ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, D) in the model's dtype, labels (N,) int64) of a batch (B, T): at every
    position t < T - 1 the LM head's input and the next token ``labels[:, t + 1]`` (default
    ``input_ids``), leaving out positions whose next label is ``ignore_index`` and, with an
    ``attention_mask``, positions where it or the next one is padding. Pass a Hugging Face
    batch as ``head_features(model, **batch)``."""
    check_token_blocks(model, input_ids)
    target = input_ids if labels is None else labels
    if target.shape != input_ids.shape:
        raise UserError(f"labels must have input_ids' shape {tuple(input_ids.shape)}, got "
                        f"{tuple(target.shape)}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise UserError(f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}, "
                        f"got {tuple(attention_mask.shape)}")
    device = lm_head_weight(model).device
    x = final_features(model, input_ids.to(device),
                       None if attention_mask is None else attention_mask.to(device))  # (B, T, D)
    nxt = target[:, 1:].to(device)  # (B, T - 1)
    keep = nxt != ignore_index
    if attention_mask is not None:
        mask = attention_mask.to(device).bool()
        keep &= mask[:, 1:] & mask[:, :-1]
    return x[:, :-1][keep], nxt[keep].long()
