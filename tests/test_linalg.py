"""damped_cholesky: exact damping when it factorises, escalation when it does not, clear errors otherwise."""

from __future__ import annotations

import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.linalg import damped_cholesky


def test_factor_is_of_the_damped_matrix():
    X = torch.randn(50, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    H = X.T @ X
    L = damped_cholesky(H, 0.01)
    want = H + 0.01 * float(H.diagonal().mean()) * torch.eye(6, dtype=torch.float64)
    torch.testing.assert_close(L @ L.T, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("damp", [0.0, 1e-9])
def test_singular_matrix_is_damped_on_retry_even_from_zero(damp):
    v = torch.tensor([[1.0], [2.0], [0.0]], dtype=torch.float64)
    H = v @ v.T - 1e-7 * torch.eye(3, dtype=torch.float64)  # rank 1, dead channel, rounding below zero
    assert int(torch.linalg.cholesky_ex(H + damp * torch.eye(3, dtype=torch.float64)).info) != 0
    L = damped_cholesky(H, damp, retries=6, retry_floor=1e-12)
    assert bool(torch.isfinite(L).all())
    assert float((L @ L.T - H).abs().max()) < 1e-3 * float(H.diagonal().mean())  # damped only as far as needed


def test_non_finite_matrix_names_what_it_was():
    H = torch.eye(3, dtype=torch.float64)
    H[0, 2] = float("nan")
    with pytest.raises(ConfigError, match="3x3 GPTQ Hessian contains NaN"):
        damped_cholesky(H, 0.01, "GPTQ Hessian")
