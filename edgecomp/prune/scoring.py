"""Pure scoring and compensation cores, in the papers' variables (float64 throughout).

Conventions: ``W`` is an output projection's torch weight [out, D] (the paper's W ∈ R^{D×D′} transposed:
pruning removes *columns* of the torch weight = rows of the paper's W), ``G = XᵀX`` [D, D] is the Gram
matrix of its calibration inputs X [N, D], ``mean`` / ``var`` [D] their per-channel statistics. Every
score is "higher = keep".
"""

from __future__ import annotations

import torch

from edgecomp.linalg import damped_cholesky


def _cholesky_solve(M: torch.Tensor, B: torch.Tensor, damp: float, what: str) -> torch.Tensor:
    """M⁻¹B for symmetric PSD ``M``, adding ``damp``·mean(diag M)·I (10x more per failed factorisation, up to
    1e6x) so singular XᵀX (dead channels, too few tokens) still solves."""
    return torch.cholesky_solve(B, damped_cholesky(M, damp, what, retries=6, retry_floor=1e-12))


def newton_mask(W: torch.Tensor, G: torch.Tensor, rho: float, lam: float = 1.0,
                damp: float = 1e-6) -> torch.Tensor:
    """The relaxed mask z* [D] of numerical pruning (Shen et al., AAAI 2025, §3.2).

    Minimises ½ Σ_i ‖X W_{*,i} − X(z∘W_{*,i})‖² + ½ λ (1ᵀz − r)², r = (1−ρ)D, with X normalised to
    ‖X‖_F = 1. The objective is quadratic with the constant Hessian H = (WWᵀ)∘(XᵀX) + λ11ᵀ, so one Newton
    step from z = 1 is exact: 1 − z* = λ(D − r) H⁻¹1 (further iterations would only matter with a projection
    onto [0, 1], which the paper does not state).
    """
    W, G = W.double(), G.double()
    D = G.shape[0]
    G = G / G.trace().clamp(min=1e-30)  # ‖X‖_F = 1: λ means the same in every layer
    A = (W.T @ W) * G  # (WWᵀ)∘(XᵀX) in the paper's orientation
    H = A + lam * torch.ones(D, D, dtype=torch.float64)
    r = (1.0 - rho) * D
    u = lam * (D - r) * _cholesky_solve(H, torch.ones(D, 1, dtype=torch.float64), damp, "Newton Hessian")[:, 0]
    return 1.0 - u


def compensate(W: torch.Tensor, G: torch.Tensor, keep: torch.Tensor, damp: float = 1e-2,
               C: torch.Tensor | None = None) -> torch.Tensor:
    """The optimal update of the kept columns once the others are removed (§3.4, Thm 3): W′ [out, D], with
    the pruned columns zero.

    ``δW* = −G⁻¹M_p(M_pᵀG⁻¹M_p)⁻¹M_pᵀW`` (paper orientation) equals the least-squares refit of the kept
    channels to the full output, ``W′_k = W_k + W_p G_pk G_kk⁻¹`` (torch orientation), which needs only
    the kept block; ``damp``·mean(diag) is added to G_kk (the paper's γI) for singular XᵀX.

    With ``C = XᵀX_ref`` [D, D] (the inputs X of the model being pruned against the same tokens' inputs
    X_ref in the unpruned model, whose projection is W) the target is the unpruned output instead:
    ``min ‖X_ref Wᵀ − X_k W′_kᵀ‖² + γ‖W′_k − W_k‖²``, i.e. ``W′_kᵀ = W_kᵀ + (G_kk + γI)⁻¹(C_k Wᵀ − G_kk W_kᵀ)``,
    which is the formula above when X = X_ref and also refits a projection that lost nothing (``keep`` all)
    to undo the drift earlier cuts left in its input. The damping pulls towards W_k, never towards 0.
    """
    W64, G = W.double(), G.double()
    D = G.shape[0]
    mask = torch.zeros(D, dtype=torch.bool)
    mask[keep] = True
    k, p = mask.nonzero()[:, 0], (~mask).nonzero()[:, 0]
    out = torch.zeros_like(W64)
    out[:, k] = W64[:, k]
    if C is not None:  # W'_kᵀ = W_kᵀ + G_kk⁻¹ (C_k Wᵀ − G_kk W_kᵀ)
        rhs = C.double()[k] @ W64.T - G[k][:, k] @ W64[:, k].T
    elif len(p):  # W'_kᵀ = W_kᵀ + G_kk⁻¹ G_kp W_pᵀ
        rhs = G[k][:, p] @ W64[:, p].T
    else:
        return out.to(W.dtype)
    out[:, k] += _cholesky_solve(G[k][:, k], rhs, damp, "kept-input Gram matrix").T
    return out.to(W.dtype)


def optimal_losses(W: torch.Tensor, G: torch.Tensor, groups: list[torch.Tensor], damp: float = 1e-2) -> torch.Tensor:
    """The optimal loss L* of removing each channel group alone and compensating (§3.4, Thm 3) [len(groups)].

    For pruned channels p, ``L* = ½ Σ_i (Wᵀ M_p (M_pᵀ(2XᵀX)⁻¹M_p)⁻¹ M_pᵀ W)_ii = tr(W_p [G⁻¹]_pp⁻¹ W_pᵀ)`` in
    torch orientation: the output energy ‖X Wᵀ − X W′ᵀ‖² that no refit of the kept channels recovers (an OBS
    saliency; one channel: ‖W_p‖² / [G⁻¹]_pp). ``damp`` as in ``compensate``.
    """
    W, G = W.double(), G.double()
    D = G.shape[0]
    Gi = _cholesky_solve(G, torch.eye(D, dtype=torch.float64), damp, "input Gram matrix")
    Gi = (Gi + Gi.T) / 2
    if all(len(p) == 1 for p in groups):  # single channels: ‖W_p‖² / [G⁻¹]_pp, vectorised
        idx = torch.cat(groups)
        return (W[:, idx] ** 2).sum(0) / Gi.diagonal()[idx]
    return torch.stack([torch.trace(W[:, p] @ _cholesky_solve(Gi[p][:, p], W[:, p].T, 1e-9, "inverse Gram block"))
                        for p in groups])


def compensation_loss(W: torch.Tensor, G: torch.Tensor, keep: torch.Tensor) -> float:
    """‖X W_full − X W′_kept‖² / ‖X W_full‖² after ``compensate`` (undamped): the relative output error left."""
    W64, G = W.double(), G.double()
    Wc = compensate(W64, G, keep, damp=1e-9)
    E = W64 - Wc
    return float(((E @ G) * E).sum() / ((W64 @ G) * W64).sum())


def flap_fluctuation(W: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """FLAP's WIFV score [D]: the input channel's fluctuation (variance over calibration tokens) times the
    squared column norm of the output projection (An et al., AAAI 2024)."""
    return var.double() * (W.double() ** 2).sum(0)


def flap_bias(W: torch.Tensor, mean: torch.Tensor, pruned: torch.Tensor) -> torch.Tensor:
    """FLAP's bias compensation [out]: what the pruned channels contributed on average, W_p · mean_p."""
    return W.double()[:, pruned] @ mean.double()[pruned]


def magnitude(W_out: torch.Tensor, W_ins: list[torch.Tensor]) -> torch.Tensor:
    """Weight-norm score [D]: the root-mean-square of every weight removed with channel i (the output
    projection's column i and each input projection's row i), so units of different sizes compare."""
    sq = (W_out.double() ** 2).sum(0) + sum((w.double() ** 2).sum(1) for w in W_ins)
    n = W_out.shape[0] + sum(w.shape[1] for w in W_ins)
    return (sq / n).sqrt()
