"""GPTQ (Frantar et al., 2023): column-by-column rounding with second-order error feedback.

Follows IST-DASLab/gptq ``GPTQ.fasterquant`` (act-order off, ``static_groups=False``) in the paper's names:
``H`` the input Gram matrix, ``Hinv`` the upper Cholesky factor of its (damped) inverse, ``W1``/``Q1``/``Err1``
one lazily-updated block of columns.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from edgecomp.errors import ConfigError
from edgecomp.linalg import damped_cholesky
from edgecomp.quant.primitives import WeightGrid, round_codes, weight_qparams


def _inverse_cholesky(H: Tensor, damp: float) -> Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) I)^-1 (more damping if either factorisation fails)."""
    for extra in (1.0, 10.0, 100.0):
        L = damped_cholesky(H, damp * extra, "GPTQ Hessian")
        U, info = torch.linalg.cholesky_ex(torch.cholesky_inverse(L), upper=True)
        if int(info) == 0:
            return U
    raise ConfigError(f"the inverse of the {H.shape[0]}x{H.shape[0]} GPTQ Hessian does not factorise",
                      hint="check the calibration activations for NaN/inf, or raise quantize.damp")


def gptq(w: Tensor, H: Tensor, grid: WeightGrid, damp: float = 0.01,
         block_size: int = 128) -> tuple[Tensor, Tensor, Tensor]:
    """Quantize w column by column, pushing each column's rounding error onto the columns not yet quantized.

    w: [N, K] weights; H: [K, K] = sum of x̂ x̂ᵀ over calibration tokens (x̂: the layer's quantized inputs),
    float64 preferred; damp: fraction of mean(diag H) added to the diagonal; block_size: columns per lazy update.
    Returns (codes uint8 [N, K], scale float32 [N, G], zero float32 [N, G]); dequantize_weight of them is Ŵ.

    Columns whose input is always zero (H_ii = 0) are set to 0 and get H_ii = 1. Per-channel parameters are
    taken once, from the weights with dead columns already zeroed (fasterquant takes them before, letting weights
    that never see an input widen the grid); group parameters at each group's first column from the
    error-updated weights of that group, as in fasterquant without static groups.
    """
    if w.dim() != 2 or H.shape != (w.shape[1], w.shape[1]):
        raise ConfigError(f"GPTQ needs w [N, K] and H [K, K], got {tuple(w.shape)} and {tuple(H.shape)}",
                          hint="H is the Gram matrix of the layer's input columns")
    if block_size < 1 or damp < 0:
        raise ConfigError(f"GPTQ block_size must be >= 1 and damp >= 0, got {block_size} and {damp}",
                          hint="defaults: block_size 128, damp 0.01")
    N, K = w.shape
    G = grid.groups(K)
    gs = K // G
    W = w.detach().to(torch.float64).clone()
    H = H.detach().to(torch.float64).clone()

    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0

    Hinv = _inverse_cholesky(H, damp)

    # NOTE: parameters are rounded to float32 before use, so the error fed back is that of the Ŵ the caller
    # reconstructs from the returned float32 scale and zero.
    scale = torch.empty(N, G, dtype=torch.float64)
    zero = torch.empty(N, G, dtype=torch.float64)
    if grid.group_size == 0:
        s, z = weight_qparams(W, grid)
        scale[:], zero[:] = s.float().double(), z.float().double()
    # NOTE: with groups the block is a multiple of the group size, so every group lies inside one block and its
    # parameters see all earlier updates (fasterquant reads stale columns when groups are smaller than blocks).
    B = block_size if grid.group_size == 0 else gs * max(1, block_size // gs)

    Q = torch.zeros(N, K, dtype=torch.float64)
    for i1 in range(0, K, B):
        i2 = min(i1 + B, K)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            g = col // gs
            if grid.group_size and col % gs == 0:
                s, z = weight_qparams(W1[:, i : i + gs], dataclasses.replace(grid, group_size=0))
                scale[:, g], zero[:, g] = s[:, 0].float().double(), z[:, 0].float().double()
            w_col, d = W1[:, i], Hinv1[i, i]
            q = torch.clamp(round_codes(w_col / scale[:, g], zero[:, g], grid), 0, grid.qmax)
            Q1[:, i] = q
            err1 = (w_col - (q - zero[:, g]) * scale[:, g]) / d
            W1[:, i:] -= err1.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q.to(torch.uint8), scale.float(), zero.float()
