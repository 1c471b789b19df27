"""The measures of docs/paper.md section 5 as plain, readable definitions: loops over pairs in
numpy float64, one formula per line, next to the paper's notation. Slow (O(K^2 D) Python
work), for tests and for reading; ``linguistic_collapse.nc.measure`` computes the same numbers fast and is
tested against this module.

Notation: K classes with N_c >= 1; mu_c the class mean; sigma_c^2 = sq_dev_c / N_c the trace of
the within-class covariance; mu_G the unweighted mean of the mu_c; m_c = mu_c - mu_G; u_c =
m_c / ||m_c||; w_c the LM-head row. "Over pairs": over unordered pairs c < c'. Standard
deviations and variances are population ones (ddof = 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from linguistic_collapse.nc.registry import PINV_MEASURES, PINV_RTOLS

PINV_RTOL = PINV_RTOLS[0]  # nc1_pinv's cut-off (the reason is at linguistic_collapse.nc.measure.PINV_RTOL)


@dataclass
class Classes:
    """The classes with N_c >= 1 and their plain quantities."""

    ids: np.ndarray  # (K,) token ids
    N: np.ndarray  # (K,) training counts
    mu: np.ndarray  # (K, D) class means
    sigma2: np.ndarray  # (K,) within-class variance (trace)
    M: np.ndarray  # (K, D) centred means m_c
    W: np.ndarray  # (K, D) LM-head rows w_c


def classes(stats: Mapping[str, Any]) -> Classes:
    """The class-level quantities of a stats mapping (tensors or arrays, linguistic_collapse.pipeline.collect format)."""
    counts = np.asarray(stats["counts"])
    keep = counts >= 1
    N = counts[keep].astype(np.float64)
    mu = np.asarray(stats["sums"], dtype=np.float64)[keep] / N[:, None]
    sigma2 = np.asarray(stats["sq_dev"], dtype=np.float64)[keep] / N
    M = mu - mu.mean(axis=0)
    W = np.asarray(stats["lm_head"], dtype=np.float64)[keep]
    return Classes(np.flatnonzero(keep), N, mu, sigma2, M, W)


def pair_matrices(C: Classes) -> dict[str, np.ndarray]:
    """K x K matrices of the pairwise quantities (NaN on the diagonal), by a loop over pairs:
    cdnv4 = (s_c^2 + s_c'^2) / (2 ||mu_c - mu_c'||^4), cdnv2 the same with ||.||^2,
    cos = cos(m_c, m_c'), logk = log(1 / ||u_c - u_c'||)."""
    K = len(C.mu)
    norms = np.linalg.norm(C.M, axis=1)
    out = {k: np.full((K, K), np.nan) for k in ("cdnv4", "cdnv2", "cos", "logk")}
    for c in range(K):
        for d in range(K):
            if c == d:
                continue
            dist2 = np.sum((C.mu[c] - C.mu[d]) ** 2)
            out["cdnv4"][c, d] = (C.sigma2[c] + C.sigma2[d]) / (2 * dist2**2)
            out["cdnv2"][c, d] = (C.sigma2[c] + C.sigma2[d]) / (2 * dist2)
            out["cos"][c, d] = C.M[c] @ C.M[d] / (norms[c] * norms[d])
            out["logk"][c, d] = np.log(1 / np.linalg.norm(C.M[c] / norms[c] - C.M[d] / norms[d]))
    return out


def duality(C: Classes) -> np.ndarray:
    """cos(w_c, m_c) per class (K,)."""
    return np.sum(C.W * C.M, axis=1) / (np.linalg.norm(C.W, axis=1) * np.linalg.norm(C.M, axis=1))


def etf_error(G: np.ndarray) -> float:
    """||G / ||G||_F - (I - 11^T / K) / sqrt(K - 1)||_F of a K x K matrix G, formed whole."""
    K = len(G)
    etf = (np.eye(K) - np.ones((K, K)) / K) / np.sqrt(K - 1)
    return float(np.linalg.norm(G / np.linalg.norm(G) - etf))


def nc1_pinv(stats: Mapping[str, Any], C: Classes, rtol: float = PINV_RTOL) -> float:
    """Tr(Sigma_W Sigma_B^+) / K: Sigma_W = sw / N (all training samples), Sigma_B = M^T M / K;
    NaN without ``sw``. The pseudo-inverse drops eigenvalues below ``rtol`` of the largest."""
    if "sw" not in stats:
        return float("nan")
    K, D = C.M.shape
    sigma_w = np.asarray(stats["sw"], dtype=np.float64) / C.N.sum()
    sigma_b = C.M.T @ C.M / K
    pinv = np.linalg.pinv(sigma_b, rcond=rtol, hermitian=True)
    return float(np.trace(sigma_w @ pinv) / K)


def measures(stats: Mapping[str, Any]) -> dict[str, float]:
    """Every measure of linguistic_collapse.nc.registry.MEASURES, straight from its definition."""
    C = classes(stats)
    P = pair_matrices(C)
    upper = np.triu_indices(len(C.mu), k=1)  # the pairs c < c'
    norms = np.linalg.norm(C.M, axis=1)
    cos = P["cos"][upper]
    dual = duality(C)
    return {
        "nc1_cdnv": P["cdnv4"][upper].mean(),  # NC1, the paper's form
        "nc1_cdnv_galanti": P["cdnv2"][upper].mean(),  # NC1, Galanti et al. 2022
        # NC1, Papyan et al. 2020, under each pre-registered cut-off
        **{name: nc1_pinv(stats, C, rtol) for name, rtol in zip(PINV_MEASURES, PINV_RTOLS, strict=True)},
        "nc2_norm_cv": norms.std() / norms.mean(),  # NC2 equinormness
        "nc2_lognorm_cv": np.log(norms).std() / np.log(norms).mean(),
        "nc2_interference_mean": cos.mean(),  # NC2 equiangularity
        "nc2_interference_std": cos.std(),
        "nc2_interference_cv": cos.std() / abs(cos.mean()),
        "nc2_etf_error": etf_error(C.M @ C.M.T),  # NC2 as a simplex-ETF distance
        "gnc2_logkernel_mean": P["logk"][upper].mean(),  # GNC2 hyperspherical uniformity
        "gnc2_logkernel_var": P["logk"][upper].var(),
        "nc3_duality_mean": dual.mean(),  # NC3 self-duality
        "unc3_duality_cv": dual.std() / abs(dual.mean()),  # UNC3 uniform duality
        "nc3_duality_error": etf_error(C.W @ C.M.T),  # NC3 as a self-duality distance
        "nc4_agreement": float(np.sum(np.asarray(stats["val_agree"]))
                               / np.sum(np.asarray(stats["val_counts"]))),  # NC4, token-weighted
    }


def per_class(stats: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per class: variability = mean over c' != c of the pairwise CDNV (‖Δ‖⁴ form) and
    interference = mean over c' != c of cos(m_c, m_c'), plus sigma2, norm and duality."""
    C = classes(stats)
    P = pair_matrices(C)
    return {"token_id": C.ids, "count": C.N, "sigma2": C.sigma2,
            "norm": np.linalg.norm(C.M, axis=1), "duality": duality(C),
            "variability": np.nanmean(P["cdnv4"], axis=1), "interference": np.nanmean(P["cos"], axis=1)}
