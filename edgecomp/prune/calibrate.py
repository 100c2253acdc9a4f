"""Calibration statistics at the inputs of the output projections (o / fc2 / down), where pruning cuts.

One pass over the calibration feeds with forward pre-hooks accumulates, per projection, in float64:
the Gram matrix G = XᵀX [D, D], the channel sums and sums of squares [D], and the token count. Padding
tokens (``attention_mask`` == 0 in a feed) are left out: they are not part of any real input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from edgecomp.specs import Feeds


@dataclass
class InputStats:
    G: torch.Tensor  # XᵀX [D, D] float64
    sum: torch.Tensor  # [D]
    sumsq: torch.Tensor  # [D]
    n: int = 0
    _rows: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, D: int) -> "InputStats":
        z = torch.zeros(D, dtype=torch.float64)
        return cls(torch.zeros(D, D, dtype=torch.float64), z.clone(), z.clone())

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double()
        if self._rows is not None:
            x = x[self._rows]
        self.G += x.T @ x
        self.sum += x.sum(0)
        self.sumsq += (x * x).sum(0)
        self.n += x.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / max(self.n, 1)

    @property
    def var(self) -> torch.Tensor:
        return (self.sumsq / max(self.n, 1) - self.mean**2).clamp(min=0)


class _Stop(Exception):
    """Raised after the last projection of interest ran: the rest of the forward is not needed."""


def collect(module: nn.Module, projections: list[nn.Linear], feeds: list[Feeds],
            input_names: list[str], stop_after: nn.Module | None = None) -> list[InputStats]:
    """Run ``module`` over ``feeds`` (inputs passed positionally in ``input_names`` order) and return one
    ``InputStats`` per projection, in order. With ``stop_after`` each forward ends once that module ran."""
    stats = [InputStats.empty(p.in_features) for p in projections]
    hooks = [p.register_forward_pre_hook(lambda _m, args, s=s: s.add(args[0]))
             for p, s in zip(projections, stats, strict=True)]
    if stop_after is not None:
        hooks.append(stop_after.register_forward_hook(lambda *_: (_ for _ in ()).throw(_Stop())))
    try:
        with torch.no_grad():
            for feed in feeds:
                rows = _real_tokens(feed)
                for s in stats:
                    s._rows = rows
                try:
                    module(*(torch.from_numpy(np.asarray(feed[n])) for n in input_names))
                except _Stop:
                    pass
    finally:
        for h in hooks:
            h.remove()
        for s in stats:
            s._rows = None
    return stats


def _real_tokens(feed: Feeds) -> torch.Tensor | None:
    """Row selector for the flattened [B*T] tokens of a feed with an attention mask, else None."""
    mask = feed.get("attention_mask")
    return None if mask is None else torch.from_numpy(np.asarray(mask).reshape(-1) != 0)
