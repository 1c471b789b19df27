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
from differences. All standard deviations and variances are population ones (ddof = 0).
The plain definitions these must equal are in ``lib.nc.reference``; the list is ``lib.nc.registry``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lib.core.errors import UserError
from lib.nc.accumulate import resolve_device
from lib.nc.registry import MEASURES, get
from lib.nc.stats_file import STATS_KEYS, dtype_problem, read_stats

REL_CLOSE = 1e-6  # recompute pairs with d2 < REL_CLOSE * (||m_c||^2 + ||m_c'||^2) exactly
EXACT_CHUNK = 4096  # pairs per chunk when recomputing close pairs from differences
MOMENT_KEYS = ("counts", "sums", "sq_dev")  # what the geometry measures need
GEOMETRY = [m for m in MEASURES if m.startswith(("nc1", "nc2", "gnc2"))]  # no classifier needed
INT_METADATA = (
    "vocab_size", "width", "format_version",
    "pass1_blocks", "pass1_tokens", "pass2_blocks", "pass2_tokens",
)

# ---------------------------------------------------------------------------------------------
# Input checks and class-level tensors


def _all_finite(x: Tensor, chunk: int = 4096) -> bool:
    """torch.isfinite(x).all() in row chunks (its temporaries would be as large as x)."""
    return all(bool(torch.isfinite(x[lo:lo + chunk]).all()) for lo in range(0, len(x), chunk))


def _check_stats(stats: Mapping[str, Tensor], keys: tuple[str, ...] = STATS_KEYS) -> None:
    """Raise ValueError naming the tensor when a stats mapping is incomplete or malformed;
    ``keys``: the tensors needed (``MOMENT_KEYS``: class moments alone, no classifier)."""
    missing = [k for k in keys if k not in stats]
    if missing:
        raise ValueError(f"stats lack tensors {missing}; expected {list(keys)} (lib.stages.collect)")
    problem = dtype_problem({k: stats[k] for k in keys})
    if problem:
        raise ValueError(f"stats: {problem}")
    V = stats["counts"].shape[0]
    for key in {"counts", "sq_dev", "val_counts", "val_agree"} & set(keys):
        if stats[key].shape != (V,):
            raise ValueError(f"{key} has shape {tuple(stats[key].shape)}; expected ({V},) like counts")
    D = stats["sums"].shape[-1]
    for key in {"sums", "lm_head"} & set(keys):
        if stats[key].shape != (V, D):
            raise ValueError(f"{key} has shape {tuple(stats[key].shape)}; expected ({V}, {D})")
    for key in {"sums", "lm_head", "sq_dev"} & set(keys):
        if not _all_finite(stats[key]):
            raise ValueError(f"{key} contains NaN or inf; the statistics pass that wrote it diverged")
    for key in {"counts", "sq_dev", "val_counts", "val_agree"} & set(keys):
        if (stats[key] < 0).any():
            raise ValueError(f"{key} has negative entries; the stats file is corrupt")
    if "val_counts" not in keys:
        return
    if (stats["val_agree"] > stats["val_counts"]).any():
        raise ValueError("val_agree exceeds val_counts for some class; the stats file is corrupt")
    if int(stats["val_counts"].sum()) == 0:
        raise ValueError("val_counts sums to 0: no validation tokens; run pass 2 of lib.stages.collect")


@dataclass
class _Classes:
    """The K classes with count >= 1, as float64 tensors on the compute device."""

    idx: Tensor  # (K,) token ids, on the stats' device
    counts: Tensor  # (K,) int64
    sigma2: Tensor  # (K,) trace of the within-class covariance, sq_dev / N_c
    U: Tensor  # (K, D) unit centred means m_c / ||m_c||
    norms: Tensor  # (K,) ||m_c||, m_c = mu_c - mu_G
    duality: Tensor | None  # (K,) cos(w_c, m_c); None without a classifier


def _centred_means(stats: Mapping[str, Tensor], idx: Tensor, dev: torch.device) -> Tensor:
    """M (K, D) float64: class means minus their unweighted average; one (K, D) copy."""
    counts = stats["counts"][idx].to(dev, torch.float64)  # (K,)
    M = stats["sums"][idx].to(dev, torch.float64)  # (K, D) fresh copy (fancy indexing)
    M.div_(counts[:, None])
    M.sub_(M.mean(dim=0))
    return M


def _duality(lm_head: Tensor, idx: Tensor, M: Tensor, norms: Tensor, chunk: int = 4096) -> Tensor:
    """cos(w_c, m_c) per class (K,), in row chunks so W is never copied whole in float64."""
    out = torch.empty_like(norms)
    for lo in range(0, len(idx), chunk):
        W = lm_head[idx[lo:lo + chunk]].to(M.device, torch.float64)  # (k, D)
        dot = (W * M[lo:lo + chunk]).sum(dim=1)  # (k,)
        out[lo:lo + chunk] = dot / (W.norm(dim=1) * norms[lo:lo + chunk])
    return out


def _classes(stats: Mapping[str, Tensor], device: str | torch.device,
             classifier: bool = True, keys: tuple[str, ...] | None = None) -> _Classes:
    """Validate the stats (``keys``, default: the whole file's, or the class moments alone
    without ``classifier``) and build the class-level tensors (classes = counts >= 1);
    ``classifier`` False: class moments alone (no LM head, no duality)."""
    _check_stats(stats, keys or (STATS_KEYS if classifier else MOMENT_KEYS))
    dev = resolve_device(device)
    idx = torch.nonzero(stats["counts"] >= 1).flatten()  # (K,)
    if len(idx) < 2:
        raise ValueError(f"only {len(idx)} class(es) have count >= 1; the measures need at least 2")
    counts = stats["counts"][idx].to(dev)
    sigma2 = stats["sq_dev"][idx].to(dev, torch.float64) / counts
    M = _centred_means(stats, idx, dev)  # (K, D)
    norms = M.norm(dim=1)
    duality = _duality(stats["lm_head"], idx, M, norms) if classifier else None
    U = M.div_(norms[:, None])  # in place: M is not needed again
    return _Classes(idx, counts, sigma2, U, norms, duality)


# ---------------------------------------------------------------------------------------------
# Pairwise pass over the tiles of one Gram matrix
#
# Per tile (rows a in block i, columns b in block j) two buffers hold
#   w = 1 - <u_a, u_b>                       = ||u_a - u_b||^2 / 2   (u: unit centred means)
#   v = <u_a, u_b> - (n_a/n_b + n_b/n_a) / 2 = -d2 / (2 n_a n_b),  d2 = ||mu_a - mu_b||^2
# from one Gram block, so the CDNV sums are matrix-vector products with the norms n folded into
# the vectors, and the cosine moments are those of w (var cos = var w).


@dataclass
class _Moments:
    """Count, mean and M2 (sum of squared deviations) of a set of values."""

    n: int
    mean: float
    M2: float

    @property
    def var(self) -> float:
        """Population variance (ddof = 0)."""
        return self.M2 / self.n


@dataclass
class _PairSums:
    """What the pairwise pass returns: sums for means, moments for variances, per-class sums."""

    n_pairs: int
    cdnv: float  # sum over pairs of (s_c + s_c') / (2 d^4)
    galanti: float  # sum over pairs of (s_c + s_c') / (2 d^2)
    w: _Moments  # over pairs of w = 1 - cos(m_c, m_c')
    log_h2: _Moments  # over pairs of log ||m^_c - m^_c'||^2 = log(2 w)
    variability: Tensor | None  # (K,) sum over c' != c of (s_c + s_c') / (2 d^4)


class _Exact:
    """Distances of selected pairs recomputed from differences (no cancellation)."""

    def __init__(self, stats: Mapping[str, Tensor], C: _Classes):
        self.sums, self.counts, self.C = stats["sums"], stats["counts"], C

    def _mu(self, rows: Tensor) -> Tensor:
        ids = self.C.idx[rows.to(self.C.idx.device)]
        mu = self.sums[ids].double() / self.counts[ids].double()[:, None]  # (P, D)
        return mu.to(self.C.U.device)

    def d2(self, a: Tensor, b: Tensor) -> Tensor:
        """||mu_a - mu_b||^2 from the uncentred means (centring would add rounding)."""
        return (self._mu(a) - self._mu(b)).square().sum(dim=1)  # (P,)

    def h2(self, a: Tensor, b: Tensor) -> Tensor:
        """||u_a - u_b||^2 between unit centred means."""
        return (self.C.U[a] - self.C.U[b]).square().sum(dim=1)  # (P,)


def _fix_close(w: Tensor, v: Tensor, ri: slice, rj: slice, C: _Classes, exact: _Exact) -> None:
    """Recompute exactly, in place, the pairs of a tile whose Gram-derived distances lost
    digits: d2 < REL_CLOSE (n_a^2 + n_b^2) (i.e. -v < REL_CLOSE rho / 2) or w < REL_CLOSE."""
    n_i, n_j = C.norms[ri], C.norms[rj]
    rho_max = n_i.max() / n_j.min() + n_j.max() / n_i.min()
    if w.min() >= REL_CLOSE * max(1.0, 0.5 * float(rho_max)):  # -v >= w: one cheap pre-check
        return
    rho = n_i[:, None] / n_j + n_j / n_i[:, None]  # (ti, tj), only for tiles with close pairs
    a, b = torch.nonzero((v > -0.5 * REL_CLOSE * rho) | (w < REL_CLOSE), as_tuple=True)
    for lo in range(0, len(a), EXACT_CHUNK):
        aa, bb = a[lo:lo + EXACT_CHUNK], b[lo:lo + EXACT_CHUNK]
        ga, gb = aa + ri.start, bb + rj.start  # class positions
        v[aa, bb] = -exact.d2(ga, gb) / (2 * C.norms[ga] * C.norms[gb])
        w[aa, bb] = exact.h2(ga, gb) / 2


@dataclass
class _Buffers:
    """Two preallocated tile buffers: fresh large allocations cost page faults per tile."""

    w: Tensor
    v: Tensor

    @classmethod
    def make(cls, tile: int, dev: torch.device) -> _Buffers:
        return cls(*(torch.empty(tile * tile, dtype=torch.float64, device=dev) for _ in range(2)))

    def views(self, ti: int, tj: int) -> tuple[Tensor, Tensor]:
        return self.w[: ti * tj].view(ti, tj), self.v[: ti * tj].view(ti, tj)


def _tile_geometry(C: _Classes, ri: slice, rj: slice, buf: _Buffers) -> tuple[Tensor, Tensor]:
    """w and v (each (ti, tj)) of one tile, from one Gram block of unit means."""
    U, n = C.U, C.norms
    w, v = buf.views(U[ri].shape[0], U[rj].shape[0])
    cos = torch.mm(U[ri], U[rj].T, out=w)  # (ti, tj)
    torch.addcmul(cos, n[ri, None], n[rj].reciprocal(), value=-0.5, out=v)
    v.addcmul_(n[ri, None].reciprocal(), n[rj], value=-0.5)  # cos - rho / 2
    torch.sub(torch.ones((), dtype=w.dtype, device=w.device), cos, out=w)  # 1 - cos, in place
    return w, v


def _tile_cdnv(r: Tensor, C: _Classes, ri: slice, rj: slice, acc: dict) -> None:
    """Add one tile's CDNV sums; r = 1 / v = -2 n_a n_b / d2 (ti, tj), overwritten.

    (s_a + s_b) / (2 d2) = -(s_a + s_b) r / (4 n_a n_b) and (s_a + s_b) / (2 d2^2) =
    (s_a + s_b) r^2 / (8 n_a^2 n_b^2): each tile sum is two matrix-vector products.
    """
    n_i, n_j, s_i, s_j = C.norms[ri], C.norms[rj], C.sigma2[ri], C.sigma2[rj]
    p_i, p_j = n_i.reciprocal(), n_j.reciprocal()
    acc["galanti"] -= 0.25 * ((s_i * p_i) @ (r @ p_j) + p_i @ (r @ (s_j * p_j)))
    r.square_()
    p_i, p_j = p_i.square(), p_j.square()  # 1 / n^2
    row_p, row_q = r @ p_j, r @ (s_j * p_j)  # (ti,)
    acc["cdnv"] += 0.125 * ((s_i * p_i) @ row_p + p_i @ row_q)
    if acc["variability"] is not None:
        col_p, col_q = p_i @ r, (s_i * p_i) @ r  # (tj,)
        acc["variability"][ri] += 0.125 * (s_i * p_i * row_p + p_i * row_q)
        acc["variability"][rj] += 0.125 * (s_j * p_j * col_p + p_j * col_q)


def _moments(x: Tensor, mean: Tensor, scratch: Tensor, lower: Tensor | None
             ) -> tuple[int, Tensor, Tensor]:
    """(n, mean, M2) of a tile given its mean (second pass of the two-pass algorithm);
    entries under ``lower`` (diagonal tiles: c >= c') are left out. Mean and M2 stay device
    tensors (no synchronisation per tile) until ``_fold``."""
    n = x.numel() if lower is None else x.shape[0] * (x.shape[0] - 1) // 2
    dev = torch.sub(x, mean, out=scratch)
    if lower is not None:
        dev.masked_fill_(lower, 0.0)
    return n, mean, torch.dot(dev.view(-1), dev.view(-1))


def _mean_cos(C: _Classes, ri: slice, rj: slice) -> Tensor:
    """Mean of <u_a, u_b> over a tile's pairs from block sums of U, without the tile:
    s_i . s_j / (ti tj), or (||s_i||^2 - sum ||u_a||^2) / (ti (ti - 1)) on the diagonal."""
    s_i = C.U[ri].sum(dim=0)  # (D,)
    if ri != rj:
        return s_i @ C.U[rj].sum(dim=0) / (C.U[ri].shape[0] * C.U[rj].shape[0])
    t, flat = C.U[ri].shape[0], C.U[ri].reshape(-1)  # a view: no (t, D) temporary
    return (s_i @ s_i - flat @ flat) / (t * (t - 1))


def _tile_angles(w: Tensor, scratch: Tensor, lower: Tensor | None, C: _Classes, ri: slice,
                 rj: slice, acc: dict) -> None:
    """Add one tile's moments of w = 1 - cos and of log w; w is overwritten with log w."""
    acc["w"].append(_moments(w, 1.0 - _mean_cos(C, ri, rj), scratch, lower))
    n = w.numel() if lower is None else w.shape[0] * (w.shape[0] - 1) // 2
    w.log_()  # masked entries hold w = 1, log 1 = 0
    acc["log_w"].append(_moments(w, w.sum() / n, scratch, lower))


def _fold(moments: list[tuple[int, Tensor, Tensor]], shift: float = 0.0) -> _Moments:
    """Combine per-tile (n, mean, M2) exactly, all at once: M2 = sum M2_i + sum n_i (mean_i -
    mean)^2 (Chan's parallel formula, pooled); ``shift`` is added to every value."""
    n = torch.tensor([m[0] for m in moments], dtype=torch.float64)  # (T,)
    means = torch.stack([torch.as_tensor(m[1], dtype=torch.float64) for m in moments]).cpu()
    M2s = torch.stack([m[2] for m in moments]).cpu()
    mean = (n * means).sum() / n.sum()
    M2 = M2s.sum() + (n * (means - mean).square()).sum()
    return _Moments(int(n.sum()), float(mean) + shift, float(M2))


def _tiles(K: int, tile: int) -> list[tuple[slice, slice]]:
    """The upper triangle of tiles (j >= i) of a K x K matrix."""
    starts = range(0, K, tile)
    return [(slice(i, min(i + tile, K)), slice(j, min(j + tile, K)))
            for i in starts for j in starts if j >= i]


def _pairwise(stats: Mapping[str, Tensor], C: _Classes, tile: int, per_class: bool,
              progress: bool) -> _PairSums:
    """One tiled pass over the upper triangle of the Gram matrix of the unit centred means."""
    if tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile}")
    K, dev = len(C.norms), C.U.device
    tile = min(tile, K)
    zero = torch.zeros((), dtype=torch.float64, device=dev)
    acc = {"cdnv": zero.clone(), "galanti": zero.clone(), "w": [], "log_w": [],
           "variability": zero.new_zeros(K) if per_class else None}
    buf, exact = _Buffers.make(tile, dev), _Exact(stats, C)
    lower = torch.ones(tile, tile, dtype=torch.bool, device=dev).tril_()  # c >= c'
    for ri, rj in tqdm(_tiles(K, tile), desc="pairwise measures", disable=not progress):
        if ri == rj and ri.stop - ri.start == 1:
            continue  # a last diagonal tile of one class holds no pair
        w, v = _tile_geometry(C, ri, rj, buf)
        low = lower[: w.shape[0], : w.shape[1]] if ri == rj else None
        if low is not None:
            v.masked_fill_(low, -math.inf)  # 1 / v = 0: left out of the CDNV sums
            w.masked_fill_(low, 1.0)  # not flagged as close; log 1 = 0
        _fix_close(w, v, ri, rj, C, exact)
        _tile_cdnv(v.reciprocal_(), C, ri, rj, acc)
        _tile_angles(w, v, low, C, ri, rj, acc)
    return _PairSums(K * (K - 1) // 2, float(acc["cdnv"]), float(acc["galanti"]),
                     _fold(acc["w"]), _fold(acc["log_w"], shift=math.log(2.0)),
                     acc["variability"])


def _interference(C: _Classes) -> Tensor:
    """Per class, mean over c' != c of cos(m_c, m_c') = (u_c . S - ||u_c||^2) / (K - 1) with
    S the sum of all unit means: exact and O(K D), no pairwise pass needed."""
    S = C.U.sum(dim=0)  # (D,)
    return (C.U @ S - C.U.square().sum(dim=1)) / (len(C.norms) - 1)


# ---------------------------------------------------------------------------------------------
# The measures


def _cv(x: Tensor) -> float:
    """Coefficient of variation std / mean, population std (ddof = 0); NaN for a zero mean."""
    mean = float(x.mean())
    return float(x.std(correction=0)) / mean if mean != 0 else math.nan


def undefined_reasons(C: _Classes, out: Mapping[str, float]) -> dict[str, str]:
    """Why each non-finite measure of ``out`` is undefined (the geometry that makes it so)."""
    flat = C.idx[C.norms == 0].tolist()
    at_centre = (f"class mean of token(s) {flat[:5]} equals the global mean (norm 0), so its "
                 "direction and every cosine with it are undefined") if flat else ""
    reasons = {}
    for key, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            if at_centre:
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


def _defined(out: dict[str, float], C: _Classes) -> dict:
    """``out`` with each non-finite measure as NaN and ``undefined`` {measure: reason} added
    when there is any (never a fake finite or infinite value)."""
    reasons = undefined_reasons(C, out)
    fixed = {k: math.nan if k in reasons else v for k, v in out.items()}
    return {**fixed, "undefined": reasons} if reasons else fixed


def _nc1(P: _PairSums) -> dict[str, float]:
    """NC1, within-class variability relative to between-class distance.

    ``nc1_cdnv``: mean over pairs of (sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^4), the
    variant of Wu & Papyan 2024; ``nc1_cdnv_galanti``: the class-distance normalised variance
    of Galanti et al. 2022 with ||mu_c - mu_c'||^2. Lower means more collapse.
    """
    return {"nc1_cdnv": P.cdnv / P.n_pairs, "nc1_cdnv_galanti": P.galanti / P.n_pairs}


def _nc2(C: _Classes, P: _PairSums) -> dict[str, float]:
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


def _gnc2(P: _PairSums) -> dict[str, float]:
    """GNC2 hyperspherical uniformity (Liu et al. 2023): mean and population variance over
    pairs of the log kernel log(1 / ||m^_c - m^_c'||) = -log(h2) / 2."""
    return {"gnc2_logkernel_mean": -0.5 * P.log_h2.mean, "gnc2_logkernel_var": 0.25 * P.log_h2.var}


def _nc3(C: _Classes) -> dict[str, float]:
    """NC3 self-duality mean_c cos(w_c, m_c) (Papyan et al. 2020) and UNC3 uniform duality,
    its coefficient of variation std / mean with population std (Wu & Papyan 2024)."""
    return {"nc3_duality_mean": float(C.duality.mean()), "unc3_duality_cv": _cv(C.duality)}


def nc4_measure(stats: Mapping[str, Tensor]) -> dict[str, float]:
    """NC4 agreement of the LM head with the nearest-class-centre rule (Papyan et al. 2020):
    the token-weighted fraction sum(val_agree) / sum(val_counts)."""
    total = int(stats["val_counts"].sum())
    if total == 0:
        raise ValueError("val_counts sums to 0: no validation tokens; run pass 2 of lib.stages.collect")
    return {"nc4_agreement": int(stats["val_agree"].sum()) / total}


def _measures(stats: Mapping[str, Tensor], C: _Classes, P: _PairSums) -> dict[str, float]:
    out = {**_nc1(P), **_nc2(C, P), **_gnc2(P), **_nc3(C),
           **nc4_measure(stats)}
    return _defined({**{k: float(out[k]) for k in MEASURES}, "num_classes": len(C.idx)}, C)


def _table(C: _Classes, P: _PairSums) -> pd.DataFrame:
    K = len(C.idx)
    columns = {
        "token_id": C.idx, "count": C.counts, "sigma2": C.sigma2, "norm": C.norms,
        "duality": C.duality, "variability": P.variability / (K - 1),
        "interference": _interference(C),
    }
    return pd.DataFrame({k: v.cpu().numpy() for k, v in columns.items()})


def geometry_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                      tile: int = 2048, progress: bool = False) -> dict[str, float]:
    """NC1, NC2 and GNC2 (``GEOMETRY``) plus ``num_classes`` from class moments alone (counts,
    sums, sq_dev): for features with no classifier of their own, e.g. an inner layer's."""
    C = _classes(stats, device, classifier=False)
    P = _pairwise(stats, C, tile, per_class=False, progress=progress)
    out = {**_nc1(P), **_nc2(C, P), **_gnc2(P)}
    return _defined({**{k: float(out[k]) for k in GEOMETRY}, "num_classes": len(C.idx)}, C)


def measure_stats(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                tile: int = 2048, per_class: bool = True, progress: bool = True
                ) -> tuple[dict[str, float], pd.DataFrame | None]:
    """The measures and (if ``per_class``) the per-class table from ONE pairwise pass."""
    C = _classes(stats, device)
    P = _pairwise(stats, C, tile, per_class=per_class, progress=progress)
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
# ``val_counts`` and ``val_agree`` for NC4), e.g. ``lib.nc.ClassStats.tensors``

NEEDS_CLASSIFIER = ("nc3_duality_mean", "unc3_duality_cv")  # need W (V, D)
NEEDS_VALIDATION = ("nc4_agreement",)  # need pass 2


def _geometry(stats: Mapping[str, Tensor], device: str | torch.device, tile: int
              ) -> tuple[_Classes, _PairSums]:
    C = _classes(stats, device, classifier=False)
    return C, _pairwise(stats, C, tile, per_class=False, progress=False)


def nc1_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                 tile: int = 2048) -> dict[str, float]:
    """NC1 within-class variability: ``nc1_cdnv`` (mean over pairs of (sigma_c^2 +
    sigma_c'^2) / (2 ||mu_c - mu_c'||^4), Wu & Papyan 2024) and ``nc1_cdnv_galanti`` (the same
    with ||mu_c - mu_c'||^2, Galanti et al. 2022). Lower means more collapse."""
    return _nc1(_geometry(stats, device, tile)[1])


def nc2_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                 tile: int = 2048) -> dict[str, float]:
    """NC2 equinormness (CV of the centred-mean norms, and of their logs) and equiangularity
    (mean, population std and CV of the pairwise cosines of the centred means)."""
    return _nc2(*_geometry(stats, device, tile))


def gnc2_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu",
                  tile: int = 2048) -> dict[str, float]:
    """GNC2 hyperspherical uniformity: mean and population variance over pairs of the log
    kernel log(1 / ||u_c - u_c'||) of the unit centred means."""
    return _gnc2(_geometry(stats, device, tile)[1])


def nc3_measures(stats: Mapping[str, Tensor], device: str | torch.device = "cpu"
                 ) -> dict[str, float]:
    """NC3 self-duality mean_c cos(w_c, m_c) and UNC3 uniform duality (its CV), with W the
    stats' ``lm_head`` (V, D)."""
    return _nc3(_classes(stats, device, keys=(*MOMENT_KEYS, "lm_head")))


def select_measures(stats: Mapping[str, Tensor], which: Sequence[str] | None = None,
                    device: str | torch.device = "cpu", tile: int = 2048) -> dict[str, float]:
    """The registry measures named in ``which`` (default: every one the tensors allow: the
    geometry always, NC3/UNC3 with ``lm_head``, NC4 with ``val_counts``), in registry order,
    from one pairwise pass; UserError naming what is missing for a named measure."""
    has_w, has_val = "lm_head" in stats, "val_counts" in stats
    if which is None:
        names = [m for m in MEASURES if (has_w or m not in NEEDS_CLASSIFIER)
                 and (has_val or m not in NEEDS_VALIDATION)]
    else:
        names = [get(m).name for m in which]
        if not has_w and set(names) & set(NEEDS_CLASSIFIER):
            raise UserError(f"{sorted(set(names) & set(NEEDS_CLASSIFIER))} need the classifier "
                            "W (V, D): pass W (the LM head's weight)")
        if not has_val and set(names) & set(NEEDS_VALIDATION):
            raise UserError("nc4_agreement needs pass 2: call add_validation(features, labels, "
                            "W) on held-out data first")
    keys = (*MOMENT_KEYS, *(("lm_head",) if has_w else ()),
            *(("val_counts", "val_agree") if has_val else ()))
    C = _classes(stats, device, classifier=has_w, keys=keys)
    out: dict[str, float] = {}
    if set(names) - set(NEEDS_CLASSIFIER) - set(NEEDS_VALIDATION):
        P = _pairwise(stats, C, tile, per_class=False, progress=False)
        out.update({**_nc1(P), **_nc2(C, P), **_gnc2(P)})
    if set(names) & set(NEEDS_CLASSIFIER):
        out.update(_nc3(C))
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
    return {**_typed_metadata(meta), **measures, "stats_path": str(path)}, table


def measure_file_with_table(path: str | Path, device: str | torch.device = "cpu",
                            tile: int = 2048, progress: bool = True
                            ) -> tuple[dict, pd.DataFrame]:
    """``measure_stats_file`` plus the per-class table, from one pairwise pass."""
    return _measure_file(path, device, tile, per_class=True, progress=progress)
