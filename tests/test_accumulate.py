"""The statistics math (linguistic_collapse.nc.accumulate) against plain implementations of the definitions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from linguistic_collapse.nc import accumulate
from linguistic_collapse.nc.accumulate import (
    accumulate_moments,
    accumulate_sums,
    class_means,
    merge_m2,
    merge_scatter,
    ncc_agreement,
)
from numerics import ROUNDOFF64

TIGHT = ROUNDOFF64
V, D = 50, 16


def plain_two_pass(x: torch.Tensor, y: torch.Tensor, V: int) -> tuple[torch.Tensor, ...]:
    """The former two passes, plainly: counts and sums, then sum ||x - mu_c||^2 per class with
    the finished means. x (N, D) float64, y (N,) -> counts (V,), sums (V, D), sq_dev (V,)."""
    one_hot = F.one_hot(y, V).double()  # (N, V)
    counts, sums = one_hot.sum(0).long(), one_hot.T @ x
    sq = torch.zeros(V, dtype=torch.float64)
    for c in range(V):
        if counts[c]:
            sq[c] = ((x[y == c] - sums[c] / counts[c]) ** 2).sum()
    return counts, sums, sq


def streamed(x: torch.Tensor, y: torch.Tensor, V: int, batch: int) -> tuple[torch.Tensor, ...]:
    """accumulate_moments over consecutive batches of ``batch`` samples."""
    counts = torch.zeros(V, dtype=torch.long)
    sums = torch.zeros(V, x.shape[1], dtype=torch.float64)
    sq_dev = torch.zeros(V, dtype=torch.float64)
    for a in range(0, len(y), batch):
        accumulate_moments(x[a:a + batch], y[a:a + batch], counts, sums, sq_dev)
    return counts, sums, sq_dev


def realistic_features(offset: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 features (N, D) with class structure: Zipf-like labels over V classes, class
    centres of norm ~3 plus unit noise, a common ``offset`` on every coordinate; class 45 has one
    sample, classes 46 and 47 occur only in the last batch-sized stretch, 48 and 49 never."""
    g = torch.Generator().manual_seed(seed)
    n = 600
    p = 1.0 / torch.arange(1, 46, dtype=torch.float64)
    y = torch.multinomial(p, n, replacement=True, generator=g)  # (n,) classes 0..44
    y[n // 2] = 45  # a singleton
    y[-10:] = torch.tensor([46, 47] * 5)  # seen in one batch only
    centres = 3 * torch.randn(V, D, generator=g)
    x = centres[y] + torch.randn(n, D, generator=g) + offset  # (n, D)
    return x.float(), y


@pytest.mark.parametrize("offset", [0.0, 1e3])
@pytest.mark.parametrize("batch", [1, 7, 64, 600])
def test_one_pass_equals_two_pass(offset, batch):
    x, y = realistic_features(offset)
    counts, sums, sq = streamed(x, y, V, batch)
    want = plain_two_pass(x.double(), y, V)
    assert torch.equal(counts, want[0])
    torch.testing.assert_close(sums, want[1], rtol=1e-12, atol=1e-12 * max(offset, 1.0))
    seen = want[0] > 1
    rel = ((sq - want[2]).abs()[seen] / want[2][seen]).max()
    assert rel <= 1e-9, rel
    assert sq[45] == 0 and sq[48:].abs().sum() == 0  # a singleton has no spread; unseen stay 0
    assert sq[46] > 0 and sq[47] > 0


def plain_scatter(x: torch.Tensor, y: torch.Tensor, V: int) -> torch.Tensor:
    """Two-pass pooled within-class scatter sum (x - mu_y)(x - mu_y)^T (D, D), x float64."""
    counts, sums, _ = plain_two_pass(x, y, V)
    dev = x - class_means(counts, sums)[y]  # (N, D)
    return dev.T @ dev


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_pooled_scatter_streamed_equals_two_pass_despite_an_offset(batch, monkeypatch):
    monkeypatch.setattr(accumulate, "ROW_CHUNK", 5)  # chunked scatter products too
    x, y = realistic_features(1e4, seed=3)  # a large common offset, a singleton class
    counts = torch.zeros(V, dtype=torch.long)
    sums = torch.zeros(V, D, dtype=torch.float64)
    sq = torch.zeros(V, dtype=torch.float64)
    sw = torch.zeros(D, D, dtype=torch.float64)
    for a in range(0, len(y), batch):
        accumulate_moments(x[a:a + batch], y[a:a + batch], counts, sums, sq, sw)
    want = plain_scatter(x.double(), y, V)
    assert (sw - want).abs().max() / want.abs().max() <= 1e-9
    assert torch.equal(sw, sw.T)  # exact by construction (merge_scatter symmetrises)
    assert float(torch.trace(sw)) == pytest.approx(float(sq.sum()), rel=1e-12)


def test_merge_scatter_of_two_parts_equals_whole():
    x, y = realistic_features(1e4, seed=4)
    x = x.double()
    parts = [(plain_two_pass(x[i], y[i], V), plain_scatter(x[i], y[i], V))
             for i in (slice(0, 250), slice(250, None))]
    (a, sw_a), (b, sw_b) = parts
    merged = merge_scatter(a[0], a[1], sw_a, b[0], b[1], sw_b)
    want = plain_scatter(x, y, V)
    assert (merged - want).abs().max() / want.abs().max() <= 1e-9


def test_merged_scatter_is_exactly_symmetric_whatever_blas_rounds():
    """Another CPU's BLAS may round the mirror entries of X^T X apart (AVX-512 MKL on AMD did,
    by 2e-17 relative): the merge returns an exactly symmetric scatter even from such parts."""
    x, y = realistic_features(1e4, seed=4)
    x = x.double()
    a, b = plain_two_pass(x[:250], y[:250], V), plain_two_pass(x[250:], y[250:], V)
    sw_a, sw_b = plain_scatter(x[:250], y[:250], V), plain_scatter(x[250:], y[250:], V)
    sw_a = sw_a + torch.triu(sw_a, 1) * 2e-16  # the upper triangle rounded up by a bit or so
    assert not torch.equal(sw_a, sw_a.T)
    merged = merge_scatter(a[0], a[1], sw_a, b[0], b[1], sw_b)
    assert torch.equal(merged, merged.T)
    want = plain_scatter(x, y, V)
    assert (merged - want).abs().max() / want.abs().max() <= 1e-9  # the offset's cancellation


def test_grouped_moments_and_row_chunks(monkeypatch):
    x, y = realistic_features(10.0, seed=1)
    monkeypatch.setattr(accumulate, "ROW_CHUNK", 5)  # the chunked loops, many chunks
    classes, inv = torch.unique(y, return_inverse=True)
    n = torch.bincount(inv, minlength=classes.shape[0])
    s, m2, _ = accumulate._grouped_moments(x, inv, n)
    want = plain_two_pass(x.double(), y, V)
    assert torch.equal(classes, torch.nonzero(want[0]).squeeze(1))
    assert torch.equal(n, want[0][classes])
    torch.testing.assert_close(s, want[1][classes], **TIGHT)
    torch.testing.assert_close(m2, want[2][classes], rtol=1e-10, atol=1e-10)


def test_merge_m2_of_two_parts_equals_whole():
    x, y = realistic_features(1e3, seed=2)
    a, b = plain_two_pass(x[:250].double(), y[:250], V), plain_two_pass(x[250:].double(), y[250:], V)
    whole = plain_two_pass(x.double(), y, V)
    merged = merge_m2(a[0], a[1], a[2], b[0], b[1], b[2])
    seen = whole[0] > 1
    assert ((merged - whole[2]).abs()[seen] / whole[2][seen]).max() <= 1e-9
    assert torch.equal(merged[~seen], whole[2][~seen])  # empty and single-sample classes: 0


def test_accumulate_sums_matches_one_hot():
    g = torch.Generator().manual_seed(0)
    counts, sums = torch.zeros(7, dtype=torch.long), torch.zeros(7, 3, dtype=torch.float64)
    xs, ys = [], []
    for n in (5, 9):  # two batches accumulate
        x, y = torch.randn(n, 3, generator=g), torch.randint(0, 5, (n,), generator=g)
        accumulate_sums(x, y, counts, sums)
        xs.append(x)
        ys.append(y)
    one_hot = F.one_hot(torch.cat(ys), 7).double()  # (14, 7)
    assert torch.equal(counts, one_hot.sum(0).long())
    torch.testing.assert_close(sums, one_hot.T @ torch.cat(xs).double(), **TIGHT)
    assert counts[5:].sum() == 0


def _plain_agreement(x, y, W, counts, sums):
    valid = torch.nonzero(counts > 0).squeeze(1)  # (K,)
    mu = sums[valid] / counts[valid, None]  # (K, D)
    lm = valid[(x @ W[valid].double().T).argmax(1)]
    ncc = valid[torch.cdist(x, mu).argmin(1)]
    val_counts = torch.zeros(V, dtype=torch.long)
    val_agree = torch.zeros(V, dtype=torch.long)
    for i in range(len(y)):
        val_counts[y[i]] += 1
        val_agree[y[i]] += int(lm[i] == ncc[i])
    return val_counts, val_agree


def test_ncc_agreement_chunks_match_plain():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(300, D, generator=g), torch.randint(0, V, (300,), generator=g)
    counts = torch.randint(0, 3, (V,), generator=g)  # about a third of the classes unseen
    scale = torch.rand(V, 1, generator=g, dtype=torch.float64) * 3  # unequal mean norms
    means = torch.randn(V, D, generator=g, dtype=torch.float64) * scale  # (V, D)
    W = (means + 0.5 * torch.randn(V, D, generator=g, dtype=torch.float64)).float()
    sums, valid = means * counts[:, None], torch.nonzero(counts > 0).squeeze(1)
    for chunk in (1, 7, 4096):  # tiles of one class, of a few, and all at once
        vc, va = torch.zeros(V, dtype=torch.long), torch.zeros(V, dtype=torch.long)
        ncc_agreement(x, y, W, class_means(counts, sums)[valid], valid, vc, va, chunk=chunk)
        want = _plain_agreement(x.double(), y, W, counts, sums)
        assert torch.equal(vc, want[0]) and torch.equal(va, want[1])
    assert 0 < va.sum() < vc.sum() == 300


def test_bad_features_and_labels_refused():
    x = torch.ones(4, 3)
    x[2, 1] = torch.nan
    acc = (torch.zeros(2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.float64),
           torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        accumulate_moments(x, torch.zeros(4, dtype=torch.long), *acc)
    with pytest.raises(ValueError, match="label 5 outside the 2 classes"):
        accumulate_moments(torch.ones(4, 3), torch.tensor([0, 1, 5, 0]), *acc)
    assert acc[0].sum() == 0  # nothing was added before the refusal


@pytest.mark.parametrize("offset", [0.0, 50.0])
def test_exact_argmax_equals_float64_even_on_near_ties(offset):
    g = torch.Generator().manual_seed(4)
    rows = torch.randn(40, D, generator=g, dtype=torch.float64) + offset  # (K, D)
    rows[1] = rows[0] + 1e-6  # near-duplicate classes: float32 scores cannot separate them
    rows[2] = rows[0]  # an exact tie: the first index wins
    bias = (rows * rows).sum(1) / 2  # the NCC form: argmax <x, r> - ||r||^2 / 2
    x = torch.cat([rows[:3] + 1e-3 * torch.randn(3, D, generator=g, dtype=torch.float64),
                   torch.randn(200, D, generator=g, dtype=torch.float64) + offset])  # (N, D)
    x = x.float().double()  # features come in float32
    want = (x @ rows.T - bias).argmax(1)  # float64, first index on ties
    for chunk in (1, 7, 4096):
        got = accumulate.exact_argmax(x.float(), rows, bias, chunk)  # screened in float32
        assert torch.equal(got, want)
    assert torch.equal(accumulate.exact_argmax(x, rows, None), (x @ rows.T).argmax(1))
