"""Quantize a torch model layer by layer: RTN, GPTQ or QuartDepth, sequentially over blocks.

Layers are processed in call order, a block at a time (a block = the layers sharing a name prefix up to
the first index, e.g. ``blocks.3``; consecutive blocks are merged so that there are at most ``MAX_PASSES``
passes). For each block the calibration feeds run through the full-precision model (targets X) and
through the partially quantized model (inputs X_q, which carry the error of every block before), so each
layer is fitted to what the float model computes, from what the quantized model actually feeds it.

QuartDepth per layer (methods.md §1.1): LogNP polishing factor α from X_q (4-bit activations), the
activation quantizer gives X̂, then activation compensation ``W + W(X − X̂)X̂ᵀ(X̂X̂ᵀ + γI)⁻¹``, then
weight reconstruction (learned rounding, Fisher-weighted output error, time-boxed). GPTQ uses H = X̂X̂ᵀ;
RTN uses nothing. Everything runs in folded coordinates (z = x / α, W' = W·diag(α)) when polished.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from edgecomp.config import QuantizeConfig
from edgecomp.quant import calibrate
from edgecomp.quant.activations import lognp_alpha
from edgecomp.quant.compensation import compensate
from edgecomp.quant.embedding import quantize_embeddings
from edgecomp.quant.gptq import gptq
from edgecomp.quant.modules import ActQuant, QuantConv2d, QuantizedWeight, QuantLinear
from edgecomp.quant.plan import LayerPlan, embedding_grid, plan_layers
from edgecomp.quant.primitives import rtn, sqnr_db
from edgecomp.quant.reconstruction import output_loss, reconstruct

MAX_PASSES = 12  # calibration passes over the model; bounds build time on deep models (30-block SmolLM2)
MAX_TOKENS = 8192  # rows of X kept per layer for the K×K statistics
# Reconstruction runs a fixed number of iterations derived from the time budget with this nominal rate
# (one iteration costs about 4·N·K² flops), so the same recipe gives the same weights on every machine;
# the wall-clock cap (3x the budget) only guards against very slow hosts.
NOMINAL_FLOPS = 20e9
ITER_OVERHEAD = 3e-4  # seconds of Python/Adam bookkeeping per iteration (dominates for small layers)
MIN_ITERS, MAX_ITERS = 100, 20000
OUTLIER_RATIO = 8.0  # an input channel is an outlier when its max |x| exceeds this times the median channel's


def quantize_module(module: nn.Module, feeds: Sequence[Sequence[torch.Tensor]], cfg: QuantizeConfig,
                    seed: int = 0, progress: Callable[[str], None] | None = None) -> tuple[nn.Module, dict, dict]:
    """Return (quantized copy of ``module``, report dict, wall seconds per layer). ``feeds`` are positional
    input tuples. The report is deterministic for a given recipe and calibration set (no timings in it)."""
    t0 = time.perf_counter()
    module.eval()
    plans = {p.name: p for p in plan_layers(module, cfg)}
    order = calibrate.call_order(module, feeds[0], list(plans))
    qmodel = copy.deepcopy(module)
    fisher_names = [n for n in order if plans[n].method == "quartdepth"]
    fisher = calibrate.output_fisher(module, feeds, fisher_names, seed) if fisher_names else {}
    budget = _recon_budget(module, [plans[n] for n in fisher_names], cfg.recon_seconds)
    layers, seconds = [], {}
    for group in group_passes(order):
        if progress:
            progress(f"quantize {group[0]} .. {group[-1]}")
        x_fp = calibrate.capture_inputs(module, feeds, group, group[-1])
        x_q = calibrate.capture_inputs(qmodel, feeds, group, group[-1])
        for name in group:
            t = time.perf_counter()
            new, rep = quantize_layer(_get(qmodel, name), plans[name], x_fp[name], x_q[name], fisher.get(name),
                                      budget.get(name, 0.0), cfg, seed)
            _set(qmodel, name, new)
            seconds[name] = round(time.perf_counter() - t, 2)
            layers.append(rep)
    for rep in quantize_embeddings(qmodel, lambda name, emb: embedding_grid(name, emb, cfg)):
        layers.append({"scheme": cfg.scheme, "method": "rtn", "a_bits": None, "polished": False,
                       "output_sqnr_db": None, "max_abs_input": None, "outlier_channels": 0, **rep})
    skipped = sorted(set(plans) - set(order))
    report = _summary(module, qmodel, layers, cfg, skipped)
    seconds["total"] = round(time.perf_counter() - t0, 1)
    return qmodel.eval(), report, seconds


def quantize_layer(m: nn.Module, plan: LayerPlan, xs_fp: list[torch.Tensor], xs_q: list[torch.Tensor],
                   fisher: torch.Tensor | None, seconds: float, cfg: QuantizeConfig, seed: int):
    """Quantize one Linear/Conv2d from its captured inputs; returns (replacement module, layer report)."""
    W = m.weight.detach().float().reshape(m.weight.shape[0], -1)
    pad = getattr(m, "static_padding", None)
    if pad is not None:  # EfficientNet-style "same" convs pad inside forward(); the GEMM sees the padded input
        with torch.no_grad():
            xs_fp, xs_q = [pad(x) for x in xs_fp], [pad(x) for x in xs_q]
    dims = plan.a_dims
    channels = _channel_rows(xs_q, plan.kind)
    cmax = channels.abs().amax(dim=0)
    alpha = inv_shaped = None
    act = ActQuant("int", plan.a_bits, dims, group=plan.a_group) if plan.a_bits else ActQuant()
    polished = False
    if plan.polish:
        alpha = lognp_alpha(_subsample(channels, 1 << 16, seed)).float()
        inv_shaped = (1.0 / alpha) if plan.kind == "linear" else (1.0 / alpha).reshape(1, -1, 1, 1)
        lognp = ActQuant("lognp", plan.a_bits, dims, inv_alpha=inv_shaped, group=plan.a_group)
        # polish="auto": keep LogNP only where it lowers this layer's output error on the calibration inputs
        # (uniform per-token codes win on near-Gaussian inputs; the log code wins on heavy-tailed channels).
        polished = cfg.polish == "on" or _act_error(m, lognp, xs_q, 1.0 / inv_shaped) < _act_error(m, act, xs_q, 1.0)
        if polished:
            act = lognp
        else:
            alpha = inv_shaped = None
    scale_w = _weight_fold(alpha, plan, m)  # W' = W · fold (columns, or rows for depthwise)
    Wf = W * scale_w
    with torch.no_grad():
        xh = [act(x) for x in xs_q]
        xf = xs_fp if inv_shaped is None else [x * inv_shaped for x in xs_fp]
    info: dict = {}
    if plan.kind == "depthwise":
        codes, scale, zero = rtn(Wf, plan.grid)
        Xf = Xh = None
    else:
        Xf, Xh = _rows(xf, m, plan.kind, seed), _rows(xh, m, plan.kind, seed)
        H = Xh.double().T @ Xh.double()
        if plan.method == "rtn":
            codes, scale, zero = rtn(Wf, plan.grid)
        elif plan.method == "gptq":
            codes, scale, zero = gptq(Wf, H, plan.grid, damp=cfg.damp)
        else:
            codes, scale, zero, info = _quartdepth_weights(Wf, Xf, Xh, H, fisher, seconds, plan, cfg, seed)
    qw = QuantizedWeight(codes, scale.float(), zero.float(), plan.grid)
    Wq = qw.dequantize()
    if plan.kind == "linear":
        new = QuantLinear(qw, m.bias, act)
    else:
        new = QuantConv2d(m, qw, act)
    rep = {"layer": plan.name, "kind": plan.kind, "scheme": plan.scheme, "method": plan.method,
           "w_bits": plan.grid.bits, "a_bits": plan.a_bits, "group": plan.grid.group_size,
           "symmetric": plan.grid.symmetric, "shipped_group": plan.shipped, "a_group": plan.a_group,
           "polished": polished,
           "weight_sqnr_db": _db(sqnr_db(W, Wq / scale_w)),
           "output_sqnr_db": _db(_output_sqnr(m, plan, Wf, Wq, xf, xh, Xf, Xh)),
           "max_abs_input": float(f"{float(cmax.max()):.4g}"),
           "outlier_channels": int((cmax > OUTLIER_RATIO * cmax.median().clamp_min(1e-12)).sum()),
           "bytes": new.nbytes}
    if info:
        rep["reconstruction"] = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in info.items()}
    return new, rep


def _quartdepth_weights(Wf, Xf, Xh, H, fisher, seconds: float, plan: LayerPlan, cfg: QuantizeConfig, seed: int):
    """Activation compensation, then weight reconstruction (methods.md §1.1), with a held-out check.

    Candidates: learned rounding and GPTQ error feedback on the compensated weights, GPTQ on the uncompensated
    ones, and plain round-to-nearest (learned rounding only moves each weight to the grid point below or above,
    which loses to GPTQ on strongly correlated inputs; compensation and error feedback can overfit the
    calibration tokens, e.g. MiniLM's padding positions, where RTN has nothing to overfit). Each is fitted on
    the first half of the calibration rows and scored on the second half with the Fisher-weighted output loss
    against the fp32 target; the winner is refitted on all rows.
    Returns (codes, scale, zero, info) with info["chosen"] naming the winner."""
    f = fisher if fisher is not None else torch.ones(Wf.shape[0])
    half = Xf.shape[0] // 2
    fit = _stats(Xf[:half], Xh[:half])
    val = _stats(Xf[half:], Xh[half:])
    full = (H, Xf.double().T @ Xh.double())
    iters = 0
    if seconds > 0:
        n, k = Wf.shape
        per_iter = 4 * n * k * k / NOMINAL_FLOPS + ITER_OVERHEAD
        iters = int(min(MAX_ITERS, max(MIN_ITERS, seconds / 2 / per_iter)))  # half the budget per fit

    def candidate(name: str, stats):
        Hs, Cs = stats
        if name == "rtn":
            return (*rtn(Wf, plan.grid), {})
        if name == "gptq_uncompensated":
            return (*gptq(Wf, Hs, plan.grid, damp=cfg.damp), {})
        Wc = compensate(Wf, Hs, Cs, damp=cfg.damp).float()
        if name == "gptq":
            return (*gptq(Wc, Hs, plan.grid, damp=cfg.damp), {})
        *out, info = reconstruct(Wc, Wf, Hs, Cs, f, plan.grid, iters=iters, seconds=3 * seconds + 1, seed=seed)
        return (*out, {k: v for k, v in info.items() if k in ("iters", "kept")})

    names = ["gptq", "gptq_uncompensated", "rtn"] + (["learned"] if iters else [])
    losses = {}
    for name in names:
        c, s, z, _ = candidate(name, fit)
        Wq = QuantizedWeight(c, s.float(), z.float(), plan.grid).dequantize()
        losses[name] = output_loss(Wq, Wf, *val, f)
    best = min(losses, key=losses.get)
    codes, scale, zero, info = candidate(best, full)
    return codes, scale, zero, {**info, "chosen": best}


def _stats(Xf: torch.Tensor, Xh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(H = Σ x̂x̂ᵀ, C = Σ x x̂ᵀ) in float64 from GEMM rows [T, K]."""
    Xh64 = Xh.double()
    return Xh64.T @ Xh64, Xf.double().T @ Xh64


def _act_error(m: nn.Module, act: ActQuant, xs: list[torch.Tensor], unfold) -> float:
    """‖f(x) − f(x̂)‖² of the float layer on (up to 4) calibration inputs, x̂ = act(x) mapped back to x's
    coordinates by ``unfold`` (α for polished activations)."""
    err = 0.0
    with torch.no_grad():
        for x in xs[:4]:
            xq = act(x) * unfold
            ref, got = m(x), m(xq)
            err += float((ref - got).double().pow(2).sum())
    return err


def group_passes(order: Sequence[str], max_passes: int = MAX_PASSES) -> list[list[str]]:
    """Split layers (call order) into blocks by name prefix up to the first index, then merge neighbouring
    blocks into at most ``max_passes`` groups of about equal block count."""
    blocks: list[list[str]] = []
    last = None
    for name in order:
        key = _block_key(name)
        if key != last:
            blocks.append([])
            last = key
        blocks[-1].append(name)
    per = math.ceil(len(blocks) / max_passes)
    return [sum(blocks[i:i + per], []) for i in range(0, len(blocks), per)]


def _block_key(name: str) -> str:
    m = re.match(r"^(.*?\.\d+)(\.|$)", name)
    return m.group(1) if m else name


def _recon_budget(module: nn.Module, plans: list[LayerPlan], total: float) -> dict[str, float]:
    """Seconds of weight reconstruction per layer, proportional to its weight count."""
    sizes = {p.name: _get(module, p.name).weight.numel() for p in plans if p.kind != "depthwise"}
    whole = sum(sizes.values()) or 1
    return {n: total * s / whole for n, s in sizes.items()}


def _weight_fold(alpha: torch.Tensor | None, plan: LayerPlan, m: nn.Module) -> torch.Tensor:
    if alpha is None:
        return torch.ones(1)
    if plan.kind == "linear":
        return alpha.reshape(1, -1)
    if plan.kind == "depthwise":  # output channel c reads only input channel c
        return alpha.reshape(-1, 1)
    kk = m.weight.shape[2] * m.weight.shape[3]
    return alpha.repeat_interleave(kk).reshape(1, -1)  # unfold order: (c, kh, kw)


def _channel_rows(xs: list[torch.Tensor], kind: str) -> torch.Tensor:
    """Input activations as [rows, channels] (tokens for Linear, pixels for NCHW convs)."""
    if kind == "linear":
        return torch.cat([x.reshape(-1, x.shape[-1]) for x in xs])
    return torch.cat([x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) for x in xs])


def _rows(xs: list[torch.Tensor], m: nn.Module, kind: str, seed: int) -> torch.Tensor:
    """Layer inputs as GEMM rows [T, K] (im2col for convs), at most MAX_TOKENS, same rows for every call."""
    per_feed = max(1, MAX_TOKENS // len(xs))
    out = []
    for i, x in enumerate(xs):
        if kind == "linear":
            r = x.reshape(-1, x.shape[-1])
        else:
            r = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride).transpose(1, 2)
            r = r.reshape(-1, m.weight[0].numel())
        out.append(_subsample(r, per_feed, seed + i))
    return torch.cat(out)


def _subsample(rows: torch.Tensor, cap: int, seed: int) -> torch.Tensor:
    if rows.shape[0] <= cap:
        return rows
    idx = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))[:cap].sort().values
    return rows[idx]


SQNR_ELEMENTS = 1 << 24  # output elements the per-layer SQNR is measured on (sqnr_db works in float64)


def _output_sqnr(m, plan, Wf, Wq, xf, xh, Xf, Xh) -> float:
    with torch.no_grad():
        if Xf is not None:
            # every k-th row: SmolLM2's lm_head over all 8192 rows would be 4e8 outputs, 13 GB in float64
            step = max(1, math.ceil(Xf.shape[0] * Wf.shape[0] / SQNR_ELEMENTS))
            return sqnr_db(Xf[::step] @ Wf.T, Xh[::step] @ Wq.T)
        shape = m.weight.shape
        conv = lambda x, w: F.conv2d(x, w.reshape(shape), None, m.stride, m.padding, m.dilation, m.groups)  # noqa: E731
        ref = torch.cat([conv(x, Wf).flatten() for x in xf[:4]])
        got = torch.cat([conv(x, Wq).flatten() for x in xh[:4]])
        return sqnr_db(ref, got)


def _db(v: float) -> float | None:
    return None if math.isinf(v) or math.isnan(v) else round(v, 2)


def _summary(fp: nn.Module, q: nn.Module, layers: list[dict], cfg: QuantizeConfig, skipped: list[str]) -> dict:
    """Sizes count what export writes: quantized weights packed, every parameter left in ``q`` (biases,
    norms, embeddings; a tied table once) in fp32."""
    fp_bytes = sum(p.numel() * 4 for p in fp.parameters())
    q_bytes = sum(r["bytes"] for r in layers) + sum(p.numel() * 4 for p in q.parameters())
    worst = sorted((r for r in layers if r["output_sqnr_db"] is not None), key=lambda r: r["output_sqnr_db"])[:5]
    return {"scheme": cfg.scheme, "method": cfg.method, "layers_quantized": len(layers),
            "layers_not_run": skipped,
            "weight_bytes_fp32": fp_bytes, "weight_bytes_quantized": q_bytes,
            "compression": round(fp_bytes / max(1, q_bytes), 2),
            "outlier_channels": sum(r["outlier_channels"] for r in layers),
            "worst_layers": [{"layer": r["layer"], "output_sqnr_db": r["output_sqnr_db"]} for r in worst],
            "per_layer": layers}


def _get(module: nn.Module, name: str) -> nn.Module:
    return module.get_submodule(name)


def _set(module: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, leaf, new)
