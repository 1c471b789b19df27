"""Neural-collapse measures (paper section 5) from a statistics file, tiled and exact.

Every pairwise measure is a mean (or variance) over the K(K-1)/2 unordered pairs of classes:
4.3e8 pairs at paper scale, so no K x K matrix is ever kept. One Gram matrix of the unit
centred class means u_c = m_c / ||m_c|| (float64) is formed tile by tile over its upper
triangle (tiles j >= i, diagonal tiles masked to c < c'), and from each tile we derive

    cosines             cos = <u_c, u_c'>                                 (NC2 interference)
    normalised dists    h2 = ||u_c - u_c'||^2 = 2 (1 - cos)               (GNC2 log kernel)
    squared distances   d2 = ||m_c||^2 + ||m_c'||^2 - 2 ||m_c|| ||m_c'|| cos   (NC1, both CDNVs)

Means are reduced from tile sums; variances by combining per-tile (count, mean, M2), each from
two passes, with Chan's parallel formula. Pairs whose Gram-derived distance is tiny relative to
the norms lose digits to cancellation (and NC1 divides by d^4), so they are recomputed exactly
from differences. The matrix measures (NC1 of Papyan et al., the ETF and self-duality errors)
reduce to D x D products of the centred means M (K, D) and the LM-head rows, never K x K.
All standard deviations and variances are population ones (ddof = 0).
The plain definitions these must equal are in ``linguistic_collapse.nc.reference``; the list is ``linguistic_collapse.nc.registry``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc.accumulate import class_means
from linguistic_collapse.nc.pairwise import (
    Classes,
    PairSums,
    check_tensors,
    class_tensors,
    interference,
    pairwise_sums,
)
from linguistic_collapse.nc.registry import (
    MEASURES,
    NEEDS_SCATTER,
    PINV_MEASURES,
    PINV_RTOLS,
    get,
)
from linguistic_collapse.nc.stats_file import STATS_KEYS, read_stats

if TYPE_CHECKING:
    import pandas as pd

# Recorded in every metrics file (``measure_stats_file``); a metrics file of another version (or
# none) is measured again (``linguistic_collapse.pipeline.refresh``). Bump it whenever a measure is added, removed,
# or its definition or numerics change, so that reused metrics never mix two definitions.
# 1 (unrecorded): the 12 measures of the paper; 2: nc1_pinv, nc2_etf_error, nc3_duality_error,
# UNC3 on |mean|, the min-count robustness section; 3: nc1_pinv's cut-off PINV_RTOL;
# 4: nc1_pinv under the pre-registered cut-offs 1e-6 and 1e-3 too (PINV_RTOLS).
MEASURE_VERSION = 4
# Eigenvalues of Sigma_B below this fraction of the largest are dropped by nc1_pinv's
# pseudo-inverse. A final layer norm puts every feature on a hyperplane, so
# Sigma_B and Sigma_W share one null direction whose eigenvalue is round-off (1e-17 to 3e-15 of
# the largest in the smoke and cpu models; the next one is 1e-5 or more); a cut-off at D eps sat
# at that round-off and kept or dropped the direction by chance, moving nc1_pinv by up to 25 %
# between thread counts. PINV_RTOLS adds the pre-registered 1e-6 and 1e-3 (PINV_MEASURES).
PINV_RTOL = PINV_RTOLS[0]
__all__ = ["MEASURE_VERSION", "PINV_RTOL", "measure_stats", "measure_stats_file",
           "nc1_measures", "nc2_measures", "gnc2_measures", "nc3_measures", "nc4_measure"]

INT_METADATA = (
    "vocab_size", "width", "format_version",
    "pass1_blocks", "pass1_tokens", "pass2_blocks", "pass2_tokens",
)
NEEDS_CLASSIFIER = ("nc3_duality_mean", "unc3_duality_cv", "nc3_duality_error")  # need W (V, D)
NEEDS_VALIDATION = ("nc4_agreement",)  # need pass 2
NEEDS_PAIRS = tuple(m for m in MEASURES if m.startswith(("nc1_cdnv", "nc2_", "gnc2_")))


# ---------------------------------------------------------------------------------------------
# The measures


def _cv(x: Tensor, absolute: bool = False) -> float:
    """Coefficient of variation std / mean (``absolute``: std / |mean|), population std
    (ddof = 0); NaN for a zero mean."""
    mean = float(x.mean())
    return float(x.std(correction=0)) / (abs(mean) if absolute else mean) if mean != 0 else math.nan


def undefined_reasons(C: Classes, out: Mapping[str, float]) -> dict[str, str]:
    """Why each non-finite measure of ``out`` is undefined (the geometry that makes it so)."""
    flat = C.idx[C.norms == 0].tolist()
    at_centre = (f"class mean of token(s) {flat[:5]} equals the global mean (norm 0), so its "
                 "direction and every cosine with it are undefined") if flat else ""
    reasons = {}
    for key, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            if key in NEEDS_SCATTER:
                reasons[key] = ("needs the pooled within-class scatter sw, which these "
                                "statistics lack (restricted to some classes, or collected "
                                "before stats format 3)")
            elif at_centre:
                reasons[key] = at_centre
            elif key.startswith("nc1"):
                reasons[key] = "two classes have identical means (distance 0): the CDNV divides by 0"
            elif key.startswith("gnc2"):
                reasons[key] = "two classes' mean directions coincide: the log kernel is infinite"
            elif key == "nc2_interference_cv":
                reasons[key] = "the mean interference is 0: std / |mean| is undefined"
            elif key.startswith(("nc3", "unc3")):
                reasons[key] = ("an LM-head row has norm 0 or the mean duality is 0: the "
                                "cosine or std / mean is undefined")
            else:
                reasons[key] = f"not finite ({value}) for these statistics"
    return reasons


def _defined(out: dict[str, float], C: Classes) -> dict:
    """``out`` with each non-finite measure as NaN and ``undefined`` {measure: reason} added
    when there is any (never a fake finite or infinite value)."""
    reasons = undefined_reasons(C, out)
    fixed = {k: math.nan if k in reasons else v for k, v in out.items()}
    return {**fixed, "undefined": reasons} if reasons else fixed


def _nc1(P: PairSums) -> dict[str, float]:
    """NC1, within-class variability relative to between-class distance.

    ``nc1_cdnv``: mean over pairs of (sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^4), the
    variant of Wu & Papyan 2024; ``nc1_cdnv_galanti``: the class-distance normalised variance
    of Galanti et al. 2022 with ||mu_c - mu_c'||^2. Lower means more collapse.
    """
    return {"nc1_cdnv": P.cdnv / P.n_pairs, "nc1_cdnv_galanti": P.galanti / P.n_pairs}


def _nc2(C: Classes, P: PairSums) -> dict[str, float]:
    """NC2 equinormness and equiangularity of the centred means (Papyan et al. 2020).

    ``nc2_norm_cv`` = std_c ||m_c|| / mean_c ||m_c||, ``nc2_lognorm_cv`` the same on log norms,
    ``nc2_interference_mean`` / ``_std``: mean and population std over pairs of cos(m_c, m_c')
    (a simplex ETF has every cosine equal to -1/(K-1)); ``nc2_interference_cv`` = std / |mean|,
    the coefficient of variation that the paper's Figure 2 relates to loss.
    """
    mean, std = 1.0 - P.w.mean, math.sqrt(P.w.var)
    return {
        "nc2_norm_cv": _cv(C.norms),
        "nc2_lognorm_cv": _cv(C.norms.log()),
        "nc2_interference_mean": mean,
        "nc2_interference_std": std,
        "nc2_interference_cv": std / abs(mean) if mean != 0 else math.nan,
    }


def _gnc2(P: PairSums) -> dict[str, float]:
    """GNC2 hyperspherical uniformity (Liu et al. 2023): mean and population variance over
    pairs of the log kernel log(1 / ||m^_c - m^_c'||) = -log(h2) / 2."""
    return {"gnc2_logkernel_mean": -0.5 * P.log_h2.mean, "gnc2_logkernel_var": 0.25 * P.log_h2.var}


def _nc3(C: Classes) -> dict[str, float]:
    """NC3 self-duality mean_c cos(w_c, m_c) (Papyan et al. 2020) and UNC3 uniform duality,
    its coefficient of variation std / |mean| with population std (Wu & Papyan 2024; on |mean|
    because a random model's mean duality is negative)."""
    return {"nc3_duality_mean": float(C.duality.mean()), "unc3_duality_cv": _cv(C.duality, absolute=True)}


def _etf_error(fro: float, trace: float, ones: float, K: int) -> float:
    """||G / ||G||_F - E||_F with E = (I - 11^T / K) / sqrt(K - 1), from ||G||_F, tr G and
    1^T G 1 alone: ||E||_F = 1 and <G, E> = (tr G - 1^T G 1 / K) / sqrt(K - 1), so the square
    is 2 - 2 <G, E> / ||G||_F (clipped at 0 against rounding)."""
    if fro == 0:
        return math.nan
    inner = (trace - ones / K) / math.sqrt(K - 1)
    return math.sqrt(max(0.0, 2.0 - 2.0 * inner / fro))


def _mean_gram(C: Classes) -> tuple[Tensor, Tensor]:
    """(M^T M (D, D), M^T 1 (D,)) of the centred means M (K, D) = U diag(norms); a mean at
    the centre (norm 0, U undefined) is the zero row it is. Computed once per assembly: the
    ETF error, the self-duality error and nc1_pinv all use it."""
    M = torch.where(C.norms[:, None] > 0, C.U * C.norms[:, None], 0.0)  # (K, D)
    return M.T @ M, M.sum(0)


def _nc2_etf(C: Classes, MtM: Tensor, msum: Tensor) -> dict[str, float]:
    """NC2 as one number, the simplex-ETF error of G = M M^T (Kothapalli 2023's
    ``simplex_etf_error``): ||G||_F = ||M^T M||_F, tr G = tr(M^T M), 1^T G 1 = ||M^T 1||^2."""
    return {"nc2_etf_error": _etf_error(float(MtM.norm()), float(MtM.trace()),
                                        float(msum @ msum), len(C.idx))}


def _nc3_error(W: Tensor, C: Classes, MtM: Tensor, msum: Tensor, chunk: int = 4096
               ) -> dict[str, float]:
    """NC3 as one number, the self-duality error: the ETF error of G = W_K M^T (W's rows of the
    K classes): ||G||_F^2 = tr((W^T W)(M^T M)), tr G = sum_c <w_c, m_c>, 1^T G 1 = (W^T 1) .
    (M^T 1); W^T W is summed over row chunks, so W is never copied whole in float64."""
    D = MtM.shape[0]
    WtW = torch.zeros(D, D, dtype=torch.float64, device=MtM.device)
    wsum = torch.zeros(D, dtype=torch.float64, device=MtM.device)
    trace = 0.0
    for lo in range(0, len(C.idx), chunk):
        rows = W[C.idx[lo:lo + chunk]].to(MtM.device, torch.float64)  # (k, D)
        WtW += rows.T @ rows
        wsum += rows.sum(0)
        norms = C.norms[lo:lo + chunk, None]
        trace += float((rows * torch.where(norms > 0, C.U[lo:lo + chunk] * norms, 0.0)).sum())
    fro = math.sqrt(max(0.0, float((WtW * MtM).sum())))  # both symmetric: tr(AB) = sum A * B
    return {"nc3_duality_error": _etf_error(fro, trace, float(wsum @ msum), len(C.idx))}


def _nc1_pinv(sw: Tensor | None, C: Classes, MtM: Tensor) -> dict[str, float]:
    """NC1 of Papyan et al. 2020, Tr(Sigma_W Sigma_B^+) / K, under each cut-off of
    ``PINV_RTOLS`` (``PINV_MEASURES``): Sigma_W = sw / N the pooled within-class covariance
    (D, D) over all N training samples, Sigma_B = M^T M / K = V diag(l) V^T of the centred
    means. One eigendecomposition serves every cut-off: Tr(Sigma_W Sigma_B^+) = sum over kept
    i of v_i^T Sigma_W v_i / l_i, kept where |l_i| > rtol max |l| (``torch.linalg.pinv``'s
    rule). NaN without ``sw`` (restricted statistics), with its reason (``undefined_reasons``)."""
    if sw is None:
        return dict.fromkeys(PINV_MEASURES, math.nan)
    K = len(C.idx)
    sigma_w = sw.to(MtM.device, torch.float64) / float(C.counts.sum())
    evals, evecs = torch.linalg.eigh(MtM / K)  # (D,), (D, D)
    quad = ((sigma_w @ evecs) * evecs).sum(0)  # (D,) v_i^T Sigma_W v_i
    size = evals.abs()
    return {name: float((quad / evals)[size > rtol * size.max()].sum()) / K
            for name, rtol in zip(PINV_MEASURES, PINV_RTOLS, strict=True)}


def _nc4(val_counts: Tensor, val_agree: Tensor) -> dict[str, float]:
    """NC4 agreement of the LM head with the nearest-class-centre rule (Papyan et al. 2020):
    the token-weighted fraction sum(val_agree) / sum(val_counts)."""
    total = int(val_counts.sum())
    if total == 0:
        raise UserError("nc4_agreement needs validation tokens: call ClassStats.add_validation("
                        "features, labels, W) on held-out data first")
    return {"nc4_agreement": int(val_agree.sum()) / total}


def _table(C: Classes, P: PairSums) -> pd.DataFrame:
    import pandas as pd  # heavy: only the per-class table needs it, not the installed core

    K = len(C.idx)
    columns = {
        "token_id": C.idx, "count": C.counts, "sigma2": C.sigma2, "norm": C.norms,
        "duality": C.duality if C.duality is not None else torch.full_like(C.norms, math.nan),
        "variability": P.variability / (K - 1), "interference": interference(C),
    }
    return pd.DataFrame({k: v.cpu().numpy() for k, v in columns.items()})


# ---------------------------------------------------------------------------------------------
# The one assembly: every caller (ClassStats.measures, the stats files, the per-layer measures,
# the per-property functions) computes its measures here, with the undefined-value rule.


@dataclass(frozen=True)
class ClassInputs:
    """What the measures are computed from, checked: counts (V,) int64, class means (V, D)
    float64, within-class squared deviations sq_dev (V,); optional pooled scatter sw (D, D),
    classifier W (V, D) and pass 2's val_counts, val_agree (V,) int64."""

    counts: Tensor
    means: Tensor
    sq_dev: Tensor
    sw: Tensor | None = None
    W: Tensor | None = None
    val_counts: Tensor | None = None
    val_agree: Tensor | None = None


def _names(inp: ClassInputs, which: Sequence[str] | None) -> list[str]:
    """The registry measures to compute, in registry order: ``which`` (UserError naming what is
    missing: W or pass 2), or every one the inputs allow. The nc1_pinv measures are always
    allowed: without ``sw`` they are NaN with their reason."""
    has_w, has_val = inp.W is not None, inp.val_counts is not None
    if which is None:
        return [m for m in MEASURES if (has_w or m not in NEEDS_CLASSIFIER)
                and (has_val or m not in NEEDS_VALIDATION)]
    names = {get(m).name for m in which}
    if not has_w and names & set(NEEDS_CLASSIFIER):
        raise UserError(f"{sorted(names & set(NEEDS_CLASSIFIER))} need the classifier W (V, D): "
                        "pass W to ClassStats.measures (the LM head's weight)")
    if not has_val and names & set(NEEDS_VALIDATION):
        raise UserError("nc4_agreement needs pass 2: call ClassStats.add_validation(features, "
                        "labels, W) on held-out data first")
    return [m for m in MEASURES if m in names]


def assemble(inp: ClassInputs, which: Sequence[str] | None = None,
             device: str | torch.device = "cpu", tile: int = 2048, per_class: bool = False,
             progress: bool = False) -> tuple[dict, pd.DataFrame | None]:
    """(measures, per-class table or None): the registry measures named in ``which`` (default:
    every one the inputs allow) plus ``num_classes``, each undefined value NaN with its reason
    under ``undefined``; the pairwise pass runs once, only when a pairwise measure or the table
    is asked for. Memory O(K D + tile^2); the same code on CPU and CUDA via ``device``."""
    names = _names(inp, which)
    need = set(names)
    W = inp.W if need & set(NEEDS_CLASSIFIER) or per_class else None
    C = class_tensors(inp.counts, inp.means, inp.sq_dev, W, device)
    out: dict[str, float] = {}
    P = None
    if per_class or need & set(NEEDS_PAIRS):
        P = pairwise_sums(inp.means, C, tile, per_class=per_class, progress=progress)
        out.update({**_nc1(P), **_nc2(C, P), **_gnc2(P)})
    if need & {"nc2_etf_error", "nc3_duality_error", *PINV_MEASURES}:
        MtM, msum = _mean_gram(C)
        if "nc2_etf_error" in need:
            out.update(_nc2_etf(C, MtM, msum))
        if need & set(PINV_MEASURES):
            out.update(_nc1_pinv(inp.sw, C, MtM))
        if "nc3_duality_error" in need:
            out.update(_nc3_error(inp.W, C, MtM, msum))
    if need & {"nc3_duality_mean", "unc3_duality_cv"}:
        out.update(_nc3(C))
    if "nc4_agreement" in need:
        out.update(_nc4(inp.val_counts, inp.val_agree))
    measures = _defined({**{m: float(out[m]) for m in names}, "num_classes": len(C.idx)}, C)
    return measures, _table(C, P) if per_class else None


# ---------------------------------------------------------------------------------------------
# Public per-property functions of tensors (as the authors' ``neural_collapse`` library):
# counts (V,) int64, class means (V, D), within-class squared deviations sq_dev (V,), pooled
# within-class scatter sw (D, D), classifier W (V, D). Classes with count 0 are left out.


def _inputs(what: str, counts: Tensor, means: Tensor, sq_dev: Tensor | None = None,
            sw: Tensor | None = None, W: Tensor | None = None, val_counts: Tensor | None = None,
            val_agree: Tensor | None = None) -> ClassInputs:
    """Checked float64 inputs of a per-property function ``what`` (ValueError naming the
    argument); any floating dtype is accepted (cast once)."""
    given = {"counts": counts, "means": means, "sq_dev": sq_dev, "sw": sw, "lm_head": W,
             "val_counts": val_counts, "val_agree": val_agree}
    tensors = {k: torch.as_tensor(v) for k, v in given.items() if v is not None}
    tensors = {k: v.double() if v.is_floating_point() else v for k, v in tensors.items()}
    if "sq_dev" not in tensors:  # the geometry of the means alone: sigma2 is unused
        tensors["sq_dev"] = torch.zeros(tensors["counts"].shape, dtype=torch.float64,
                                        device=tensors["counts"].device)
    check_tensors(tensors, what)
    return ClassInputs(tensors["counts"], tensors["means"], tensors["sq_dev"], tensors.get("sw"),
                       tensors.get("lm_head"), tensors.get("val_counts"), tensors.get("val_agree"))


def _property(inp: ClassInputs, names: Sequence[str], device: str | torch.device, tile: int
              ) -> dict:
    out = assemble(inp, names, device, tile)[0]
    del out["num_classes"]
    return out


def nc1_measures(counts: Tensor, means: Tensor, sq_dev: Tensor, sw: Tensor | None = None, *,
                 device: str | torch.device = "cpu", tile: int = 2048) -> dict:
    """NC1 within-class variability: ``nc1_cdnv`` (mean over pairs of (sigma_c^2 +
    sigma_c'^2) / (2 ||mu_c - mu_c'||^4), Wu & Papyan 2024, sigma_c^2 = sq_dev_c / N_c) and
    ``nc1_cdnv_galanti`` (the same with ||mu_c - mu_c'||^2, Galanti et al. 2022), and with the
    pooled scatter ``sw`` ``nc1_pinv`` (Tr(Sigma_W Sigma_B^+) / K, Papyan et al. 2020) under
    each cut-off. Lower means more collapse."""
    names = [m for m in MEASURES if m.startswith("nc1") and (sw is not None
                                                             or m not in NEEDS_SCATTER)]
    return _property(_inputs("nc1_measures", counts, means, sq_dev, sw), names, device, tile)


def nc2_measures(counts: Tensor, means: Tensor, *, device: str | torch.device = "cpu",
                 tile: int = 2048) -> dict:
    """NC2 equinormness (CV of the centred-mean norms, and of their logs) and equiangularity
    (mean, population std and CV of the pairwise cosines of the centred means), and the
    simplex-ETF error of the centred means."""
    names = [m for m in MEASURES if m.startswith("nc2")]
    return _property(_inputs("nc2_measures", counts, means), names, device, tile)


def gnc2_measures(counts: Tensor, means: Tensor, *, device: str | torch.device = "cpu",
                  tile: int = 2048) -> dict:
    """GNC2 hyperspherical uniformity: mean and population variance over pairs of the log
    kernel log(1 / ||u_c - u_c'||) of the unit centred means."""
    names = [m for m in MEASURES if m.startswith("gnc2")]
    return _property(_inputs("gnc2_measures", counts, means), names, device, tile)


def nc3_measures(counts: Tensor, means: Tensor, W: Tensor, *,
                 device: str | torch.device = "cpu") -> dict:
    """NC3 self-duality mean_c cos(w_c, m_c), its matrix form the self-duality error, and UNC3
    uniform duality (the CV), with W the classifier (V, D) (the LM head's weight)."""
    return _property(_inputs("nc3_measures", counts, means, W=W), NEEDS_CLASSIFIER, device, 2048)


def nc4_measure(val_counts: Tensor | None, val_agree: Tensor | None) -> dict[str, float]:
    """NC4 agreement: the token-weighted fraction sum(val_agree) / sum(val_counts) of pass 2
    (``ClassStats.tensors["val_counts"]``, ``["val_agree"]``)."""
    if val_counts is None or val_agree is None:
        raise UserError("nc4_measure needs pass 2's val_counts and val_agree: call "
                        "ClassStats.add_validation(features, labels, W) on held-out data first")
    if val_counts.shape != val_agree.shape or bool((val_agree > val_counts).any()):
        raise ValueError("nc4_measure: val_agree must have val_counts' shape and never exceed it")
    return _nc4(val_counts, val_agree)


# ---------------------------------------------------------------------------------------------
# Stats mappings and files: the tensors keyed as in ``stats.safetensors`` (``counts``, ``sums``,
# ``sq_dev``, ``sw``, ``lm_head``, ``val_counts``, ``val_agree``), e.g. ``ClassStats.tensors``,
# the keys ``linguistic_collapse.nc.stats_file.STATS_KEYS``.


def measure_stats(stats: Mapping[str, Tensor], which: Sequence[str] | None = None, *,
                  device: str | torch.device = "cpu", tile: int = 2048, per_class: bool = False,
                  progress: bool = False) -> tuple[dict, pd.DataFrame | None]:
    """(measures, per-class table or None) of a stats mapping, from one pairwise pass: the
    registry measures named in ``which`` (default: every one the tensors allow: the geometry
    always, NC3/UNC3 with ``lm_head``, NC4 with ``val_counts``) plus ``num_classes``; each
    undefined value NaN with its reason under ``undefined``.

    The table has one row per class with count >= 1, for the token analysis (Wu & Papyan
    2024): token_id, count, sigma2, norm ||m_c||, duality cos(w_c, m_c), variability (mean over
    c' != c of the pairwise CDNV, d^4 variant) and interference (mean over c' != c of
    cos(m_c, m_c'))."""
    missing = [k for k in ("counts", "sums", "sq_dev") if k not in stats]
    if missing:
        raise ValueError(f"stats lack tensors {missing}; a stats mapping holds counts, sums and "
                         "sq_dev (ClassStats.tensors, or a stats.safetensors file)")
    if ("val_counts" in stats) != ("val_agree" in stats):
        raise ValueError(f"stats lack tensors {[k for k in ('val_counts', 'val_agree') if k not in stats]}"
                         "; pass 2 (ClassStats.add_validation) gives val_counts and val_agree")
    tensors = {k: stats[k] for k in STATS_KEYS if k in stats}
    check_tensors(tensors)
    inp = ClassInputs(tensors["counts"], class_means(tensors["counts"], tensors["sums"]),
                      tensors["sq_dev"], tensors.get("sw"), tensors.get("lm_head"),
                      tensors.get("val_counts"), tensors.get("val_agree"))
    return assemble(inp, which, device, tile, per_class, progress)


def _typed_metadata(meta: Mapping[str, str]) -> dict[str, str | int]:
    """Metadata with the integer fields parsed (the rest stays as strings)."""
    return {k: int(v) if k in INT_METADATA and isinstance(v, str) and v.lstrip("-").isdigit() else v
            for k, v in meta.items()}


def measure_stats_file(path: str | Path, device: str | torch.device = "cpu", tile: int = 2048,
                       progress: bool = True, per_class: bool = False
                       ) -> tuple[dict, pd.DataFrame | None]:
    """(every measure of one stats.safetensors (verified read) plus the metadata that
    identifies its model, per-class table or None); ``path`` as given (callers resolve
    repository-relative paths)."""
    path = Path(path)
    stats, meta = read_stats(path)  # verifies means_hash and the LM-head hash
    return measure_read_stats(stats, meta, path, device=device, tile=tile, progress=progress,
                              per_class=per_class)


def measure_read_stats(stats: Mapping[str, Tensor], meta: Mapping[str, str], path: str | Path,
                       device: str | torch.device = "cpu", tile: int = 2048,
                       progress: bool = True, per_class: bool = False
                       ) -> tuple[dict, pd.DataFrame | None]:
    """``measure_stats_file`` of the tensors and metadata ``read_stats(path)`` returned, for a
    caller that uses them again (the file is then read and verified once)."""
    measures, table = measure_stats(stats, device=device, tile=tile, per_class=per_class,
                                    progress=progress)
    return ({**_typed_metadata(meta), **measures, "stats_path": str(path),
             "measure_version": MEASURE_VERSION}, table)
