"""Structured pruning of attention heads and MLP channels, physically shrinking the weights.

``prune(module, cfg, feeds, input_names)`` runs one method end to end, in place on ``module``:

1. the family adapter (``structures.ADAPTERS``) lists each block's attention and MLP projections;
2. one calibration pass collects XᵀX, means and variances at every output projection's input;
3. the method (``methods.METHODS``) scores the output projection's input channels; attention channels
   are averaged per head and grouped into units (heads, or GQA slices), MLP channels are units;
4. one global ranking across layers removes units until ``cfg.ratio`` of the prunable parameters are
   gone (``plan.select``; MLP widths rounded to ``cfg.multiple``);
5. the method compensates each output projection for what it lost, and the weights are sliced.

Returns a summary with per-layer kept heads / channels and parameter counts before and after.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgecomp.prune import plan as planning
from edgecomp.prune.calibrate import Reference, collect
from edgecomp.prune.methods import METHODS
from edgecomp.prune.structures import (
    Layer,
    attention_units,
    channel_params,
    head_channels,
    head_params,
    keep_channels,
    keep_heads,
    layers_of,
)
from edgecomp.specs import Feeds


def prunable_params(layers: list[Layer], head_costs: list[int] | None = None) -> int:
    """Parameters the pruner can remove (q/k/v rows unless GQA, o columns, MLP rows and columns, biases).

    ``head_costs``: each layer's parameters per head as counted before pruning (default: counted now); GQA
    cut to one query head per group no longer looks grouped, and would otherwise count its k/v rows."""
    costs = [head_params(L.attn) for L in layers] if head_costs is None else head_costs
    return sum(L.attn.heads * c + L.mlp.output.in_features * channel_params(L.mlp)
               for L, c in zip(layers, costs, strict=True))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops(module: nn.Module, feed: Feeds, input_names: list[str]) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward on ``feed``: every Linear and Conv2d, plus the
    attention matmuls (QKᵀ and AV, 4·T²·heads·head_dim per block) of the adapter's layers."""
    import numpy as np

    total = [0]

    def linear(m, args, out):
        total[0] += 2 * out.numel() * m.in_features

    def conv(m, args, out):
        total[0] += 2 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    hooks = [m.register_forward_hook(linear) for m in module.modules() if isinstance(m, nn.Linear)]
    hooks += [m.register_forward_hook(conv) for m in module.modules() if isinstance(m, nn.Conv2d)]
    layers = layers_of(module)
    tokens = {}
    hooks += [L.attn.output.register_forward_pre_hook(lambda _m, a, i=L.index: tokens.__setitem__(i, a[0].shape[-2]))
              for L in layers]
    try:
        with torch.no_grad():
            module(*(torch.from_numpy(np.asarray(feed[n])) for n in input_names))
    finally:
        for h in hooks:
            h.remove()
    return total[0] + sum(4 * tokens[L.index] ** 2 * L.attn.heads * L.attn.head_dim for L in layers)


def cuts_heads(site, cfg) -> bool:
    """Whether attention heads may go (``prune.heads``): auto cuts them except under grouped-query attention,
    where one unit is a slice across every KV group (SmolLM2: a third of the layer's heads at once) and
    cutting them cost far more perplexity than the same parameters of MLP channels (README: Structured
    pruning), as Minitron also found for GQA models. Their parameters still count in what ``ratio`` is of."""
    return cfg.heads == "yes" or (cfg.heads == "auto" and not site.grouped)


def score_units(layers: list[Layer], stats, method, ratio: float, cfg) -> list[planning.Unit]:
    """Every removable unit of every layer with its score and cost (``stats`` = [attn_0, mlp_0, attn_1, ...])."""
    units = []
    for L, s_attn, s_mlp in zip(layers, stats[0::2], stats[1::2], strict=True):
        a, m = L.attn, L.mlp
        heads = [[h] for h in range(a.heads)]
        if method.unit_score is not None:
            head_scores = method.unit_score(a.output.weight.data, s_attn, [head_channels(a, h) for h in heads],
                                            [head_params(a)] * a.heads, cfg)
        else:
            z = method.score(a.output.weight.data, [lin.weight.data for lin in a.cut_inputs], s_attn, ratio, cfg)
            head_scores = z.reshape(a.heads, a.head_dim).mean(1)
        for members in attention_units(a, head_scores):
            score = head_scores[members].mean()
            if method.unit_score is not None and len(members) > 1:  # a GQA slice is scored as one group
                score = method.unit_score(a.output.weight.data, s_attn, [head_channels(a, members)],
                                          [len(members) * head_params(a)], cfg)[0]
            units.append(planning.Unit(L.index, "head", tuple(members), float(score), len(members) * head_params(a),
                                       removable=cuts_heads(a, cfg)))
        W, cost = m.output.weight.data, channel_params(m)
        if method.unit_score is not None:
            z = method.unit_score(W, s_mlp, [torch.tensor([i]) for i in range(W.shape[1])], [cost] * W.shape[1], cfg)
        else:
            z = method.score(W, [lin.weight.data for lin in m.inputs], s_mlp, ratio, cfg)
        units += [planning.Unit(L.index, "channel", (i,), float(v), cost) for i, v in enumerate(z.tolist())]
    return units


def prune(module: nn.Module, cfg, feeds: list[Feeds], input_names: list[str]) -> dict:
    """Prune ``module`` in place with ``cfg`` (a PruneConfig: ratio, method, allocation, multiple, ...).

    With the uniform allocation (and ``cfg.sequential``) layers are pruned in order, each scored and
    compensated on the activations of the model as pruned so far, so compensation also absorbs what
    earlier layers changed. The global allocation needs every layer's scores at once, and methods that
    standardise scores over all layers (FLAP, magnitude) need every layer's too: one pass.
    """
    if cfg.method == "upop":
        from edgecomp.errors import ConfigError

        raise ConfigError("prune method upop trains on a task loss, not on calibration feeds",
                          hint="call edgecomp.prune.upop.upop(module, cfg, loss_fn), or build with the prune stage")
    method = METHODS.get(cfg.method)
    layers = layers_of(module)
    head_costs = [head_params(L.attn) for L in layers]  # before any cut: GQA cut to one head per group changes it
    params_before, prunable = count_params(module), prunable_params(layers, head_costs)
    per_layer, tokens = [], 0
    sequential = cfg.allocation == "uniform" and cfg.sequential and not method.standardize
    if sequential:
        # the unpruned model, for refitting each projection to its original output (compensate_to=original)
        original = copy.deepcopy(module) if cfg.compensate_to == "original" and method.compensate else None
        original_layers = layers_of(original) if original is not None else [None] * len(layers)
        for L, R in zip(layers, original_layers, strict=True):
            reference = None if R is None else Reference(original, [R.attn.output, R.mlp.output])
            stats = collect(module, [L.attn.output, L.mlp.output], feeds, input_names, stop_after=True,
                            reference=reference)
            units = score_units([L], stats, method, cfg.ratio, cfg)
            per_layer.append(_cut(L, planning.select(units, cfg.ratio, cfg.multiple), *stats, method, cfg))
            tokens = stats[0].n
    else:
        projections = [p for L in layers for p in (L.attn.output, L.mlp.output)]
        stats = collect(module, projections, feeds, input_names)
        units = score_units(layers, stats, method, cfg.ratio, cfg)
        units = planning.standardize(units) if method.standardize else units
        removed = planning.select(units, cfg.ratio, cfg.multiple, uniform=cfg.allocation == "uniform")
        per_layer = [_cut(L, removed, s_attn, s_mlp, method, cfg)
                     for L, s_attn, s_mlp in zip(layers, stats[0::2], stats[1::2], strict=True)]
        tokens = stats[0].n if stats else 0
    after = count_params(module)
    prunable_after = prunable_params(layers, head_costs)
    return {"method": cfg.method, "allocation": cfg.allocation, "sequential": sequential, "heads": cfg.heads,
            "compensate_to": cfg.compensate_to if sequential and method.compensate else None, "ratio": cfg.ratio,
            "multiple": cfg.multiple, "calibration_tokens": tokens,
            "params": [params_before, after], "prunable_params": [prunable, prunable_after],
            "removed_share_of_prunable": round(1 - prunable_after / prunable, 4) if prunable else 0.0,
            "removed_share_of_model": round(1 - after / params_before, 4),
            "layers": per_layer}


def _cut(L: Layer, removed: dict, s_attn, s_mlp, method, cfg) -> dict:
    """Compensate and slice one layer's chosen units (``removed`` from ``plan.select``); its report row."""
    a, m = L.attn, L.mlp
    gone_heads = sorted(h for u in removed.get((L.index, "head"), []) for h in u.members)
    kept_heads = [h for h in range(a.heads) if h not in set(gone_heads)]
    heads_before, width_before = a.heads, m.output.in_features
    if gone_heads:
        w, b = _compensated(method, a.output, s_attn, head_channels(a, kept_heads), head_channels(a, gone_heads), cfg)
        keep_heads(a, kept_heads, w, b)
    elif s_attn.C is not None:  # nothing cut: still refit to the unpruned output (earlier cuts' drift)
        _refit(method, a.output, s_attn, cfg)
    gone = torch.tensor(sorted(u.members[0] for u in removed.get((L.index, "channel"), [])), dtype=torch.int64)
    if len(gone):
        mask = torch.ones(width_before, dtype=torch.bool)
        mask[gone] = False
        kept = mask.nonzero()[:, 0]
        w, b = _compensated(method, m.output, s_mlp, kept, gone, cfg)
        keep_channels(m, kept, w, b)
    elif s_mlp.C is not None:
        _refit(method, m.output, s_mlp, cfg)
    return {"layer": L.index, "heads": [heads_before, a.heads], "kept_heads": kept_heads,
            "mlp_channels": [width_before, m.output.in_features]}


def _refit(method, output: nn.Linear, stats, cfg) -> None:
    """Refit an output projection that lost no channel to the unpruned model's output, in place."""
    w, b = _compensated(method, output, stats, torch.arange(output.in_features), torch.zeros(0, dtype=torch.int64), cfg)
    if w is not None:
        output.weight.data = w.to(output.weight.dtype)
    if b is not None:
        output.bias.data = b.to(output.weight.dtype)


def _compensated(method, output: nn.Linear, stats, keep: torch.Tensor, pruned: torch.Tensor, cfg):
    """The output projection's (weight, bias) after the method's compensation, full width (sliced later)."""
    W, b = output.weight.data, None if output.bias is None else output.bias.data
    if method.compensate is None:
        return None, None
    return method.compensate(W, b, stats, keep, pruned, cfg)
