"""Helpers shared by test modules (imported by name: pytest puts tests/ on sys.path)."""

import torch


def random_stats(K: int = 8, D: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """Valid two-pass statistics of K random classes (counts >= 2, finite moments), for tests
    that need a stats file and not a model."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(2, 20, (K,), generator=g)
    val_counts = torch.randint(1, 10, (K,), generator=g)
    return {"counts": counts,
            "sums": (torch.randn(K, D, generator=g, dtype=torch.float64) + 2) * counts[:, None],
            "sq_dev": torch.rand(K, generator=g, dtype=torch.float64) * counts,
            "val_counts": val_counts, "val_agree": val_counts // 2,
            "lm_head": torch.randn(K, D, generator=g),
            "sw": _psd(D, g)}  # drawn last: the other tensors are those of before sw existed


def _psd(D: int, g: torch.Generator) -> torch.Tensor:
    """A random positive semi-definite (D, D) float64 matrix (a pooled within-class scatter)."""
    a = torch.randn(D + 2, D, generator=g, dtype=torch.float64)
    return a.T @ a
