"""The residual stream of every layer of a causal LM (``linguistic_collapse.pipeline.layers``): the transformer blocks
of the known architectures and the features at requested residual-stream indices."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.lm.head import final_features

# ---------------------------------------------------------------------------------------------
# Residual-stream indices.
#
# Residual-stream index i of a model with L blocks: i < L is the input of block i (0: the
# embeddings, token plus position, after embedding dropout), i = L the output of the last block
# BEFORE the final norm. For i < L these equal Hugging Face's ``output_hidden_states[i]``; its
# last entry differs (GPT-Neo and GPT-2 put the final norm's output there, which is not the
# residual stream; our top features, the LM head's input, are that output).

BLOCK_LISTS = ("transformer.h", "gpt_neox.layers", "model.layers", "model.decoder.layers")


def transformer_blocks(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks in order: a known attribute path (GPT-Neo, GPT-2, GPT-NeoX, Llama,
    OPT), else the one ``ModuleList`` holding ``config.num_hidden_layers`` modules."""
    n = getattr(model.config, "num_hidden_layers", None)
    for path in BLOCK_LISTS:
        blocks = model.get_submodule(path) if _has_submodule(model, path) else None
        if isinstance(blocks, nn.ModuleList) and len(blocks) == n:
            return blocks
    found = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if len(found) != 1:
        raise UserError(f"cannot tell the decoder blocks of {type(model).__name__} "
                        f"({len(found)} lists of {n} modules); per-layer statistics need them")
    return found[0]


def _has_submodule(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def residual_features(model: nn.Module, input_ids: torch.Tensor, layers: tuple[int, ...]
                      ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(top features (B, T, D) as ``final_features``, [residual stream (B, T, D_l) of each
    index in ``layers``]) from ONE forward pass, read by hooks on the blocks (index i < L: a
    pre-hook on block i; i = L: a hook on the last block's output)."""
    blocks = transformer_blocks(model)
    L, got, handles = len(blocks), {}, []

    def grab_input(i: int) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            got[i] = args[0] if args else kwargs["hidden_states"]
        return hook

    def grab_output(module: nn.Module, args: tuple, output: object) -> None:
        got[L] = output[0] if isinstance(output, tuple) else output

    try:
        for i in sorted(set(layers)):
            if not 0 <= i <= L:
                raise UserError(f"layer {i} outside the residual-stream indices 0..{L}")
            handles.append(blocks[i].register_forward_pre_hook(grab_input(i), with_kwargs=True)
                           if i < L else blocks[L - 1].register_forward_hook(grab_output))
        top = final_features(model, input_ids)
    finally:
        for h in handles:
            h.remove()
    return top, [got[i] for i in layers]
