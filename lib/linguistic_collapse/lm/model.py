"""GPT-Neo models as in the paper, run names, and loading any causal LM for measurement.

The features of a causal LM are exactly the input of its LM head (final hidden state after the
final norm, and after OPT's ``project_out``); its classifier is the LM head's weight ``W`` of
shape (V, D) (plus its bias, ``lm_head_bias``, where the head has one).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from linguistic_collapse.core.errors import UserError, as_os_error
from linguistic_collapse.core.gpt_neo_defaults import PAPER_LOCAL_WINDOW, default_n_head
from linguistic_collapse.core.paths import resolve_if_checkout

T = TypeVar("T")
MEASURE_DTYPE = torch.float32  # parameters of every model loaded for measurement


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


# ---------------------------------------------------------------------------------------------
# Any Hugging Face causal LM as (features, classifier).
#
# Verified exactly (logits == features @ W.T + b to float tolerance, tests/test_pretrained.py) on
# GPT-Neo, GPT-2, GPT-NeoX (Pythia: untied head), Llama (untied head) and OPT, including OPT with
# ``word_embed_proj_dim != hidden_size``: there the decoder's ``project_out`` maps the final
# hidden state (after ``final_layer_norm``) to the head's width, so the features have
# ``word_embed_proj_dim`` dimensions, not ``hidden_size``. ``final_features`` reads the head's
# input itself (a forward pre-hook that stops the forward there), so no per-architecture code can
# miss such a step and no logits are computed.


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars (weight loading, shard writing) inside our own bars."""
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_TRUE = {"1", "ON", "YES", "TRUE"}


def local_model_dir(name_or_path: str | Path) -> Path | None:
    """The existing local folder ``name_or_path`` names (as given, else checkout-relative)."""
    for p in (Path(name_or_path).expanduser(), resolve_if_checkout(name_or_path)):
        if p.exists():
            return p
    return None


PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")  # torch.save pickles


def check_model_folder(folder: Path) -> None:
    """``UserError`` in one line when loading ``folder`` would run code from it (its config or
    tokenizer config names its own classes: ``auto_map``) or unpickle its weights; nothing from
    a data folder is ever executed, and no prompt is ever shown."""
    for name in ("config.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{path} is not valid JSON; save the model again with "
                            "save_pretrained") from None
        if isinstance(config, dict) and "auto_map" in config:
            raise UserError(f"{path} names custom code (auto_map), which this project never "
                            "runs; use a model whose architecture transformers ships")
    if not any(folder.glob("*.safetensors")) and any(
            p for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern)):
        raise UserError(f"{folder} holds pickle weights ({', '.join(PICKLE_WEIGHTS)}), which this "
                        "project never loads; convert them to safetensors on a machine you trust "
                        "(model.save_pretrained(folder, safe_serialization=True))")


def check_weight_headers(folder: Path) -> None:
    """``UserError`` in one line naming the file when a ``*.safetensors`` of ``folder`` has a
    header safetensors cannot read (truncated, damaged, or claiming impossible sizes); only
    the headers are read, nothing is allocated."""
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except SafetensorError as err:
            raise UserError(f"{path} is not a readable safetensors file ({_first_line(err)[:160]}); "
                            "save the model again with save_pretrained") from None


def refused_code(what: str, name: str | Path, err: Exception) -> UserError:
    """The one line for a model that transformers cannot load without running its own code."""
    return UserError(f"{what} {name}: transformers cannot load it without running code from it "
                     f"({_first_line(err)}); this project never does: use a model whose "
                     "architecture transformers ships, saved as safetensors")


def is_hub_name(name_or_path: str | Path) -> bool:
    """True for a hub id like "gpt2" or "EleutherAI/pythia-70m" that is not a local path."""
    text = str(name_or_path)
    return (local_model_dir(text) is None and not text.startswith(".")
            and _HUB_NAME.match(text) is not None and not text.endswith((".", "-")))


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set to a true value."""
    return any(os.environ.get(k, "").strip().upper() in _TRUE
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint (HF_ENDPOINT), so no network fails in seconds."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError:
        return False
    return True


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _unavailable(what: str, name: str, revision: str | None) -> UserError:
    # heavy (transformers): loaded only when a model or tokenizer is used
    from huggingface_hub import constants

    at = f" at revision {revision!r}" if revision else ""
    why = ("HF_HUB_OFFLINE is set" if hub_offline()
           else f"the hub ({os.environ.get('HF_ENDPOINT', 'https://huggingface.co')}) is unreachable")
    rev = f" --revision {revision}" if revision else ""
    return UserError(
        f"{what} {name!r}{at} is not available offline: it is not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and {why}; download it on a connected machine "
        f"(`hf download {name}{rev}`) and copy that cache here or point HF_HOME at it, "
        + ("unset HF_HUB_OFFLINE where the hub is reachable, " if hub_offline() else "")
        + "or pass a local folder written by save_pretrained"
    )


def from_hub(load: Callable[..., T], name: str, revision: str | None = None,
             what: str = "model") -> T:
    """``load(name, revision=..., local_files_only=...)`` (a ``from_pretrained``): cache first,
    then the hub only when it is allowed and reachable; otherwise one-line ``UserError`` at once
    (no retries against an unreachable hub)."""
    try:
        return load(name, revision=revision, local_files_only=True)
    except OSError:  # not (completely) in the cache
        pass
    if hub_offline() or not hub_reachable():
        raise _unavailable(what, name, revision) from None
    try:
        return load(name, revision=revision)
    except OSError as err:
        at = f" at revision {revision!r}" if revision else ""
        raise UserError(f"could not load {what} {name!r}{at} from the hub ({_first_line(err)}); "
                        "check the name and revision") from None


def load_causal_lm(name_or_path: str | Path, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None, *, revision: str | None = None) -> nn.Module:
    """Load a causal LM from a local folder (``save_pretrained``) or a hub id, in eval mode.

    ``revision``: a hub branch, tag or commit (e.g. Pythia's "step1000"); hub ids only.
    ``dtype`` None loads float32 whatever the checkpoint's storage dtype and transformers'
    default (``MEASURE_DTYPE``: measurement runs in float32 on CPU, under bf16 autocast on CUDA;
    ``linguistic_collapse.lm.devices.feature_dtype`` names the precision of the features). A hub id that is neither cached nor reachable
    (HF_HUB_OFFLINE, no network) raises a one-line ``UserError`` at once; a missing local path
    raises ``FileNotFoundError``.
    """
    # heavy (transformers): loaded only when a model or tokenizer is used
    from transformers import AutoModelForCausalLM

    def load(source: str, **kwargs) -> nn.Module:
        with quiet_transformers():
            try:
                return AutoModelForCausalLM.from_pretrained(source, dtype=dtype or MEASURE_DTYPE,
                                                            trust_remote_code=False, **kwargs)
            except pickle.UnpicklingError as err:
                raise UserError(f"model {source}: its weights are a pickle that is not plain "
                                f"tensors ({_first_line(err)[:80]}...); this project never "
                                "unpickles them: convert them to safetensors on a machine you "
                                "trust") from None
            except ValueError as err:
                if "trust_remote_code" in str(err) or "model type" in str(err):
                    raise refused_code("model", source, err) from None
                raise
            except (RuntimeError, OverflowError, MemoryError) as err:  # e.g. sizes it cannot build
                if as_os_error(err) is not None:
                    raise
                raise UserError(f"model {source}: cannot be built from its config.json and "
                                f"weights ({_first_line(err)[:160]}); check the sizes in its "
                                "config.json, or save the model again with save_pretrained"
                                ) from None

    local = local_model_dir(name_or_path)
    if local is not None:
        if revision is not None:
            raise UserError(f"revision {revision!r} applies to hub models, but {name_or_path} is a "
                            "local folder; drop the revision or pass the hub id")
        if local.is_dir():
            check_model_folder(local)
            check_weight_headers(local)
        try:
            model = load(str(local))
        except OSError as err:
            raise FileNotFoundError(f"could not load a causal LM from {local}: "
                                    f"{_first_line(err)}") from err
    elif is_hub_name(name_or_path):
        model = from_hub(load, str(name_or_path), revision, what="model")
    else:
        raise FileNotFoundError(f"no model checkpoint at {name_or_path}; train it first or fix the path")
    return model.to(device=device, dtype=dtype or MEASURE_DTYPE).eval()


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


