"""The tiled pairwise kernels behind the measures: input checks, the class-level tensors, and one
pass over the upper-triangle tiles of the Gram matrix of unit centred class means, reducing
means and Chan-merged variances tile by tile and recomputing near-coincident pairs exactly.

``linguistic_collapse.nc.measure`` assembles the measures from these sums (its docstring gives the maths)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from linguistic_collapse.nc.accumulate import resolve_device
from linguistic_collapse.nc.stats_file import dtype_problem

REL_CLOSE = 1e-6  # recompute pairs with d2 < REL_CLOSE * (||m_c||^2 + ||m_c'||^2) exactly
EXACT_CHUNK = 4096  # pairs per chunk when recomputing close pairs from differences

# ---------------------------------------------------------------------------------------------
# Input checks and class-level tensors


def _all_finite(x: Tensor, chunk: int = 4096) -> bool:
    """torch.isfinite(x).all() in row chunks (its temporaries would be as large as x)."""
    return all(bool(torch.isfinite(x[lo:lo + chunk]).all()) for lo in range(0, len(x), chunk))


def check_tensors(tensors: Mapping[str, Tensor], what: str = "stats") -> None:
    """Raise ValueError naming the tensor when class statistics are malformed: dtypes (counts
    int64, the rest float32/float64), shapes ([V] per class, [V, D] ``sums``/``means``/
    ``lm_head``), NaN or inf, negative counts, and pass 2's ``val_agree`` <= ``val_counts``
    with at least one validation token. ``what`` names the caller in the message."""
    problem = dtype_problem(dict(tensors))
    if problem:
        raise ValueError(f"{what}: {problem}")
    V = tensors["counts"].shape[0]
    for key in {"counts", "sq_dev", "val_counts", "val_agree"} & set(tensors):
        if tensors[key].shape != (V,):
            raise ValueError(f"{what}: {key} has shape {tuple(tensors[key].shape)}; expected "
                             f"({V},) like counts")
    rows = [k for k in ("sums", "means") if k in tensors]
    D = tensors[rows[0]].shape[-1]
    for key in {*rows, "lm_head"} & set(tensors):
        if tensors[key].shape != (V, D):
            raise ValueError(f"{what}: {key} has shape {tuple(tensors[key].shape)}; expected "
                             f"({V}, {D})")
    for key in {*rows, "lm_head", "sq_dev", "sw"} & set(tensors):
        if not _all_finite(tensors[key]):
            raise ValueError(f"{what}: {key} contains NaN or inf; the features or the "
                             "statistics pass that made it diverged")
    for key in {"counts", "sq_dev", "val_counts", "val_agree"} & set(tensors):
        if (tensors[key] < 0).any():
            raise ValueError(f"{what}: {key} has negative entries; these are not statistics "
                             "ClassStats accumulated")
    if "val_counts" not in tensors:
        return
    if (tensors["val_agree"] > tensors["val_counts"]).any():
        raise ValueError(f"{what}: val_agree exceeds val_counts for some class; these are not "
                         "statistics ClassStats.add_validation accumulated")
    if int(tensors["val_counts"].sum()) == 0:
        raise ValueError(f"{what}: val_counts sums to 0: no validation tokens; call "
                         "ClassStats.add_validation on held-out features first")


@dataclass
class Classes:
    """The K classes with count >= 1, as float64 tensors on the compute device."""

    idx: Tensor  # (K,) token ids, on the stats' device
    counts: Tensor  # (K,) int64
    sigma2: Tensor  # (K,) trace of the within-class covariance, sq_dev / N_c
    U: Tensor  # (K, D) unit centred means m_c / ||m_c||
    norms: Tensor  # (K,) ||m_c||, m_c = mu_c - mu_G
    duality: Tensor | None  # (K,) cos(w_c, m_c); None without a classifier


def _centred_means(means: Tensor, idx: Tensor, dev: torch.device) -> Tensor:
    """M (K, D) float64: class means minus their unweighted average; one (K, D) copy."""
    M = means[idx].to(dev, torch.float64)  # (K, D) fresh copy (fancy indexing)
    M.sub_(M.mean(dim=0))
    return M


def _duality(W: Tensor, idx: Tensor, M: Tensor, norms: Tensor, chunk: int = 4096) -> Tensor:
    """cos(w_c, m_c) per class (K,), in row chunks so W is never copied whole in float64."""
    out = torch.empty_like(norms)
    for lo in range(0, len(idx), chunk):
        rows = W[idx[lo:lo + chunk]].to(M.device, torch.float64)  # (k, D)
        dot = (rows * M[lo:lo + chunk]).sum(dim=1)  # (k,)
        out[lo:lo + chunk] = dot / (rows.norm(dim=1) * norms[lo:lo + chunk])
    return out


def class_tensors(counts: Tensor, means: Tensor, sq_dev: Tensor, W: Tensor | None,
                  device: str | torch.device) -> Classes:
    """The class-level tensors of the classes with count >= 1, from (already checked) counts
    (V,), float64 class means (V, D), within-class squared deviations sq_dev (V,) and, for the
    duality, the classifier W (V, D) (None: no duality)."""
    dev = resolve_device(device)
    idx = torch.nonzero(counts >= 1).flatten()  # (K,)
    if len(idx) < 2:
        raise ValueError(f"only {len(idx)} class(es) have count >= 1; the measures need at "
                         "least 2 (add features of more classes with ClassStats.add)")
    n = counts[idx].to(dev)
    sigma2 = sq_dev[idx].to(dev, torch.float64) / n
    M = _centred_means(means, idx, dev)  # (K, D)
    norms = M.norm(dim=1)
    duality = None if W is None else _duality(W, idx, M, norms)
    U = M.div_(norms[:, None])  # in place: M is not needed again
    return Classes(idx, n, sigma2, U, norms, duality)


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
class PairSums:
    """What the pairwise pass returns: sums for means, moments for variances, per-class sums."""

    n_pairs: int
    cdnv: float  # sum over pairs of (s_c + s_c') / (2 d^4)
    galanti: float  # sum over pairs of (s_c + s_c') / (2 d^2)
    w: _Moments  # over pairs of w = 1 - cos(m_c, m_c')
    log_h2: _Moments  # over pairs of log ||m^_c - m^_c'||^2 = log(2 w)
    variability: Tensor | None  # (K,) sum over c' != c of (s_c + s_c') / (2 d^4)


class _Exact:
    """Distances of selected pairs recomputed from differences (no cancellation)."""

    def __init__(self, means: Tensor, C: Classes):
        self.means, self.C = means, C

    def _mu(self, rows: Tensor) -> Tensor:
        ids = self.C.idx[rows.to(self.C.idx.device)]
        return self.means[ids].to(self.C.U.device, torch.float64)  # (P, D)

    def d2(self, a: Tensor, b: Tensor) -> Tensor:
        """||mu_a - mu_b||^2 from the uncentred means (centring would add rounding)."""
        return (self._mu(a) - self._mu(b)).square().sum(dim=1)  # (P,)

    def h2(self, a: Tensor, b: Tensor) -> Tensor:
        """||u_a - u_b||^2 between unit centred means."""
        return (self.C.U[a] - self.C.U[b]).square().sum(dim=1)  # (P,)


def _fix_close(w: Tensor, v: Tensor, ri: slice, rj: slice, C: Classes, exact: _Exact) -> None:
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


def _tile_geometry(C: Classes, ri: slice, rj: slice, buf: _Buffers) -> tuple[Tensor, Tensor]:
    """w and v (each (ti, tj)) of one tile, from one Gram block of unit means."""
    U, n = C.U, C.norms
    w, v = buf.views(U[ri].shape[0], U[rj].shape[0])
    cos = torch.mm(U[ri], U[rj].T, out=w)  # (ti, tj)
    torch.addcmul(cos, n[ri, None], n[rj].reciprocal(), value=-0.5, out=v)
    v.addcmul_(n[ri, None].reciprocal(), n[rj], value=-0.5)  # cos - rho / 2
    torch.sub(torch.ones((), dtype=w.dtype, device=w.device), cos, out=w)  # 1 - cos, in place
    return w, v


def _tile_cdnv(r: Tensor, C: Classes, ri: slice, rj: slice, acc: dict) -> None:
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


def _mean_cos(C: Classes, ri: slice, rj: slice) -> Tensor:
    """Mean of <u_a, u_b> over a tile's pairs from block sums of U, without the tile:
    s_i . s_j / (ti tj), or (||s_i||^2 - sum ||u_a||^2) / (ti (ti - 1)) on the diagonal."""
    s_i = C.U[ri].sum(dim=0)  # (D,)
    if ri != rj:
        return s_i @ C.U[rj].sum(dim=0) / (C.U[ri].shape[0] * C.U[rj].shape[0])
    t, flat = C.U[ri].shape[0], C.U[ri].reshape(-1)  # a view: no (t, D) temporary
    return (s_i @ s_i - flat @ flat) / (t * (t - 1))


def _tile_angles(w: Tensor, scratch: Tensor, lower: Tensor | None, C: Classes, ri: slice,
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


def pairwise_sums(means: Tensor, C: Classes, tile: int, per_class: bool,
                  progress: bool) -> PairSums:
    """One tiled pass over the upper triangle of the Gram matrix of the unit centred means;
    ``means`` (V, D) float64, the uncentred class means (near-coincident pairs)."""
    if tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile}")
    K, dev = len(C.norms), C.U.device
    tile = min(tile, K)
    zero = torch.zeros((), dtype=torch.float64, device=dev)
    acc = {"cdnv": zero.clone(), "galanti": zero.clone(), "w": [], "log_w": [],
           "variability": zero.new_zeros(K) if per_class else None}
    buf, exact = _Buffers.make(tile, dev), _Exact(means, C)
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
    return PairSums(K * (K - 1) // 2, float(acc["cdnv"]), float(acc["galanti"]),
                     _fold(acc["w"]), _fold(acc["log_w"], shift=math.log(2.0)),
                     acc["variability"])


def interference(C: Classes) -> Tensor:
    """Per class, mean over c' != c of cos(m_c, m_c') = (u_c . S - ||u_c||^2) / (K - 1) with
    S the sum of all unit means: exact and O(K D), no pairwise pass needed."""
    S = C.U.sum(dim=0)  # (D,)
    return (C.U @ S - C.U.square().sum(dim=1)) / (len(C.norms) - 1)
