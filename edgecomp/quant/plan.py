"""Which layers get quantized, at which bits, with which grid and method: one ``LayerPlan`` per layer.

Quantized: every ``nn.Linear`` and ``nn.Conv2d`` (weights, and their inputs when the scheme has activation
bits). Attention score/value products, softmax, normalisation and embeddings stay float, as in
QuartDepth's configurations.

Shipped grids: a Linear whose weight already lies on a 4-bit grid (a checkpoint shipped quantized, e.g. GGUF
Q4_1) keeps that grid (float zero points, the shipped group size); one on a symmetric 8-bit grid (GGUF Q8_0,
e.g. a tied output head) keeps 8 bits; the inputs of both are quantized in blocks of the shipped group.
``quantize.shipped_grid = false`` turns this off.

Per-layer overrides (``quantize.layers``: glob -> scheme | "skip") win over the model-wide scheme; the first
matching glob in recipe order applies.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from torch import nn

from edgecomp.config import QuantizeConfig
from edgecomp.errors import ConfigError
from edgecomp.quant.primitives import WeightGrid, shipped_group

SCHEME_BITS = {"w4a16": (4, None), "w8a8": (8, 8), "w4a8": (4, 8), "w4a4": (4, 4)}
AUTO_GROUPS = (128, 64, 32)


@dataclass(frozen=True)
class LayerPlan:
    name: str
    kind: str  # linear | conv | depthwise
    scheme: str
    grid: WeightGrid
    a_bits: int | None  # None: the input stays float
    a_group: int  # Linear: one activation scale per token and block of a_group input channels; 0 = per token
    method: str  # rtn | gptq | quartdepth (depthwise convolutions: rtn, their per-channel K is 9)
    polish: bool  # LogNP-polished activations (alpha folded into the weight columns)
    k: int  # reduction length of one output (in_features, or C_in/groups * kh * kw)
    shipped: int = 0  # group size of the checkpoint's own grid this layer keeps (0: none)
    a_dims: tuple[int, ...] = (-1,)  # axes one activation scale spans (see act_dims)


def plan_layers(module: nn.Module, cfg: QuantizeConfig) -> list[LayerPlan]:
    layers = [(n, m) for n, m in module.named_modules() if _replaceable(m)]
    chosen = [(n, m, _scheme_for(n, cfg)) for n, m in layers]
    chosen = [(n, m, s) for n, m, s in chosen if s != "skip"]
    if not chosen:
        raise ConfigError("no layer is left to quantize (every Linear/Conv2d matched a 'skip' override)",
                          hint="remove the catch-all skip from quantize.layers")
    group = cfg.group_size or _auto_group([m for n, m, s in chosen if isinstance(m, nn.Linear)
                                           and _w_bits(s, cfg) <= 4])
    plans = []
    for name, m, scheme in chosen:
        w_bits = _w_bits(scheme, cfg)
        a_bits = SCHEME_BITS[scheme][1]
        if isinstance(m, nn.Linear):
            kind, k = "linear", m.in_features
        else:
            kind = "depthwise" if m.groups > 1 else "conv"
            k = m.weight[0].numel()
        shipped_group_size = 0
        if w_bits == 8 or (kind == "depthwise" and w_bits < 8):
            # QDQ int8: symmetric per output channel. Depthwise filters stay 8-bit under 4-bit schemes: 9 taps
            # per scale, so 4 bits save almost nothing, and 4-bit taps wrecked EfficientNet (W4A16 RTN top-1
            # agreement with fp32 on the photo set: 0.08 with 4-bit taps, 0.35 with 8-bit)
            grid = WeightGrid(8, symmetric=True, group_size=0)
        elif kind == "linear" and (shipped := _shipped(m.weight, w_bits, cfg)):
            grid, shipped_group_size = shipped
        elif kind == "linear":
            grid = WeightGrid(w_bits, symmetric=cfg.symmetric, group_size=group)
            if k % group:
                raise ConfigError(f"group size {group} does not divide layer {name!r} (in_features {k})",
                                  hint=f"pick a --group-size dividing {k}, or keep the layer at 8 bits with "
                                       f"--set quantize.layers.{name}=w8a8")
        else:
            # convolutions: groups along the flattened [C_in * kh * kw] reduction when one divides it (pointwise
            # convs are Linear layers over channels), else one scale per output channel
            grid = WeightGrid(w_bits, symmetric=cfg.symmetric, group_size=_dividing_group(k, cfg))
        method = "rtn" if kind == "depthwise" else cfg.method
        polish = a_bits is not None and (cfg.polish == "on" or
                                         (cfg.polish == "auto" and method == "quartdepth" and a_bits == 4))
        a_group = 0
        if a_bits is not None and kind == "linear":
            a_group = cfg.act_group_size or shipped_group_size
            if a_group and k % a_group:
                raise ConfigError(f"activation group {a_group} does not divide layer {name!r} (in_features {k})",
                                  hint="pick a quantize.act_group_size dividing every Linear's input width, or 0")
        plans.append(LayerPlan(name, kind, scheme, grid, a_bits, a_group, method, polish, k, shipped_group_size,
                               act_dims(m, kind)))
    return plans


def act_dims(m: nn.Module, kind: str) -> tuple[int, ...]:
    """The axes one dynamic activation scale spans, chosen so the layer stays an integer GEMM with one scale
    per GEMM row: Linear inputs per token (-1); pointwise (1x1) conv inputs per pixel over channels (1), a
    pixel being one GEMM row; depthwise inputs per channel over the image (2, 3), a channel being one
    filter's whole input; other convs per sample (1, 2, 3), their im2col rows mixing pixels. A per-sample scale
    on EfficientNet's pointwise convs let one outlier pixel coarsen the whole tensor."""
    if kind == "linear":
        return (-1,)
    if kind == "depthwise":
        return (2, 3)
    return (1,) if tuple(m.kernel_size) == (1, 1) else (1, 2, 3)


def _shipped(weight, w_bits: int, cfg: QuantizeConfig) -> tuple[WeightGrid, int] | None:
    """(grid, shipped group size) for a Linear weight already on a grid a 4-bit scheme can keep, else None
    (or when not asked for): a 4-bit float-zero grid (GGUF Q4_1) is kept as is; a symmetric 8-bit one (GGUF
    Q8_0, e.g. a tied output head) keeps 8 bits, per output channel (the int8 Linear form edgecomp exports)."""
    if not cfg.shipped_grid or w_bits != 4 or cfg.symmetric:
        return None
    w = weight.detach().float()
    g = shipped_group(w)
    if g and cfg.group_size in (0, g):
        return WeightGrid(4, group_size=g, float_zero=True), g
    g8 = shipped_group(w, bits=8, symmetric=True)
    return (WeightGrid(8, symmetric=True), g8) if g8 else None


def _replaceable(m: nn.Module) -> bool:
    """Linear / Conv2d whose forward the fake-quant modules reproduce: the plain classes, and convolution
    subclasses whose only extra step is a ``static_padding`` module applied first (EfficientNet)."""
    if type(m) in (nn.Linear, nn.Conv2d):
        return True
    return isinstance(m, nn.Conv2d) and isinstance(getattr(m, "static_padding", None), nn.Module)


def _scheme_for(name: str, cfg: QuantizeConfig) -> str:
    for pattern, value in cfg.layers.items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return cfg.scheme


def _w_bits(scheme: str, cfg: QuantizeConfig) -> int:
    bits = SCHEME_BITS[scheme][0]
    return cfg.weight_bits if (bits == 4 and cfg.weight_bits) else bits


def _dividing_group(k: int, cfg: QuantizeConfig) -> int:
    """The group size along a reduction of length ``k`` for layers that fall back rather than fail: the
    configured one if it divides ``k``, else (auto) the largest of AUTO_GROUPS that does; 0 if none fits."""
    candidates = (cfg.group_size,) if cfg.group_size else AUTO_GROUPS
    return next((g for g in candidates if k % g == 0), 0)


def _auto_group(linears: list[nn.Linear]) -> int:
    for g in AUTO_GROUPS:
        if all(m.in_features % g == 0 for m in linears):
            return g
    bad = next(m for m in linears if m.in_features % AUTO_GROUPS[-1])
    raise ConfigError(f"no int4 group size in {AUTO_GROUPS} divides in_features {bad.in_features}",
                      hint="keep that layer at 8 bits or skip it with quantize.layers")


EMBED_MIN_ROWS = 1024  # vocabulary tables; position / type embeddings are small and stay float


def embedding_grid(name: str, emb: nn.Embedding, cfg: QuantizeConfig) -> WeightGrid | None:
    """The grid for a vocabulary table (weight-only: a gather has no activation to quantize): its shipped
    symmetric 8-bit grid when it lies on one; else int4 under a 4-bit weight scheme and symmetric int8 in
    groups under an 8-bit one (a BERT vocabulary is half of MiniLM's weights: left fp32, a W8A8 build was
    only 1.5x smaller); None keeps it float."""
    scheme = _scheme_for(name, cfg)
    if scheme == "skip" or emb.num_embeddings < EMBED_MIN_ROWS:
        return None
    if cfg.shipped_grid and (g8 := shipped_group(emb.weight.detach().float(), bits=8, symmetric=True)):
        return WeightGrid(8, symmetric=True, group_size=g8)  # shipped on GGUF's Q8_0 grid: kept, lossless
    group = _dividing_group(emb.embedding_dim, cfg)
    if not group:
        return None  # no group fits this width: keep the table float rather than fail the build
    if SCHEME_BITS[scheme][0] > 4:
        return WeightGrid(8, symmetric=True, group_size=group)  # GatherBlockQuantized's 8-bit form
    # always 4-bit: GatherBlockQuantized has no 3/2-bit form, and sub-4-bit studies are about the GEMMs
    return WeightGrid(4, symmetric=cfg.symmetric, group_size=group)
