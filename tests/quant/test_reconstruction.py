"""QuartDepth weight reconstruction: better than round-to-nearest, time-boxed, Fisher-weighted."""

from __future__ import annotations

import time

import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.quant.activations import fake_quant_symmetric
from edgecomp.quant.compensation import compensate
from edgecomp.quant.primitives import WeightGrid, dequantize_weight, rtn, weight_qparams
from edgecomp.quant.reconstruction import reconstruct

N, K, T = 32, 64, 512
GRID = WeightGrid(4)


@pytest.fixture(scope="module")
def problem():
    """W [N, K], float tokens X [T, K] (low rank + noise), X̂ their per-token 4-bit quantization, the Grams."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(T, 8, generator=g) @ torch.randn(8, K, generator=g) + 0.5 * torch.randn(T, K, generator=g)
    Xh = fake_quant_symmetric(X, 4, (-1,))
    W = torch.randn(N, K, generator=g) / 8
    H, C = Xh.T.double() @ Xh.double(), X.T.double() @ Xh.double()
    return W, X, Xh, H, C


def _row_err(problem, codes, scale, zero, grid=GRID):
    """Per output channel squared error of Ŵ on X̂ against W on X: [N]."""
    W, X, Xh, _, _ = problem
    return ((Xh @ dequantize_weight(codes, scale, zero, grid).T - X @ W.T) ** 2).sum(0)


@pytest.mark.parametrize("grid", [GRID, WeightGrid(4, group_size=32, float_zero=True)], ids=["int-zero", "float-zero"])
def test_beats_round_to_nearest(problem, grid):
    W, _, _, H, C = problem
    Wc = compensate(W, H, C)
    codes, scale, zero, info = reconstruct(Wc, W, H, C, torch.ones(N), grid, iters=1000, seconds=30)
    assert codes.dtype == torch.uint8 and int(codes.max()) <= grid.qmax
    ref_scale, ref_zero = weight_qparams(Wc, grid)
    assert torch.equal(scale, ref_scale) and torch.equal(zero, ref_zero)  # the grid is kept, only rounding learned
    # AdaRound only chooses between the two grid points around each weight.
    G = grid.groups(K)
    u = (Wc.reshape(N, G, -1) / scale.unsqueeze(-1) + zero.unsqueeze(-1)).reshape(N, K)
    step = codes.float() - torch.floor(u)
    assert bool(((step == 0) | (step == 1)).all())
    err = float(_row_err(problem, codes, scale, zero, grid).sum())
    err_rtn = float(_row_err(problem, *rtn(Wc, grid), grid).sum())
    err_rtn_plain = float(_row_err(problem, *rtn(W, grid), grid).sum())
    assert err < 0.75 * err_rtn < err_rtn_plain
    assert info["kept"] == "learned" and info["iters"] == 1000 and info["loss_final"] < 0.75 * info["loss_rtn"]


def test_time_box(problem):
    W, _, _, H, C = problem
    t0 = time.perf_counter()
    _, _, _, info = reconstruct(W, W, H, C, torch.ones(N), GRID, iters=10**9, seconds=0.5)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.5 and 0.4 < info["seconds"] < 1.5 and 0 < info["iters"] < 10**9


def test_fisher_weighting_shifts_error_to_light_rows(problem):
    """Rows are separable in a one-layer loss, so a row's weight only matters against the rounding regulariser
    and at the extremes: rows with zero Fisher weight are left at their initial rounding."""
    W, _, _, H, C = problem
    Wc = compensate(W, H, C)
    heavy, light = slice(0, N // 2), slice(N // 2, N)
    fisher = torch.ones(N)
    fisher[light] = 0.0
    e_uniform = _row_err(problem, *reconstruct(Wc, W, H, C, torch.ones(N), GRID, iters=600)[:3])
    codes, scale, zero, info = reconstruct(Wc, W, H, C, fisher, GRID, iters=600)
    e_fisher = _row_err(problem, codes, scale, zero)
    assert float(e_fisher[heavy].sum()) <= 1.05 * float(e_uniform[heavy].sum())
    assert float(e_fisher[light].sum()) > 1.2 * float(e_uniform[light].sum())
    # The raw loss is Fisher-weighted: doubling every weight doubles it.
    _, _, _, info2 = reconstruct(Wc, W, H, C, 2 * fisher, GRID, iters=0)
    assert info2["loss_rtn"] == pytest.approx(2 * info["loss_rtn"], rel=1e-9)


def test_falls_back_to_round_to_nearest(problem):
    W, _, _, H, C = problem
    rtn_codes = rtn(W, GRID)[0]
    codes, _, _, info = reconstruct(W, W, H, C, torch.ones(N), GRID, iters=0)
    assert torch.equal(codes, rtn_codes) and info["kept"] == "rtn" and info["iters"] == 0
    codes, _, _, info = reconstruct(W, W, H, C, torch.zeros(N), GRID, iters=100)  # nothing to optimise
    assert torch.equal(codes, rtn_codes) and info["kept"] == "rtn"


def test_bad_input(problem):
    W, _, _, H, C = problem
    with pytest.raises(ConfigError, match="fisher"):
        reconstruct(W, W, H, C, -torch.ones(N), GRID)
    with pytest.raises(ConfigError, match="reconstruct needs"):
        reconstruct(W, W[:, :8], H, C, torch.ones(N), GRID)
