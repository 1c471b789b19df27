"""Combining the ``ClassStats`` of torch.distributed ranks in place (DDP, FSDP), exactly.

Pass 1 is the k-part form of Chan's merge: with the global per-class counts N_c and sums S_c
(``all_reduce`` SUM) every rank knows the global means mu_c = S_c / N_c, and adds its own
cross term n_rc ||mu_rc - mu_c||^2 to its M2 (and n_rc (mu_rc - mu_c)(mu_rc - mu_c)^T to its
pooled scatter) before those are summed too:

    M2_c = sum_r M2_rc + sum_r n_rc ||mu_rc - mu_c||^2,

the same identity ``linguistic_collapse.nc.accumulate.merge_m2`` applies to two parts, with
differences of means (no large common offset squared), and no rank ever holds another rank's
(V, D) sums. Pass 2 needs the same train means on every rank (checked by their hash), and its
counts are summed. Tokens and blocks are summed per pass.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from linguistic_collapse.core.errors import UserError
from linguistic_collapse.nc import stats_file as sf
from linguistic_collapse.nc.accumulate import means_hash

# ``stats`` below is a ``linguistic_collapse.nc.classstats.ClassStats`` (typed Any: that module
# imports this one)
ClassStats = Any


def _cross(counts: Tensor, sums: Tensor, n: Tensor, s: Tensor) -> Tensor:
    """(V, D) rows sqrt(n_rc) (mu_rc - mu_c) of this rank's classes (zero where n_rc = 0),
    from its counts n and sums s and the global counts and sums."""
    mu = sums / counts.clamp(min=1).unsqueeze(1).double()  # (V, D) global means
    mine = s / n.clamp(min=1).unsqueeze(1).double()  # (V, D) this rank's means
    return (mine - mu) * n.double().sqrt().unsqueeze(1)


def _reduce_pass1(stats: ClassStats, group: Any) -> None:
    t = stats.tensors
    n = t["counts"].clone()  # this rank's counts
    local = {k: t[k].clone() for k in t if k.endswith("sums")}  # this rank's sums
    dist.all_reduce(t["counts"], group=group)
    for key in local:
        dist.all_reduce(t[key], group=group)
    for key, s in local.items():
        delta = _cross(t["counts"], t[key], n, s)  # (V, D)
        sq_dev = key.removesuffix("sums") + "sq_dev"
        t[sq_dev] += (delta * delta).sum(1)
        if key == "sums" and "sw" in t:
            t["sw"] += delta.T @ delta
        dist.all_reduce(t[sq_dev], group=group)
    if "sw" in t:
        dist.all_reduce(t["sw"], group=group)


def _reduce_pass2(stats: ClassStats, group: Any) -> None:
    valid, means = stats._frozen  # noqa: SLF001 (the class's own state, one concern per file)
    mine = (means_hash(means.cpu()), means_hash(stats.W.cpu()))
    every: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(every, mine, group=group)
    if any(other != mine for other in every):
        raise UserError("ClassStats.all_reduce_: the ranks ran add_validation with different "
                        "train means or W; call all_reduce_ on every rank after pass 1, before "
                        "add_validation, and pass every rank the same W")
    for key in sf.PASS_TENSORS[2]:
        dist.all_reduce(stats.tensors[key], group=group)


def all_reduce_stats(stats: ClassStats, group: Any = None) -> None:
    """``ClassStats.all_reduce_``: combine pass 1 (not yet combined, pass 2 not started) or
    pass 2 (pass 1 combined) of every rank of ``group``, in place (module docstring)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise UserError("ClassStats.all_reduce_ needs torch.distributed initialised "
                        "(dist.init_process_group) on every rank")
    if stats.frozen and 1 not in stats.reduced:
        raise UserError("ClassStats.all_reduce_ after add_validation without combining pass 1 "
                        "first: pass 2 must use the means of every rank; call all_reduce_ "
                        "after pass 1, before add_validation")
    pass_ = 2 if stats.frozen else 1
    if pass_ in stats.reduced:
        raise UserError(f"ClassStats.all_reduce_ called twice for pass {pass_}: it would count "
                        "every rank's statistics again")
    if pass_ == 1:
        _reduce_pass1(stats, group)
    else:
        _reduce_pass2(stats, group)
    totals = torch.tensor([stats.tokens[pass_], stats.blocks[pass_]], dtype=torch.long,
                          device=stats.tensors["counts"].device)
    dist.all_reduce(totals, group=group)
    stats.tokens[pass_], stats.blocks[pass_] = (int(v) for v in totals.tolist())
    stats.reduced.add(pass_)
