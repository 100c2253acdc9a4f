"""Small dense linear-algebra helpers shared by the quantization and pruning cores."""

from __future__ import annotations

import torch
from torch import Tensor

from edgecomp.errors import ConfigError


def damped_cholesky(H: Tensor, damp: float, what: str = "Hessian", retries: int = 4,
                    retry_floor: float = 1e-3) -> Tensor:
    """Lower Cholesky factor of H + γ I, γ = damp * mean(diag H), raising the damping 10x after each failure.

    H: [K, K] symmetric (float64 preferred); damp >= 0; retry a uses max(damp, retry_floor) * 10^a (so damp 0
    still gets damped on retry); a non-positive mean diagonal counts as 1. Raises ConfigError naming ``what``
    when even the largest damping does not factorise.
    """
    K = H.shape[0]
    if not bool(torch.isfinite(H).all()):
        # NOTE: checked up front because Cholesky reads one triangle only and would pass an inf in the other.
        raise ConfigError(f"the {K}x{K} {what} contains NaN or inf",
                          hint="check the calibration activations for NaN/inf (overflowing fp16 activations?)")
    mean_diag = float(torch.diag(H).mean())
    if not mean_diag > 0:
        mean_diag = 1.0
    eye = torch.eye(K, dtype=H.dtype)
    for attempt in range(retries + 1):
        gamma = damp if attempt == 0 else max(damp, retry_floor) * 10**attempt
        L, info = torch.linalg.cholesky_ex(H + (gamma * mean_diag) * eye)
        if int(info) == 0:
            return L
    raise ConfigError(f"the {K}x{K} {what} is not positive definite even with damping {gamma:g} x mean(diag)",
                      hint="check the calibration activations for NaN/inf, or raise quantize.damp")
