"""Calibration statistics at the inputs of the output projections (o / fc2 / down), where pruning cuts.

One pass over the calibration feeds with forward pre-hooks accumulates, per projection, in float64:
the Gram matrix G = XᵀX [D, D], the channel sums and sums of squares [D], and the token count. Padding
tokens (``attention_mask`` == 0 in a feed) are left out: they are not part of any real input.

With a ``Reference`` (the unpruned model and its matching projections) each feed also runs through the
reference first, and the cross-Gram C = XᵀX_ref [D, D_ref] pairs every token's input in the model being
pruned with the same token's input in the unpruned model: what compensation needs to refit a projection
to the *unpruned* model's output, so it also absorbs the drift earlier cuts left in its input.
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
    C: torch.Tensor | None = None  # XᵀX_ref [D, D_ref] float64, with a Reference only
    _rows: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def empty(cls, D: int) -> "InputStats":
        z = torch.zeros(D, dtype=torch.float64)
        return cls(torch.zeros(D, D, dtype=torch.float64), z.clone(), z.clone())

    def add(self, x: torch.Tensor, x_ref: torch.Tensor | None = None) -> None:
        x = self._flat(x)
        if x_ref is not None:
            x_ref = self._flat(x_ref)
            C = x.T @ x_ref
            self.C = C if self.C is None else self.C + C
        self.G += x.T @ x
        self.sum += x.sum(0)
        self.sumsq += (x * x).sum(0)
        self.n += x.shape[0]

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().reshape(-1, x.shape[-1]).double()
        return x if self._rows is None else x[self._rows]

    @property
    def mean(self) -> torch.Tensor:
        return self.sum / max(self.n, 1)

    @property
    def var(self) -> torch.Tensor:
        return (self.sumsq / max(self.n, 1) - self.mean**2).clamp(min=0)


@dataclass(frozen=True)
class Reference:
    """The unpruned model and, in the same order as the projections being collected, its own projections."""
    module: nn.Module
    projections: list[nn.Linear]


class _Stop(Exception):
    """Raised after the last projection of interest ran: the rest of the forward is not needed."""


def collect(module: nn.Module, projections: list[nn.Linear], feeds: list[Feeds],
            input_names: list[str], stop_after: bool = False, reference: Reference | None = None) -> list[InputStats]:
    """Run ``module`` over ``feeds`` (inputs passed positionally in ``input_names`` order) and return one
    ``InputStats`` per projection, in order. With ``stop_after`` each forward ends once the last projection
    ran; with ``reference`` the stats also get the cross-Gram with the reference's projections (``C``)."""
    stats = [InputStats.empty(p.in_features) for p in projections]
    seen_ref: dict[int, torch.Tensor] = {}
    hooks = [p.register_forward_pre_hook(lambda _m, args, i=i, s=s: s.add(args[0], seen_ref.get(i)))
             for i, (p, s) in enumerate(zip(projections, stats, strict=True))]
    if reference is not None:
        hooks += [p.register_forward_pre_hook(lambda _m, args, i=i: seen_ref.__setitem__(i, args[0]))
                  for i, p in enumerate(reference.projections)]
    if stop_after:
        hooks += [_stop_hook(ps[-1]) for ps in (projections, reference.projections if reference else []) if ps]
    try:
        with torch.no_grad():
            for feed in feeds:
                rows = _real_tokens(feed)
                for s in stats:
                    s._rows = rows
                args = [torch.from_numpy(np.asarray(feed[n])) for n in input_names]
                seen_ref.clear()
                if reference is not None:
                    _forward(reference.module, args)
                _forward(module, args)
    finally:
        for h in hooks:
            h.remove()
        for s in stats:
            s._rows = None
    return stats


def _stop_hook(last: nn.Module):
    """Ends a forward once ``last`` ran: the rest of the model is not needed."""
    return last.register_forward_hook(lambda *_: (_ for _ in ()).throw(_Stop()))


def _forward(module: nn.Module, args: list[torch.Tensor]) -> None:
    try:
        module(*args)
    except _Stop:
        pass


def _real_tokens(feed: Feeds) -> torch.Tensor | None:
    """Row selector for the flattened [B*T] tokens of a feed with an attention mask, else None."""
    mask = feed.get("attention_mask")
    return None if mask is None else torch.from_numpy(np.asarray(mask).reshape(-1) != 0)
