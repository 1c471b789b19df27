"""The statistics of paper section 4 as math: streaming per-class moments and NCC agreement.

For every block position t the feature x_t (the LM head's input) pairs with the label
y = token t+1. Two passes over the data give everything the measures need:

1. Train: per class c the count N_c, the feature sum and S_c = sum ||x - mu_c||^2, in one pass,
   and (optionally, for the head input) the pooled within-class scatter
   SW = sum_c sum_{x in c} (x - mu_c)(x - mu_c)^T (D, D), whose trace is sum_c S_c.
   Each batch's per-class moments (count, mean, M2 about the batch's own class mean) are
   merged into the running ones with Chan's formula
   ``M2 = M2_a + M2_b + ||mean_b - mean_a||^2 n_a n_b / (n_a + n_b)`` (for SW the outer-product
   form ``SW_a + SW_b + sum_c n_a n_b / (n_a + n_b) delta_c delta_c^T``, one (K, D)^T (K, D)
   product), so no sample is ever compared with a far-away mean: a large common offset in the
   features cancels before squaring.
2. Validation: per true class, how many tokens there are and on how many the LM-head decision
   argmax_c <w_c, x> equals the nearest-class-centre decision argmin_c ||x - mu_c||, both over
   the K classes seen in train (N_c >= 1).

Accumulation is ``bincount`` + ``index_add_``: work grows with tokens x width, never with
tokens x classes, and all accumulators are float64 whatever the model's precision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from linguistic_collapse.core.errors import UserError

ROW_CHUNK = 4096  # rows converted to float64 at a time: cache-sized, no (N, D) float64 copy
DEFAULT_CHUNK = 4096  # classes per score tile in the agreement pass


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without it is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use cpu or auto")
    return torch.device(name)


def check_finite(features: Tensor) -> None:
    """UserError when features hold NaN or inf (one reduction: cheaper than an isfinite mask).

    The sum is taken in float64 (float32 for 16-bit features), so finite fp16/bf16 features
    whose sum exceeds 65504 are not mistaken for an overflow."""
    wide = torch.float32 if features.dtype in (torch.float16, torch.bfloat16) else torch.float64
    if not torch.isfinite(features.sum(dtype=wide)):
        raise UserError(
            "features contain NaN or inf: check the model/precision (a diverged checkpoint, or "
            "fp16 overflow inside the model; run it in float32 or bf16)"
        )


def _bincount(labels: Tensor, n_classes: int) -> Tensor:
    counts = torch.bincount(labels, minlength=n_classes)  # (V,)
    if counts.shape[0] != n_classes:
        raise UserError(f"label {int(labels.max())} outside the {n_classes} classes: use the "
                        "tokenizer the model was trained with")
    return counts


def accumulate_sums(features: Tensor, labels: Tensor, counts: Tensor, sums: Tensor) -> None:
    """``counts += bincount(labels)``, ``sums[labels] += features`` (float64), in place.

    features (N, D), labels (N,) int64, counts (V,) int64, sums (V, D) float64.
    """
    check_finite(features)
    counts += _bincount(labels, counts.shape[0])
    for a in range(0, features.shape[0], ROW_CHUNK):
        sums.index_add_(0, labels[a:a + ROW_CHUNK], features[a:a + ROW_CHUNK].double())


def merge_m2(n_a: Tensor, s_a: Tensor, m2_a: Tensor, n_b: Tensor, s_b: Tensor,
             m2_b: Tensor) -> Tensor:
    """Chan's merge of per-class second moments: M2 of the union of parts a and b.

    n (K,) counts, s (K, D) float64 sums, m2 (K,) float64 sums of squared deviations from each
    part's own class mean. Rows where either part is empty reduce to the other part's M2.
    """
    n = (n_a + n_b).double()  # (K,)
    na, nb = n_a.double(), n_b.double()
    delta = s_b / nb.clamp(min=1).unsqueeze(1) - s_a / na.clamp(min=1).unsqueeze(1)  # (K, D)
    cross = (delta * delta).sum(1) * na * nb / n.clamp(min=1)  # (K,); 0 when n_a or n_b is 0
    return m2_a + m2_b + cross


def merge_scatter(n_a: Tensor, s_a: Tensor, sw_a: Tensor, n_b: Tensor, s_b: Tensor,
                  sw_b: Tensor) -> Tensor:
    """Chan's merge of the pooled within-class scatter: SW (D, D) of the union of parts a and b.

    n (K,) counts, s (K, D) float64 sums of the same K classes, sw (D, D) float64 scatter of each
    part about its own class means. The cross term sum_c w_c delta_c delta_c^T, w_c = n_a n_b /
    (n_a + n_b), is (sqrt(w) delta)^T (sqrt(w) delta): one (D, K) x (K, D) product, no loop
    over classes; rows where either part is empty have w_c = 0.
    """
    n = (n_a + n_b).double()  # (K,)
    na, nb = n_a.double(), n_b.double()
    delta = s_b / nb.clamp(min=1).unsqueeze(1) - s_a / na.clamp(min=1).unsqueeze(1)  # (K, D)
    scaled = delta * (na * nb / n.clamp(min=1)).sqrt().unsqueeze(1)  # (K, D)
    total = sw_a + sw_b + scaled.T @ scaled
    return (total + total.T) / 2  # exactly symmetric; BLAS may round mirror entries apart


def _grouped_moments(features: Tensor, inv: Tensor, n: Tensor, scatter: bool = False
                     ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(s (K, D), m2 (K,), sw (D, D) or None) float64 of features (N, D) grouped by ``inv``
    (N,) into K groups of sizes n (K,): sums, squared deviations from each group's own mean,
    and with ``scatter`` their pooled outer products sum (x - m)(x - m)^T."""
    k, d = n.shape[0], features.shape[1]
    s = torch.zeros(k, d, dtype=torch.float64, device=features.device)
    for a in range(0, features.shape[0], ROW_CHUNK):
        s.index_add_(0, inv[a:a + ROW_CHUNK], features[a:a + ROW_CHUNK].double())
    mean = s / n.unsqueeze(1).double()  # (K, D)
    m2 = torch.zeros(k, dtype=torch.float64, device=features.device)
    sw = torch.zeros(d, d, dtype=torch.float64, device=features.device) if scatter else None
    for a in range(0, features.shape[0], ROW_CHUNK):
        i = inv[a:a + ROW_CHUNK]
        dev = features[a:a + ROW_CHUNK].double() - mean[i]  # (chunk, D)
        m2.index_add_(0, i, (dev * dev).sum(1))
        if sw is not None:
            sw += dev.T @ dev  # (D, D)
    return s, m2, sw


def accumulate_moments(features: Tensor, labels: Tensor, counts: Tensor, sums: Tensor,
                       sq_dev: Tensor, sw: Tensor | None = None) -> None:
    """Train pass, in place: counts, float64 sums and sq_dev[c] = sum ||x - mu_c||^2 so far
    (and, when given, the pooled within-class scatter sw).

    features (N, D), labels (N,) int64, counts (V,) int64, sums (V, D) float64, sq_dev (V,)
    float64, sw (D, D) float64 or None. The batch's moments are Chan-merged into the running
    ones (module docstring).
    """
    accumulate_moments_shared([features], labels, counts, [sums], [sq_dev], sw)


def accumulate_moments_shared(features: Sequence[Tensor], labels: Tensor, counts: Tensor,
                              sums: Sequence[Tensor], sq_dev: Sequence[Tensor],
                              sw: Tensor | None = None) -> None:
    """``accumulate_moments`` of several feature sets of the same tokens, in place: one label
    grouping and one shared ``counts``; per set, one index-add of sums and one Chan merge.

    Why: the residual streams of several layers pair with the same next tokens, so their
    statistics share the counts (``linguistic_collapse.pipeline.layers``). features[j] (N, D_j), sums[j] (V, D_j)
    float64, sq_dev[j] (V,) float64; each set's numbers equal ``accumulate_moments`` on it alone.
    sw (D_0, D_0) float64 or None: the pooled within-class scatter of the first set only (the
    head input; the layers' statistics keep only per-class traces).
    """
    for x in features:
        check_finite(x)
    _bincount(labels, counts.shape[0])  # range check
    classes, inv = torch.unique(labels, return_inverse=True)  # (K,), (N,)
    n_b = torch.bincount(inv, minlength=classes.shape[0])  # (K,)
    n_a = counts[classes]  # (K,)
    for j, (x, s, q) in enumerate(zip(features, sums, sq_dev, strict=True)):
        pooled = sw if j == 0 else None
        s_b, m2_b, sw_b = _grouped_moments(x, inv, n_b, scatter=pooled is not None)
        s_a = s[classes]  # (K, D_j)
        q[classes] = merge_m2(n_a, s_a, q[classes], n_b, s_b, m2_b)
        if pooled is not None:
            pooled.copy_(merge_scatter(n_a, s_a, pooled, n_b, s_b, sw_b))
        s[classes] = s_a + s_b
    counts[classes] = n_a + n_b


def _chunked_argmax(x: Tensor, rows: Tensor, bias: Tensor | None, chunk: int) -> Tensor:
    """argmax_j <x, r_j> - bias_j, ``chunk`` rows r_j at a time (first index on ties).

    x (N, D), rows (K, D), bias (K,) or None, all of one dtype -> (N,) int64.
    """
    best_val = torch.full((x.shape[0],), -torch.inf, dtype=x.dtype, device=x.device)  # (N,)
    best_idx = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # (N,)
    for a in range(0, rows.shape[0], chunk):
        scores = x @ rows[a:a + chunk].T  # (N, chunk)
        if bias is not None:
            scores -= bias[a:a + chunk]
        val, idx = scores.max(1)
        better = val > best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + a, best_idx)
    return best_idx


def _top2(x: Tensor, rows: Tensor, bias: Tensor | None, chunk: int) -> tuple[Tensor, Tensor]:
    """(best index, best - second best score) of <x, r_j> - bias_j; x (N, D), rows (K, D)."""
    n = x.shape[0]
    top = torch.full((n, 2), -torch.inf, dtype=x.dtype, device=x.device)  # (N, 2)
    top_idx = torch.zeros(n, 2, dtype=torch.long, device=x.device)
    for a in range(0, rows.shape[0], chunk):
        scores = x @ rows[a:a + chunk].T  # (N, chunk)
        if bias is not None:
            scores -= bias[a:a + chunk]
        val, idx = scores.topk(min(2, scores.shape[1]), dim=1)  # (N, <=2)
        both_val = torch.cat([top, val], 1)
        both_idx = torch.cat([top_idx, idx + a], 1)
        top, pick = both_val.topk(2, dim=1)
        top_idx = both_idx.gather(1, pick)
    return top_idx[:, 0], top[:, 0] - top[:, 1]


def exact_argmax(x: Tensor, rows: Tensor, bias: Tensor | None = None,
                 chunk: int = DEFAULT_CHUNK) -> Tensor:
    """argmax_j <x, r_j> - bias_j as computed in float64, at float32 speed.

    Scores are screened in float32; a row whose best and second-best scores are closer than
    twice the float32 error bound ((D + 8) u (||x|| max ||r|| + max |bias|), u = 2^-24) is
    recomputed in float64, so the result equals the float64 argmax (first index on ties).
    x (N, D), rows (K, D) float64, bias (K,) float64 or None -> (N,) int64.
    """
    x64 = x.double()
    if torch.get_float32_matmul_precision() != "highest":  # TF32 would break the error bound
        return _chunked_argmax(x64, rows.double(), bias, chunk)
    b32 = None if bias is None else bias.float()
    idx, gap = _top2(x.float(), rows.float(), b32, chunk)  # (N,), (N,)
    scale = x64.norm(dim=1) * rows.norm(dim=1).max() + (0 if bias is None else bias.abs().max())
    close = gap <= 2 * (x.shape[1] + 8) * 2.0 ** -24 * scale  # (N,) bool
    if bool(close.any()):
        idx[close] = _chunked_argmax(x64[close], rows.double(), bias, chunk)
    return idx


def ncc_agreement(features: Tensor, labels: Tensor, W: Tensor, means_valid: Tensor,
                  valid_ids: Tensor, val_counts: Tensor, val_agree: Tensor,
                  chunk: int = DEFAULT_CHUNK) -> None:
    """Validation pass: count tokens per true class, and those where the LM head agrees with NCC.

    LM head: argmax over the K valid classes of <w_c, x> (W (V, D) restricted to ``valid_ids``).
    NCC: argmin_c ||x - mu_c||^2 = argmax_c 2 x.mu_c - ||mu_c||^2 (||x||^2 is constant per x),
    with x and the means centred on the means' average first (distances do not change, float32
    screening gets tighter). Both decisions equal their float64 values (``exact_argmax``).
    features (N, D), labels (N,), means_valid (K, D) float64, valid_ids (K,),
    val_counts / val_agree (V,) int64.
    """
    check_finite(features)
    lm = exact_argmax(features, W[valid_ids].double(), None, chunk)  # (N,)
    centre = means_valid.double().mean(0)  # (D,)
    mu = means_valid.double() - centre  # (K, D)
    ncc = exact_argmax(features.double() - centre, 2.0 * mu, (mu * mu).sum(1), chunk)  # (N,)
    v = val_counts.shape[0]
    val_counts += _bincount(labels, v)
    val_agree += torch.bincount(labels[lm == ncc], minlength=v)


def class_means(counts: Tensor, sums: Tensor) -> Tensor:
    """mu (V, D) float64 = sums / counts; rows of classes never seen stay zero (never used)."""
    return sums.double() / counts.clamp(min=1).unsqueeze(1).double()


def means_hash(means: Tensor) -> str:
    """sha256 of the means' bytes: ties the validation pass to the train means it used."""
    return hashlib.sha256(means.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
