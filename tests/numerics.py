"""The tests' one rule for floating-point results, and its tolerances.

Another CPU (AMD instead of Intel, AVX-512 or not), another BLAS code path (``MKL_CBWR``,
``ATEN_CPU_CAPABILITY``) or another thread count rounds float sums and products differently.
So a test compares a float result that passes through BLAS, a reduction or threads with these
tolerances, never bit for bit; or the library makes it exact by construction (the pooled
scatter is symmetrised, ``linguistic_collapse.nc.accumulate.merge_scatter``). Bit-equality stays
only where the code guarantees it: the same computation twice on one machine with the same
threads (determinism, resumption, save/load round trips, copies, integer counts).
CI runs the fast tier a second time under another numeric path (``make test-othercpu``).
"""

from __future__ import annotations

import torch

# float64 sums of the same numbers added in another order or by another kernel: last bits only.
ROUNDOFF64 = {"rtol": 1e-12, "atol": 1e-12}
# float32 results (a model's forward pass) through another kernel or batch shape.
ROUNDOFF32 = {"rtol": 1e-5, "atol": 1e-6}


def assert_roundoff_close(got: torch.Tensor, want: torch.Tensor, msg: str = "") -> None:
    """``got`` equals ``want`` up to the round-off of its dtype (ROUNDOFF64 or ROUNDOFF32);
    integer and bool tensors exactly."""
    if got.dtype.is_floating_point:
        tol = ROUNDOFF64 if got.dtype == torch.float64 else ROUNDOFF32
        torch.testing.assert_close(got, want, **tol, msg=msg or None)
    else:
        assert torch.equal(got, want), msg
