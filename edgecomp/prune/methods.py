"""Pruning methods in one code path: how each scores channels and how it compensates what it cut.

Every method scores the input channels of an output projection (o: grouped into heads afterwards; fc2 /
down: MLP channels), higher = keep, and may rewrite that projection once the kept channels are known.
They share the calibration statistics, the global ranking and the physical cut (``edgecomp.prune``),
so a results table compares scoring and compensation only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from edgecomp.prune import scoring
from edgecomp.prune.calibrate import InputStats
from edgecomp.registry import Registry


@dataclass(frozen=True)
class Method:
    name: str
    # (output weight [out, D], input-projection weights [D, in] each, stats, target ratio, cfg) -> scores [D]
    score: Callable[..., torch.Tensor]
    standardize: bool  # z-standardise unit scores per kind before the global ranking
    # (output weight [out, D], output bias [out] | None, stats, kept idx, pruned idx, cfg) -> (weight, bias)
    compensate: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None
    description: str
    # (output weight [out, D], stats, channel groups, parameters each group removes, cfg) -> one score per
    # group, or None: units get the mean of their channels' scores
    unit_score: Callable[..., torch.Tensor] | None = None


METHODS: Registry[Method] = Registry("pruning method")


def _newton_score(W, W_ins, stats: InputStats, rho: float, cfg) -> torch.Tensor:
    return scoring.newton_mask(W, stats.G, rho, lam=cfg.lam)


def _newton_unit_score(W, stats: InputStats, groups, costs, cfg) -> torch.Tensor:
    # rank="loss": the compensated loss L* (Thm 3) of each unit alone, per parameter it removes, so a head
    # (q/k/v rows + o columns) and an MLP channel compare by what their removal buys
    if cfg.rank == "mask":
        z = _newton_score(W, None, stats, cfg.ratio, cfg)
        return torch.stack([z[g].mean() for g in groups])
    return scoring.optimal_losses(W, stats.G, groups, damp=cfg.damp) / torch.tensor(costs, dtype=torch.float64)


def _newton_compensate(W, b, stats: InputStats, keep, pruned, cfg):
    return scoring.compensate(W, stats.G, keep, damp=cfg.damp, C=stats.C), b


def _flap_score(W, W_ins, stats: InputStats, rho: float, cfg) -> torch.Tensor:
    return scoring.flap_fluctuation(W, stats.var)


def _flap_compensate(W, b, stats: InputStats, keep, pruned, cfg):
    shift = scoring.flap_bias(W, stats.mean, pruned).to(W.dtype)
    return W, shift if b is None else b + shift


def _magnitude_score(W, W_ins, stats: InputStats, rho: float, cfg) -> torch.Tensor:
    return scoring.magnitude(W, W_ins)


for _m in (
    Method("newton", _newton_score, False, _newton_compensate,
           "numerical pruning: units ranked by the optimal compensated loss (rank=loss) or the Newton mask on "
           "(WWᵀ)∘(XᵀX) + λ11ᵀ (rank=mask), closed-form least-squares compensation", _newton_unit_score),
    Method("flap", _flap_score, True, _flap_compensate,
           "FLAP: input fluctuation × squared column norm, standardised per kind, mean-bias compensation"),
    Method("magnitude", _magnitude_score, True, None,
           "weight norm (RMS of every weight a unit removes), standardised per kind, no compensation"),
):
    METHODS.add(_m.name, _m)
