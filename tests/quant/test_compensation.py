"""QuartDepth activation compensation: the ridge solution, its sign, and rank-deficient inputs."""

from __future__ import annotations

import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.quant.activations import fake_quant_symmetric
from edgecomp.quant.compensation import compensate


def _problem(N=24, K=64, T=512, seed=0):
    """Float tokens X [T, K] (correlated, with outlier channels) and their per-token 4-bit quantization X̂."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(T, 8, generator=g) @ torch.randn(8, K, generator=g) + 0.5 * torch.randn(T, K, generator=g)
    X[:, :3] *= 8.0  # outlier channels make per-token 4-bit quantization lossy on the others
    return torch.randn(N, K, generator=g), X, fake_quant_symmetric(X, 4, (-1,))


def _grams(X, Xh):
    X64, Xh64 = X.double(), Xh.double()
    return Xh64.T @ Xh64, X64.T @ Xh64


def _err(W, X, W2, Xh):
    return float((X.double() @ W.double().T - Xh.double() @ W2.double().T).norm())


def test_output_error_drops():
    W, X, Xh = _problem()
    H, C = _grams(X, Xh)
    Wc = compensate(W, H, C)
    assert Wc.shape == W.shape and Wc.dtype == W.dtype
    before, after = _err(W, X, W, Xh), _err(W, X, Wc, Xh)
    assert after < 0.7 * before
    # The summaries' leading minus (W - ΔW) makes it worse, not better.
    assert _err(W, X, 2 * W - Wc, Xh) > before


def test_matches_ridge_normal_equations_on_tokens():
    W, X, Xh = _problem()
    H, C = _grams(X, Xh)
    gamma = 0.01 * float(torch.diag(H).mean())
    X64, Xh64, W64 = X.double(), Xh.double(), W.double()
    # argmin ||W X - W' X̂||² + γ ||W' - W||²  <=>  W' (X̂ X̂ᵀ + γ I) = W X X̂ᵀ + γ W  (columns are tokens here)
    A = Xh64.T @ Xh64 + gamma * torch.eye(X.shape[1], dtype=torch.float64)
    want = torch.linalg.solve(A, (W64 @ X64.T @ Xh64 + gamma * W64).T).T
    assert torch.allclose(compensate(W64, H, C), want, rtol=1e-8, atol=1e-10)


def test_infinite_damping_returns_w():
    W, X, Xh = _problem()
    H, C = _grams(X, Xh)
    assert torch.allclose(compensate(W, H, C, damp=1e12), W, atol=1e-6)
    assert torch.equal(compensate(W, H, H), W)  # X̂ = X: nothing to compensate


def test_rank_deficient_and_dead_channels():
    W, X, Xh = _problem(T=16)  # 16 tokens for 64 channels
    X[:, 5] = 0.0
    Xh[:, 5] = 0.0
    H, C = _grams(X, Xh)
    Wc = compensate(W, H, C)
    assert bool(torch.isfinite(Wc).all())
    assert torch.equal(Wc[:, 5], W[:, 5])  # a dead input keeps its weights
    assert _err(W, X, Wc, Xh) < _err(W, X, W, Xh)
    zero = torch.zeros(64, 64, dtype=torch.float64)
    assert torch.equal(compensate(W, zero, zero), W)  # no calibration signal at all


def test_bad_input():
    with pytest.raises(ConfigError, match="compensate needs"):
        compensate(torch.zeros(4, 8), torch.eye(8), torch.eye(6))
    with pytest.raises(ConfigError, match="damping"):
        compensate(torch.zeros(4, 8), torch.eye(8), torch.eye(8), damp=-1.0)
