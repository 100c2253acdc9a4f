"""Calibration passes over a torch model: layer call order, layer inputs, output-gradient (Fisher) weights.

All passes run the model on the calibration feeds only (train splits / held-apart data, never eval data).
Layer inputs are captured as full tensors per feed; a pass stops as soon as the last layer it needs has
run, so capturing an early block does not pay for the rest of the network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn


class _Stop(Exception):
    """Raised from a hook to end a forward pass early."""


@contextlib.contextmanager
def _hooks(module: nn.Module, names: Sequence[str], make_hook, kind: str = "forward_pre"):
    """Register ``make_hook(name)`` on each named submodule (``register_{kind}_hook``) for the block."""
    mods = dict(module.named_modules())
    handles = [getattr(mods[n], f"register_{kind}_hook")(make_hook(n)) for n in names]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def call_order(module: nn.Module, feed: Sequence[torch.Tensor], names: Sequence[str]) -> list[str]:
    """``names`` sorted by when their module first runs in ``module(*feed)``; layers that never run are dropped."""
    seen: list[str] = []
    with _hooks(module, names, lambda n: lambda m, a: seen.append(n) if n not in seen else None), torch.no_grad():
        module(*feed)
    return seen


def capture_inputs(module: nn.Module, feeds: Sequence[Sequence[torch.Tensor]], names: Sequence[str],
                   stop_after: str) -> dict[str, list[torch.Tensor]]:
    """The first positional input of each named layer, one tensor per feed (detached, float32).

    ``stop_after`` names the layer after which each forward pass is abandoned (the last of ``names`` in
    call order)."""
    got: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def pre_hook(n):
        def hook(m, args):
            got[n].append(args[0].detach().float().clone())
            if n == stop_after:
                raise _Stop
        return hook

    with _hooks(module, names, pre_hook), torch.no_grad():
        for feed in feeds:
            with contextlib.suppress(_Stop):
                module(*feed)
    return got


def output_fisher(module: nn.Module, feeds: Sequence[Sequence[torch.Tensor]], names: Sequence[str],
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """Per output channel mean squared gradient of each named layer's output, shape [N] (mean 1).

    Label-free: the loss is ⟨f(x), r⟩ with r ~ N(0, I) drawn per feed, so E[g gᵀ] = J Jᵀ, the Gauss-Newton
    Hessian of the squared output error ½‖f_q(x) − f(x)‖² at the full-precision model (the quantity the
    weight reconstruction should weight its output error by)."""
    outs: dict[str, torch.Tensor] = {}
    acc: dict[str, torch.Tensor] = {}

    def fwd_hook(n):
        def hook(m, args, out):
            outs[n] = out
        return hook

    params = [p for p in module.parameters() if p.dtype.is_floating_point]
    gen = torch.Generator().manual_seed(seed)
    with _hooks(module, names, fwd_hook, "forward"), _grads_on(params):
        for feed in feeds:
            outs.clear()
            with torch.enable_grad():
                result = module(*feed)
                results = result if isinstance(result, (tuple, list)) else (result,)
                loss = sum((r * torch.randn(r.shape, generator=gen)).sum() for r in results if r.requires_grad)
                ran = [n for n in names if n in outs]
                grads = torch.autograd.grad(loss, [outs[n] for n in ran], allow_unused=True)
            for n, g in zip(ran, grads, strict=True):
                if g is None:
                    continue
                channel_axis = 1 if g.dim() == 4 else g.dim() - 1  # NCHW conv output or [..., N]
                dims = [d for d in range(g.dim()) if d != channel_axis]
                sq = g.detach().float().pow(2).mean(dim=dims)
                acc[n] = acc.get(n, 0) + sq
    return {n: f / f.mean().clamp_min(1e-30) for n, f in acc.items()}


@contextlib.contextmanager
def _grads_on(params: list[torch.Tensor]):
    """Outputs need a graph for the Fisher pass (grads are taken w.r.t. layer outputs only); restore after."""
    was = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        yield
    finally:
        for p, w in zip(params, was, strict=True):
            p.requires_grad_(w)
