"""GPTQ: agreement with a direct port of IST-DASLab/gptq fasterquant, and lower output error than RTN."""

from __future__ import annotations

import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.quant.gptq import gptq
from edgecomp.quant.primitives import WeightGrid, dequantize_weight, rtn, weight_qparams


def _problem(N=48, K=128, T=1024, seed=0):
    """Weights and inputs X [K, T] with a low-rank + noise covariance (the case where GPTQ's feedback pays)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(K, 12, generator=g) @ torch.randn(12, T, generator=g) + 0.3 * torch.randn(K, T, generator=g)
    return torch.randn(N, K, generator=g), X


def _fasterquant(W, H, bits, groupsize, blocksize, percdamp=0.01):
    """IST-DASLab/gptq GPTQ.fasterquant + Quantizer(perchannel=True, sym=False), act-order off, ported as is."""
    maxq = 2**bits - 1

    def find_params(x):
        zeros = torch.zeros(x.shape[0], dtype=x.dtype)
        xmin, xmax = torch.minimum(x.min(1).values, zeros), torch.maximum(x.max(1).values, zeros)
        both = (xmin == 0) & (xmax == 0)
        xmin[both], xmax[both] = -1, +1
        scale = (xmax - xmin) / maxq
        return scale.unsqueeze(1), torch.round(-xmin / scale).unsqueeze(1)

    W, H = W.clone().double(), H.clone().double()
    K = W.shape[1]
    scale, zero = find_params(W)
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(K, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    codes = torch.zeros_like(W)
    for i1 in range(0, K, blocksize):
        i2 = min(i1 + blocksize, K)
        W1, Err1, Hinv1 = W[:, i1:i2].clone(), torch.zeros(W.shape[0], i2 - i1, dtype=W.dtype), Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            if groupsize != -1 and (i1 + i) % groupsize == 0:
                scale, zero = find_params(W[:, (i1 + i) : (i1 + i + groupsize)])
            w, d = W1[:, i], Hinv1[i, i]
            c = torch.clamp(torch.round(w.unsqueeze(1) / scale) + zero, 0, maxq)
            codes[:, i1 + i] = c.flatten()
            err1 = (w - (scale * (c - zero)).flatten()) / d
            W1[:, i:] -= err1.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return codes.to(torch.uint8)


@pytest.mark.parametrize("group_size,ref_block", [(0, 128), (64, 64), (32, 32)])
def test_matches_fasterquant(group_size, ref_block):
    w, X = _problem(K=256)
    X[7] = 0.0  # a dead input channel
    w[:, 7] = 3 * w.abs().max()  # ... whose weight fasterquant would let stretch the per-channel range
    H = (X @ X.T).double()
    codes, _, _ = gptq(w, H, WeightGrid(4, group_size=group_size), block_size=128)
    # group 32 inside 128-column blocks equals fasterquant with 32-column blocks: group parameters come from the
    # fully updated weights (fasterquant's own 128-block run reads columns its block has not written back yet).
    # Per-channel parameters are taken after zeroing dead columns (fasterquant: before), so compare on w[:, 7] = 0.
    w_live = w.clone()
    w_live[:, 7] = 0.0
    assert torch.equal(codes, _fasterquant(w_live, H, 4, group_size or -1, ref_block))
    if group_size == 0:
        assert not torch.equal(codes, _fasterquant(w, H, 4, -1, ref_block))


@pytest.mark.parametrize("grid", [WeightGrid(4), WeightGrid(4, group_size=32), WeightGrid(3, symmetric=True)])
def test_output_error_below_rtn(grid):
    w, X = _problem()
    H = (X @ X.T).double()
    codes, scale, zero = gptq(w, H, grid)
    assert codes.dtype == torch.uint8 and int(codes.max()) <= grid.qmax
    G = grid.groups(w.shape[1])
    assert scale.dtype == zero.dtype == torch.float32 and scale.shape == zero.shape == (w.shape[0], G)
    assert torch.equal(zero, zero.round()) and float(zero.min()) >= 0 and float(zero.max()) <= grid.qmax
    err_gptq = float(((w - dequantize_weight(codes, scale, zero, grid)) @ X).norm())
    err_rtn = float(((w - dequantize_weight(*rtn(w, grid), grid)) @ X).norm())
    assert err_gptq < 0.7 * err_rtn


def test_group_params_come_from_updated_weights():
    """Each group's (scale, zero) covers exactly the codes GPTQ chose: the grid is never wider than needed."""
    w, X = _problem()
    grid = WeightGrid(4, group_size=32)
    codes, scale, zero = gptq(w, (X @ X.T).double(), grid)
    cg = codes.reshape(w.shape[0], -1, 32)
    # min-max grids put the group's extremes on codes 0 and qmax (or on z when 0 is an extreme).
    lo, hi = cg.amin(-1).float(), cg.amax(-1).float()
    assert float(((lo == 0) | (lo == zero)).float().mean()) > 0.9
    assert float(((hi == 15) | (hi == zero)).float().mean()) > 0.9
    first_group_scale, _ = weight_qparams(w[:, :32], WeightGrid(4))
    assert torch.allclose(scale[:, :1], first_group_scale)  # the first group sees no updates yet
    assert not torch.allclose(scale[:, 1:2], weight_qparams(w[:, 32:64], WeightGrid(4))[0])


def test_uncorrelated_inputs_reduce_to_rtn():
    w, _ = _problem()
    codes, scale, zero = gptq(w, torch.eye(w.shape[1], dtype=torch.float64) * 3.0, WeightGrid(4))
    rc, rs, rz = rtn(w, WeightGrid(4))
    assert torch.equal(codes, rc) and torch.equal(zero, rz) and torch.allclose(scale, rs, rtol=1e-6, atol=0)


def test_dead_columns_and_damping_retry():
    w, X = _problem(K=64, T=32)  # fewer tokens than K: H is singular
    X[3] = 0.0
    H = (X @ X.T).double()
    codes, scale, zero = gptq(w, H, WeightGrid(4), damp=0.0)  # undamped singular H: the retries add damping
    w_hat = dequantize_weight(codes, scale, zero, WeightGrid(4))
    assert bool(torch.isfinite(w_hat).all()) and bool((w_hat[:, 3] == 0).all())
    vals, vecs = torch.linalg.eigh(H)
    H_indef = H - 0.05 * float(torch.diag(H).mean()) * torch.outer(vecs[:, 0], vecs[:, 0])  # negative eigenvalue
    assert bool(torch.isfinite(dequantize_weight(*gptq(w, H_indef, WeightGrid(4)), WeightGrid(4))).all())
    H_bad = torch.eye(64, dtype=torch.float64)
    H_bad[0, 0] = -1e4
    with pytest.raises(ConfigError, match="not positive definite"):
        gptq(w, H_bad, WeightGrid(4))
    H_bad[0, 0], H_bad[0, 5] = 1.0, float("inf")
    with pytest.raises(ConfigError, match="NaN or inf"):
        gptq(w, H_bad, WeightGrid(4))


def test_bad_shapes():
    with pytest.raises(ConfigError, match="H"):
        gptq(torch.zeros(4, 8), torch.eye(6, dtype=torch.float64), WeightGrid(4))
    with pytest.raises(ConfigError, match="K=8"):
        gptq(torch.zeros(4, 8), torch.eye(8, dtype=torch.float64), WeightGrid(4, group_size=3))
