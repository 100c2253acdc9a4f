"""QuartDepth weight reconstruction: AdaRound learnable rounding under a Fisher-weighted output loss.

For each output row n the loss is the Fisher-weighted output error of the quantized row on quantized inputs
against the float row on float inputs, written with Gram matrices so no token tensors are needed:

    f_n ||ŵ_n X̂ - w_n X||² = f_n (ŵ_n H ŵ_nᵀ - 2 ŵ_n Cᵀ w_nᵀ) + const,   H = X̂ X̂ᵀ, C = X X̂ᵀ.

The "raw" loss reported is that quantity minus its value at the least-squares float weights ŵ* = w C H⁻¹
(lightly damped), i.e. the excess output error over the best unquantized weights, summed over rows; it is
optimised divided by its value at round-to-nearest, so λ is dimensionless.

Rounding (AdaRound, Nagel et al. 2020; defaults from QDrop): with the grid's scale and zero of w_init fixed,
ŵ = s (clamp(floor(w_init / s) + h(V) + z, 0, qmax) - z), h(V) = clamp(sigmoid(V)(ζ - γ) + γ, 0, 1). V starts
at h(V) = frac(w_init / s); after warm-up the regulariser λ Σ(1 - |2h - 1|^β) pulls h to 0 or 1 while β
anneals b_range[0] -> b_range[1]. Adam updates V only. QDrop's activation dropping has no Gram-matrix analogue
and is not used.

The regulariser is a sum over weights, as in AdaRound's and QDrop's code, not a mean: against the normalised
loss, λ = 0.01 times a mean leaves about two thirds of h undecided and the hard rounding barely beats
round-to-nearest, while the sum (an effective mean weight of 0.01 N K, 20 for a 32 x 64 layer) sits in the
range where the learned rounding is good (measured mean weights 1e2..1e5 are about equally good).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from edgecomp.errors import ConfigError
from edgecomp.linalg import damped_cholesky
from edgecomp.quant.primitives import (
    WeightGrid,
    dequantize_weight,
    quantize_weight,
    weight_qparams,
)

ZETA, GAMMA = 1.1, -0.1  # AdaRound's stretch of the sigmoid, so h reaches exactly 0 and 1
_REF_DAMP = 1e-4  # damping (fraction of mean diag H) for the least-squares reference weights


def _raw_loss(W_hat: Tensor, H: Tensor, B: Tensor, f: Tensor) -> Tensor:
    """Σ_n f_n (ŵ_n H ŵ_nᵀ - 2 ŵ_n b_n) with B = w C the rows b_n; W_hat, B: [N, K]; H: [K, K]; f: [N]."""
    return (f * (W_hat * (W_hat @ H - 2.0 * B)).sum(dim=1)).sum()


def output_loss(W_hat: Tensor, w_target: Tensor, H: Tensor, C: Tensor, fisher: Tensor) -> float:
    """Fisher-weighted output error Σ_n f_n ‖ŵ_n X̂ − w_n X‖² up to a constant (float64), for comparing
    candidate weights of one layer: W_hat, w_target [N, K]; H = Σ x̂x̂ᵀ, C = Σ x x̂ᵀ [K, K]; fisher [N]."""
    B = w_target.double() @ C.double()
    return float(_raw_loss(W_hat.double(), H.double(), B, fisher.double()))


def _least_squares(B: Tensor, H: Tensor) -> Tensor:
    """ŵ* = B H⁻¹ (the unconstrained minimiser of the raw loss), lightly damped so singular H still factorises."""
    return torch.cholesky_solve(B.T, damped_cholesky(H, _REF_DAMP, "reconstruction Gram matrix")).T


def _expand(t: Tensor, K: int) -> Tensor:
    """[N, G] per-group parameters -> [N, K] per-weight."""
    return t.repeat_interleave(K // t.shape[1], dim=1)


def _check(w_init: Tensor, w_target: Tensor, H: Tensor, C: Tensor, fisher: Tensor) -> None:
    N, K = w_init.shape if w_init.dim() == 2 else (-1, -1)
    if w_target.shape != (N, K) or H.shape != (K, K) or C.shape != (K, K) or fisher.shape != (N,):
        raise ConfigError(f"reconstruct needs w_init and w_target [N, K], H and C [K, K], fisher [N]; got "
                          f"{tuple(w_init.shape)}, {tuple(w_target.shape)}, {tuple(H.shape)}, {tuple(C.shape)}, "
                          f"{tuple(fisher.shape)}", hint="flatten conv weights to [C_out, C_in*kh*kw]")
    if bool((fisher < 0).any()) or not bool(torch.isfinite(fisher).all()):
        raise ConfigError("reconstruct's fisher weights must be finite and >= 0",
                          hint="pass mean squared output gradients per output channel (all ones = unweighted)")


def reconstruct(w_init: Tensor, w_target: Tensor, H: Tensor, C: Tensor, fisher: Tensor, grid: WeightGrid,
                iters: int = 20000, seconds: float = 60.0, lam: float = 0.01, b_range=(20.0, 2.0),
                warmup: float = 0.2, lr: float = 1e-2, seed: int = 0) -> tuple[Tensor, Tensor, Tensor, dict]:
    """Learn the rounding direction of every weight of w_init (module docstring), within a time box.

    w_init: [N, K] weights to round (e.g. compensated), whose grid parameters are kept; w_target: [N, K] float
    weights defining the target outputs w X; H: [K, K] = Σ x̂ x̂ᵀ; C: [K, K] = Σ x x̂ᵀ; fisher: [N] >= 0 per-row
    weights (all ones = plain output MSE). Stops after ``iters`` Adam steps or ``seconds`` of wall time,
    whichever comes first; the warm-up and β schedule follow the iteration count only (deterministic), so
    callers should size ``iters`` to the time they have and treat ``seconds`` as a safety stop. ``seed`` is part
    of the stable signature for stochastic variants
    (QDrop-style dropping); the Gram-matrix loss and the initialisation are deterministic and do not use it.

    Returns (codes uint8 [N, K], scale float32 [N, G], zero float32 [N, G], info) with info = {"iters",
    "seconds", "loss_rtn", "loss_final", "kept"}: raw losses of round-to-nearest and of the hard-rounded learned
    codes (float64), and "learned" or "rtn" for the codes returned -- round-to-nearest whenever learning did
    not lower the raw loss.
    """
    _check(w_init, w_target, H, C, fisher)
    t0 = time.perf_counter()
    N, K = w_init.shape
    w0 = w_init.detach().float()
    scale, zero = weight_qparams(w0, grid)
    codes_rtn = quantize_weight(w0, scale, zero, grid)

    H64, f64 = H.detach().double(), fisher.detach().double()
    B64 = w_target.detach().double() @ C.detach().double()
    base = _raw_loss(_least_squares(B64, H64), H64, B64, f64)

    def raw64(codes: Tensor) -> float:
        return float(_raw_loss(dequantize_weight(codes, scale.double(), zero.double(), grid), H64, B64, f64) - base)

    loss_rtn = raw64(codes_rtn)
    info = {"iters": 0, "seconds": 0.0, "loss_rtn": loss_rtn, "loss_final": loss_rtn, "kept": "rtn"}
    if not loss_rtn > 0 or iters <= 0 or seconds <= 0:
        # Nothing to gain (zero Fisher weight, or already exact) or no budget: round to nearest.
        info["seconds"] = time.perf_counter() - t0
        return codes_rtn, scale.float(), zero.float(), info

    s, z = _expand(scale, K), _expand(zero, K)
    # w_floor: the code below w (zero point included); rest in [0, 1) is the AdaRound initialisation h(V) = rest
    if grid.float_zero:
        u = w0 / s + z
        w_floor = torch.floor(u)
        rest = u - w_floor
    else:
        w_floor = torch.floor(w0 / s)
        rest = w0 / s - w_floor
        w_floor = w_floor + z
    V = torch.nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0))
    # NOTE: H is symmetric, so the loss gradient is 2 f (ŵ H - b) / norm: one GEMM per step instead of the two
    # autograd would spend on the quadratic form; autograd only carries it back through the rounding function.
    Hf, Bf = ((H64 + H64.T) / 2).float(), B64.float()
    fn = (2.0 * f64 / loss_rtn).float().unsqueeze(1)

    def h_of(V: Tensor) -> Tensor:
        return torch.clamp(torch.sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    opt = torch.optim.Adam([V], lr=lr)
    done = 0
    while done < iters:
        # The schedule follows iterations only, so a recipe gives the same weights on any machine; the wall-clock
        # box is a hard stop for hosts far slower than the caller planned for (then the rounding is hardened as is).
        progress = done / iters
        if done % 16 == 0 and time.perf_counter() - t0 >= seconds:
            break
        h = h_of(V)
        W_hat = s * (torch.clamp(w_floor + h, 0, grid.qmax) - z)
        with torch.no_grad():
            grad = fn * (W_hat @ Hf - Bf)
        loss = (grad * W_hat).sum()
        if progress >= warmup:
            beta = b_range[1] + (b_range[0] - b_range[1]) * (1.0 - (progress - warmup) / (1.0 - warmup))
            loss = loss + lam * (1.0 - torch.abs(2.0 * h - 1.0) ** beta).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1

    with torch.no_grad():
        codes = torch.clamp(w_floor + (h_of(V) >= 0.5).float(), 0, grid.qmax).to(torch.uint8)
    loss_final = raw64(codes)
    learned = loss_final < loss_rtn
    info.update(iters=done, seconds=time.perf_counter() - t0, loss_final=loss_final,
                kept="learned" if learned else "rtn")
    return (codes if learned else codes_rtn), scale.float(), zero.float(), info
