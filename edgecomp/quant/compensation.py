"""QuartDepth activation compensation: move the weights so the quantized inputs give the float outputs.

Derivation (ridge least squares over calibration tokens, X and X̂ [K, T] the float and the quantized inputs):

    min over W'  ||W X - W' X̂||² + γ ||W' - W||²,   W' = W + ΔW
    => ΔW (X̂ X̂ᵀ + γ I) = W (X - X̂) X̂ᵀ
    => ΔW = W (X - X̂) X̂ᵀ (X̂ X̂ᵀ + γ I)⁻¹ = W (C - H) (H + γ I)⁻¹,   H = X̂ X̂ᵀ, C = X X̂ᵀ.

ΔW is *added*: the third-party summaries of the paper print a leading minus, which would double the error.
"""

from __future__ import annotations

import torch
from torch import Tensor

from edgecomp.errors import ConfigError
from edgecomp.linalg import damped_cholesky


def compensate(w: Tensor, H: Tensor, C: Tensor, damp: float = 0.01) -> Tensor:
    """Return W + ΔW, the ridge solution of min ||W X - W' X̂||² + γ ||W' - W||² (module docstring).

    w: [N, K]; H: [K, K] = Σ x̂ x̂ᵀ; C: [K, K] = Σ x x̂ᵀ over the same tokens (x float, x̂ quantized inputs);
    damp: γ = damp * mean(diag H) (mean taken as 1 when H is all zero). Solved in float64 by Cholesky, with 10x
    more damping after a failed factorisation (so damp = 0 works for full-rank H). Returns [N, K] in w's dtype.
    Rank-deficient H (fewer tokens than K, dead channels) is fine: a channel whose x̂ is always zero keeps its
    weights, since its column of C - H is zero.
    """
    K = H.shape[0] if H.dim() == 2 else -1
    if w.dim() != 2 or w.shape[1] != K or H.shape != (K, K) or C.shape != (K, K):
        raise ConfigError(f"compensate needs w [N, K], H and C [K, K]; got {tuple(w.shape)}, {tuple(H.shape)}, "
                          f"{tuple(C.shape)}", hint="H = Σ x̂ x̂ᵀ and C = Σ x x̂ᵀ over the layer's input columns")
    if damp < 0:
        raise ConfigError(f"compensation damping must be >= 0, got {damp}", hint="the default is 0.01")
    W, H64, C64 = w.detach().double(), H.detach().double(), C.detach().double()
    # ΔW = W (C - H) A⁻¹ with A symmetric, i.e. ΔWᵀ = A⁻¹ (C - H)ᵀ Wᵀ: one Cholesky solve with N right-hand sides.
    L = damped_cholesky(H64, damp, "compensation system")
    return (W + torch.cholesky_solve((C64 - H64).T @ W.T, L).T).to(w.dtype)
