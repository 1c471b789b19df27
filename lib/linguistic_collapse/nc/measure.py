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
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc.pairwise import (
    MOMENT_KEYS,
    Classes,
    PairSums,
    class_tensors,
    interference,
    pairwise_sums,
)
from linguistic_collapse.nc.registry import GEOMETRY, MEASURES, NEEDS_SCATTER, get
from linguistic_collapse.nc.stats_file import read_stats

if TYPE_CHECKING:
    import pandas as pd

# Recorded in every metrics file (``measure_stats_file``); a metrics file of another version (or
# none) is measured again (``linguistic_collapse.stages.refresh``). Bump it whenever a measure is added, removed,
# or its definition or numerics change, so that reused metrics never mix two definitions.
# 1 (unrecorded): the 12 measures of the paper; 2: nc1_pinv, nc2_etf_error, nc3_duality_error,
# UNC3 on |mean|, the min-count robustness section; 3: nc1_pinv's cut-off PINV_RTOL.
MEASURE_VERSION = 3
# Eigenvalues of Sigma_B below this fraction of the largest are dropped by nc1_pinv's
# pseudo-inverse. A final layer norm puts every feature on a hyperplane, so Sigma_B and Sigma_W
# share one null direction whose eigenvalue is round-off (1e-17 to 3e-15 of the largest in the
# smoke and cpu models; the next one is 1e-5 or more); a cut-off at D eps sat at that round-off
# and kept or dropped the direction by chance, moving nc1_pinv by up to 25 % between thread counts.
PINV_RTOL = 1e-10

INT_METADATA = (
    "vocab_size", "width", "format_version",
    "pass1_blocks", "pass1_tokens", "pass2_blocks", "pass2_tokens",
)


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
    the centre (norm 0, U undefined) is the zero row it is."""
    M = torch.where(C.norms[:, None] > 0, C.U * C.norms[:, None], 0.0)  # (K, D)
    return M.T @ M, M.sum(0)


def _nc2_etf(C: Classes) -> dict[str, float]:
    """NC2 as one number, the simplex-ETF error of G = M M^T (Kothapalli 2023's
    ``simplex_etf_error``): ||G||_F = ||M^T M||_F, tr G = tr(M^T M), 1^T G 1 = ||M^T 1||^2."""
    MtM, msum = _mean_gram(C)
    return {"nc2_etf_error": _etf_error(float(MtM.norm()), float(MtM.trace()),
                                        float(msum @ msum), len(C.idx))}


def _nc3_error(stats: Mapping[str, Tensor], C: Classes, chunk: int = 4096) -> dict[str, float]:
    """NC3 as one number, the self-duality error: the ETF error of G = W_K M^T (W's rows of the
    K classes): ||G||_F^2 = tr((W^T W)(M^T M)), tr G = sum_c <w_c, m_c>, 1^T G 1 = (W^T 1) .
    (M^T 1); W^T W is summed over row chunks, so W is never copied whole in float64."""
    MtM, msum = _mean_gram(C)
    D = MtM.shape[0]
    WtW = torch.zeros(D, D, dtype=torch.float64, device=MtM.device)
    wsum = torch.zeros(D, dtype=torch.float64, device=MtM.device)
    trace = 0.0
    for lo in range(0, len(C.idx), chunk):
        W = stats["lm_head"][C.idx[lo:lo + chunk]].to(MtM.device, torch.float64)  # (k, D)
        WtW += W.T @ W
        wsum += W.sum(0)
        norms = C.norms[lo:lo + chunk, None]
        trace += float((W * torch.where(norms > 0, C.U[lo:lo + chunk] * norms, 0.0)).sum())
    fro = math.sqrt(max(0.0, float((WtW * MtM).sum())))  # both symmetric: tr(AB) = sum A * B
    return {"nc3_duality_error": _etf_error(fro, trace, float(wsum @ msum), len(C.idx))}


def _nc1_pinv(stats: Mapping[str, Tensor], C: Classes) -> dict[str, float]:
    """NC1 of Papyan et al. 2020, Tr(Sigma_W Sigma_B^+) / K: Sigma_W = sw / N the pooled
    within-class covariance (D, D) over all N training samples, Sigma_B = M^T M / K of the
    centred means; eigenvalues below ``PINV_RTOL`` of the largest are dropped by the pseudo-inverse.
    NaN without ``sw`` (restricted statistics), with its reason (``undefined_reasons``)."""
    if "sw" not in stats:
        return {"nc1_pinv": math.nan}
    MtM, _ = _mean_gram(C)
    K = len(C.idx)
    sigma_w = stats["sw"].to(MtM.device, torch.float64) / float(C.counts.sum())
    pinv = torch.linalg.pinv(MtM / K, rtol=PINV_RTOL, hermitian=True)
    return {"nc1_pinv": float((sigma_w * pinv).sum()) / K}  # tr(AB) = sum A * B, symmetric


def nc4_measure(stats: Mapping[str, Tensor]) -> dict[str, float]:
    """NC4 agreement of the LM head with the nearest-class-centre rule (Papyan et al. 2020):
    the token-weighted fraction sum(val_agree) / sum(val_counts)."""
    total = int(stats["val_counts"].sum())
    if total == 0:
        raise ValueError("val_counts sums to 0: no validation tokens; run pass 2 of linguistic_collapse.stages.collect")
    return {"nc4_agreement": int(stats["val_agree"].sum()) / total}


def _measures(stats: Mapping[str, Tensor], C: Classes, P: PairSums) -> dict[str, float]:
    out = {**_nc1(P), **_nc1_pinv(stats, C), **_nc2(C, P), **_nc2_etf(C), **_gnc2(P),
           **_nc3(C), **_nc3_error(stats, C), **nc4_measure(stats)}
    return _defined({**{k: float(out[k]) for k in MEASURES}, "num_classes": len(C.idx)}, C)


def _table(C: Classes, P: PairSums) -> pd.DataFrame:
    import pandas as pd  # heavy: only the per-class table needs it, not the installed core

    K = len(C.idx)
    columns = {
        "token_id": C.idx, "count": C.counts, "sigma2": C.sigma2, "norm": C.norms,
        "duality": C.duality, "variability": P.variability / (K - 1),
        "interference": interference(C),
    }
    return pd.DataFrame({k: v.cpu().numpy() for k, v in columns.items()})


def geometry_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                      tile: int = 2048, progress: bool = False) -> dict[str, float]:
    """NC1, NC2 and GNC2 (``GEOMETRY``) plus ``num_classes`` from class moments alone (counts,
    sums, sq_dev): for features with no classifier of their own, e.g. an inner layer's."""
    C = class_tensors(stats, device, classifier=False)
    P = pairwise_sums(stats, C, tile, per_class=False, progress=progress)
    out = {**_nc1(P), **_nc2(C, P), **_nc2_etf(C), **_gnc2(P)}
    return _defined({**{k: float(out[k]) for k in GEOMETRY}, "num_classes": len(C.idx)}, C)


def measure_stats(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                tile: int = 2048, per_class: bool = True, progress: bool = True
                ) -> tuple[dict[str, float], pd.DataFrame | None]:
    """The measures and (if ``per_class``) the per-class table from ONE pairwise pass."""
    C = class_tensors(stats, device)
    P = pairwise_sums(stats, C, tile, per_class=per_class, progress=progress)
    return _measures(stats, C, P), _table(C, P) if per_class else None


def compute_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                     tile: int = 2048, progress: bool = True) -> dict[str, float]:
    """Every measure of paper section 5 from the tensors of a stats file (see module doc),
    plus ``num_classes`` (K, the classes with count >= 1).

    Memory is O(K D + tile^2) whatever K; the same code runs on CPU and CUDA via ``device``.
    """
    return measure_stats(stats, device, tile, per_class=False, progress=progress)[0]


def per_class_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                       tile: int = 2048, progress: bool = True) -> pd.DataFrame:
    """One row per class with count >= 1, for the token analysis (Wu & Papyan 2024).

    Columns: token_id, count, sigma2, norm ||m_c||, duality cos(w_c, m_c), variability (mean
    over c' != c of the pairwise CDNV, d^4 variant) and interference (mean over c' != c of
    cos(m_c, m_c')).
    """
    return measure_stats(stats, device, tile, per_class=True, progress=progress)[1]


# ---------------------------------------------------------------------------------------------
# Public measures of a stats mapping (``counts``, ``sums``, ``sq_dev``; ``lm_head`` for NC3,
# ``val_counts`` and ``val_agree`` for NC4), e.g. ``linguistic_collapse.nc.ClassStats.tensors``

NEEDS_CLASSIFIER = ("nc3_duality_mean", "unc3_duality_cv", "nc3_duality_error")  # need W (V, D)
NEEDS_VALIDATION = ("nc4_agreement",)  # need pass 2


def _geometry(stats: Mapping[str, Tensor], device: str | torch.device, tile: int
              ) -> tuple[Classes, PairSums]:
    C = class_tensors(stats, device, classifier=False)
    return C, pairwise_sums(stats, C, tile, per_class=False, progress=False)


def nc1_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                 tile: int = 2048) -> dict[str, float]:
    """NC1 within-class variability: ``nc1_cdnv`` (mean over pairs of (sigma_c^2 +
    sigma_c'^2) / (2 ||mu_c - mu_c'||^4), Wu & Papyan 2024) and ``nc1_cdnv_galanti`` (the same
    with ||mu_c - mu_c'||^2, Galanti et al. 2022), and with the pooled scatter ``sw``
    ``nc1_pinv`` (Tr(Sigma_W Sigma_B^+) / K, Papyan et al. 2020). Lower means more collapse."""
    C, P = _geometry(stats, device, tile)
    return {**_nc1(P), **(_nc1_pinv(stats, C) if "sw" in stats else {})}


def nc2_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                 tile: int = 2048) -> dict[str, float]:
    """NC2 equinormness (CV of the centred-mean norms, and of their logs) and equiangularity
    (mean, population std and CV of the pairwise cosines of the centred means), and the
    simplex-ETF error of the centred means."""
    C, P = _geometry(stats, device, tile)
    return {**_nc2(C, P), **_nc2_etf(C)}


def gnc2_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                  tile: int = 2048) -> dict[str, float]:
    """GNC2 hyperspherical uniformity: mean and population variance over pairs of the log
    kernel log(1 / ||u_c - u_c'||) of the unit centred means."""
    return _gnc2(_geometry(stats, device, tile)[1])


def nc3_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu"
                 ) -> dict[str, float]:
    """NC3 self-duality mean_c cos(w_c, m_c), its matrix form the self-duality error, and UNC3
    uniform duality (the CV), with W the stats' ``lm_head`` (V, D)."""
    C = class_tensors(stats, device, keys=(*MOMENT_KEYS, "lm_head"))
    return {**_nc3(C), **_nc3_error(stats, C)}


def select_measures(stats: Mapping[str, Tensor], which: Sequence[str] | None = None,
                    device: str | torch.device = "cpu", tile: int = 2048) -> dict[str, float]:
    """The registry measures named in ``which`` (default: every one the tensors allow: the
    geometry always, NC3/UNC3 with ``lm_head``, NC4 with ``val_counts``), in registry order,
    from one pairwise pass; UserError naming what is missing for a named measure."""
    has_w, has_val, has_sw = "lm_head" in stats, "val_counts" in stats, "sw" in stats
    if which is None:
        names = [m for m in MEASURES if (has_w or m not in NEEDS_CLASSIFIER)
                 and (has_val or m not in NEEDS_VALIDATION) and (has_sw or m not in NEEDS_SCATTER)]
    else:
        names = [get(m).name for m in which]
        if not has_sw and set(names) & set(NEEDS_SCATTER):
            raise UserError("nc1_pinv needs the pooled within-class scatter sw of pass 1, which "
                            "these statistics lack (restricted to some classes, or an old file)")
        if not has_w and set(names) & set(NEEDS_CLASSIFIER):
            raise UserError(f"{sorted(set(names) & set(NEEDS_CLASSIFIER))} need the classifier "
                            "W (V, D): pass W (the LM head's weight)")
        if not has_val and set(names) & set(NEEDS_VALIDATION):
            raise UserError("nc4_agreement needs pass 2: call add_validation(features, labels, "
                            "W) on held-out data first")
    keys = (*MOMENT_KEYS, *(("lm_head",) if has_w else ()),
            *(("val_counts", "val_agree") if has_val else ()))
    C = class_tensors(stats, device, classifier=has_w, keys=keys)
    out: dict[str, float] = {}
    if set(names) - set(NEEDS_CLASSIFIER) - set(NEEDS_VALIDATION):
        P = pairwise_sums(stats, C, tile, per_class=False, progress=False)
        out.update({**_nc1(P), **_nc2(C, P), **_nc2_etf(C), **_gnc2(P)})
    if set(names) & set(NEEDS_SCATTER):
        out.update(_nc1_pinv(stats, C))
    if set(names) & set(NEEDS_CLASSIFIER):
        out.update({**_nc3(C), **_nc3_error(stats, C)})
    if set(names) & set(NEEDS_VALIDATION):
        out.update(nc4_measure(stats))
    return {m: float(out[m]) for m in MEASURES if m in names}


# ---------------------------------------------------------------------------------------------
# Files


def _typed_metadata(meta: Mapping[str, str]) -> dict[str, str | int]:
    """Metadata with the integer fields parsed (the rest stays as strings)."""
    return {k: int(v) if k in INT_METADATA and isinstance(v, str) and v.lstrip("-").isdigit() else v
            for k, v in meta.items()}


def measure_stats_file(path: str | Path, device: str | torch.device = "cpu", tile: int = 2048,
                       progress: bool = True) -> dict:
    """Measures of one stats.safetensors (verified read) plus the metadata that identifies its
    model; ``path`` as given (callers resolve repository-relative paths)."""
    return _measure_file(path, device, tile, per_class=False, progress=progress)[0]


def _measure_file(path: str | Path, device: str | torch.device, tile: int, per_class: bool,
                  progress: bool) -> tuple[dict, pd.DataFrame | None]:
    """(measures with the file's metadata, per-class table or None) of one stats file."""
    path = Path(path)
    stats, meta = read_stats(path)  # verifies means_hash and the LM-head hash
    measures, table = measure_stats(stats, device, tile, per_class, progress)
    return ({**_typed_metadata(meta), **measures, "stats_path": str(path),
             "measure_version": MEASURE_VERSION}, table)


def measure_file_with_table(path: str | Path, device: str | torch.device = "cpu",
                            tile: int = 2048, progress: bool = True
                            ) -> tuple[dict, pd.DataFrame]:
    """``measure_stats_file`` plus the per-class table, from one pairwise pass."""
    return _measure_file(path, device, tile, per_class=True, progress=progress)
