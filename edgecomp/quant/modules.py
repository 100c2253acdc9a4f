"""Fake-quant torch modules that replace ``nn.Linear`` / ``nn.Conv2d`` after quantization.

Each module holds the integer weight codes and their scales (the deployable form) and a dequantized
float copy for fast evaluation in torch. Forward = activation fake-quant, then the float product with
the dequantized weight, which is exactly what onnxruntime and TVM compute from the exported graph.

Export (legacy ``torch.onnx.export``) goes through ``autograd.Function.symbolic`` so the ONNX graph
carries the integer weights, not floats:

* int4/3/2-bit Linear -> ``com.microsoft.MatMulNBits`` (block = group size, packed nibbles, optional
  packed zero points);
* int8 Linear / Conv -> ``DequantizeLinear`` (int8, per output channel) feeding MatMul / Conv (QDQ);
* int4 Conv -> an ``edgecomp.Int4Weight`` placeholder that ``onnx_export.finalize`` rewrites into
  ``com.microsoft.DequantizeLinear`` on a UINT4 / INT4 initializer (torch has no int4 buffers).

Weights live in "folded" coordinates: when LogNP polishing is on, the layer's input is divided by the
per-channel polishing factor α before quantization and α is folded into the weight columns, so the
integer GEMM consumes the decoded activation codes directly (see ``activations.lognp_fake_quant``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgecomp.quant.activations import fake_quant_symmetric, lognp_fake_quant
from edgecomp.quant.primitives import WeightGrid, dequantize_weight, pack_int4, pack_int4_padded


@dataclass(frozen=True)
class QuantizedWeight:
    """Integer weight of a layer viewed as a matrix: ``codes`` uint8 [N, K] in [0, 2^bits-1], ``scale`` and
    ``zero`` float32 [N, G] (G = groups per row); value = (codes - zero) * scale."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    grid: WeightGrid

    def dequantize(self) -> torch.Tensor:
        return dequantize_weight(self.codes, self.scale.float(), self.zero.float(), self.grid).float()

    @property
    def nbytes(self) -> int:
        """Storage of the exported form: packed codes plus scales (and zero points when asymmetric)."""
        n, k = self.codes.shape
        code_bytes = n * k if self.grid.bits > 4 else n * k // 2
        zero_bytes = 0 if self.grid.symmetric else self.zero.numel() * (
            4 if self.grid.float_zero else 1 if self.grid.bits > 4 else 0.5)
        return int(code_bytes + 4 * self.scale.numel() + zero_bytes)


class ActQuant(nn.Module):
    """Activation fake-quant on a layer's input: ``kind`` none | int | lognp; dynamic per slice over ``dims``
    (per token for Linear inputs [.., T, C], per sample for NCHW conv inputs). ``inv_alpha`` (lognp only)
    is 1/α broadcast over the channel axis. ``group`` > 0 (Linear inputs, ``dims == (-1,)``): one scale per
    token and block of ``group`` consecutive channels instead of per token -- the blocking of llama.cpp's
    Q8_1 activations and of onnxruntime's int8 MatMulNBits path, which rescale each weight group anyway."""

    def __init__(self, kind: str = "none", bits: int = 8, dims: tuple[int, ...] = (-1,),
                 inv_alpha: torch.Tensor | None = None, group: int = 0):
        super().__init__()
        self.kind, self.bits, self.dims, self.group = kind, bits, tuple(dims), group
        if group and self.dims != (-1,):
            raise ValueError(f"activation groups need per-token slices (dims=(-1,)), got dims={self.dims}")
        if inv_alpha is not None:
            self.register_buffer("inv_alpha", inv_alpha.float().contiguous())
        else:
            self.inv_alpha = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inv_alpha is not None:
            x = x * self.inv_alpha
        if self.kind == "none":
            return x
        quant = fake_quant_symmetric if self.kind == "int" else lognp_fake_quant
        if not self.group:
            return quant(x, self.bits, self.dims)
        return quant(x.unflatten(-1, (x.shape[-1] // self.group, self.group)), self.bits, (-1,)).flatten(-2)

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, bits={self.bits}, dims={self.dims}, group={self.group}, "
                f"polished={self.inv_alpha is not None}")


class QuantLinear(nn.Module):
    """y = dequant(W_q) · act(x) + b for x [..., K]; W_q in folded coordinates (see module docstring)."""

    def __init__(self, weight: QuantizedWeight, bias: torch.Tensor | None, act: ActQuant):
        super().__init__()
        self.act, self.grid = act, weight.grid
        self.out_features, self.in_features = weight.codes.shape
        self.register_buffer("weight_dq", weight.dequantize())
        self.bias = None if bias is None else nn.Parameter(bias.detach().float().clone(), requires_grad=False)
        self._export = _linear_export_tensors(weight)
        self.nbytes = weight.nbytes  # the bias stays a float parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(x)
        if not torch.onnx.is_in_onnx_export():
            return F.linear(x, self.weight_dq, self.bias)
        ex = self._export
        if self.grid.bits <= 4:
            y = _MatMulNBits.apply(x, ex["packed"], ex["scales"], ex.get("zeros"), self.weight_dq,
                                   self.in_features, self.out_features, ex["block"])
            return y if self.bias is None else y + self.bias
        w = _DequantizeInt8.apply(ex["codes"], ex["scales"], self.weight_dq)
        return F.linear(x, w, self.bias)


class QuantConv2d(nn.Module):
    """Conv2d with an integer weight (per output channel) and activation fake-quant on its input."""

    def __init__(self, conv: nn.Conv2d, weight: QuantizedWeight, act: ActQuant):
        super().__init__()
        self.act, self.grid = act, weight.grid
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.shape = tuple(conv.weight.shape)
        # "same"-padding subclasses (EfficientNet's Conv2dStaticSamePadding) pad in forward(); keep that step
        self.static_padding = getattr(conv, "static_padding", None)
        self.register_buffer("weight_dq", weight.dequantize().reshape(self.shape))
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
        self._export = _conv_export_tensors(weight, self.shape)
        self.nbytes = weight.nbytes  # the bias stays a float parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.static_padding is not None:
            x = self.static_padding(x)
        x = self.act(x)
        w = self.weight_dq
        if torch.onnx.is_in_onnx_export():
            ex = self._export
            if self.grid.bits <= 4:
                w = _Int4Weight.apply(ex["packed"], ex["scales"], ex.get("zeros"), self.weight_dq, list(self.shape),
                                      ex["rows"])
            else:
                w = _DequantizeInt8.apply(ex["codes"], ex["scales"], self.weight_dq)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


# ---------------------------------------------------------------------------------------------------
# Export forms of the weights (plain tensors, kept out of state_dict so they never become float initializers).


def _linear_export_tensors(w: QuantizedWeight) -> dict:
    n, k = w.codes.shape
    if w.grid.bits > 4:
        return _int8_tensors(w)
    block = w.grid.group_size or k
    g = k // block
    out = {"block": block, "packed": pack_int4(w.codes).reshape(n, g, block // 2).contiguous(),
           "scales": w.scale.float().reshape(n * g).contiguous()}
    if w.grid.float_zero:  # MatMulNBits takes zero points of the scales' type unpacked, [N * n_blocks]
        out["zeros"] = w.zero.float().reshape(n * g).contiguous()
    elif not _zero_is_default(w):
        out["zeros"] = pack_int4_padded(w.zero.round().to(torch.uint8)).reshape(-1).contiguous()
    return out


def _conv_export_tensors(w: QuantizedWeight, shape: tuple[int, ...]) -> dict:
    if w.grid.bits > 4:
        out = _int8_tensors(w)
        out["codes"] = out["codes"].reshape(shape).contiguous()
        return out
    n, k = w.codes.shape
    rows = n * w.grid.groups(k)  # one DequantizeLinear row per (output channel, group)
    flat = w.codes.reshape(-1)
    if _zero_is_default(w):  # symmetric: store signed INT4 nibbles (code - 8, two's complement) with no zero point
        flat = flat ^ 8
    out = {"packed": pack_int4_padded(flat), "scales": w.scale.float().reshape(rows).contiguous(),
           "rows": list(shape) if rows == n else [rows, n * k // rows]}
    if not _zero_is_default(w):
        out["zeros"] = pack_int4_padded(w.zero.round().to(torch.uint8).reshape(rows))
    return out


def _int8_tensors(w: QuantizedWeight) -> dict:
    """int8 weights must be symmetric per output channel for QDQ (zero point 0 after re-centring)."""
    assert w.grid.symmetric and w.grid.group_size == 0, "8-bit weights are symmetric per channel"
    return {"codes": (w.codes.to(torch.int16) - 2 ** (w.grid.bits - 1)).to(torch.int8),
            "scales": w.scale.float().reshape(-1).contiguous()}


def _zero_is_default(w: QuantizedWeight) -> bool:
    return not w.grid.float_zero and bool(torch.all(w.zero == 2 ** (w.grid.bits - 1))) and w.grid.bits == 4


class _MatMulNBits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, packed, scales, zeros, weight_dq, K, N, block):
        return x @ weight_dq.t()

    @staticmethod
    def symbolic(g, x, packed, scales, zeros, weight_dq, K, N, block):
        inputs = [x, packed, scales] + ([] if zeros is None else [zeros])
        out = g.op("com.microsoft::MatMulNBits", *inputs, K_i=K, N_i=N, bits_i=4, block_size_i=block)
        sizes = x.type().sizes()
        if sizes is not None:  # shapes downstream symbolics (e.g. Conv, Reshape) can rely on
            out.setType(x.type().with_sizes([*sizes[:-1], N]))
        return out


class _DequantizeInt8(torch.autograd.Function):
    @staticmethod
    def forward(ctx, codes, scales, weight_dq):
        return weight_dq

    @staticmethod
    def symbolic(g, codes, scales, weight_dq):
        zero = g.op("Constant", value_t=torch.zeros(scales.type().sizes(), dtype=torch.int8))
        return g.op("DequantizeLinear", codes, scales, zero, axis_i=0).setType(weight_dq.type())


class _Int4Weight(torch.autograd.Function):
    """The int4 weight of shape ``shape`` dequantized per row of ``rows`` (``[O, K]`` per channel, or
    ``[O * G, K / G]`` for G groups per output channel: the same codes in the same order), then viewed as
    ``shape``; one scale (and zero point) per row, so onnxruntime's per-axis DequantizeLinear applies."""

    @staticmethod
    def forward(ctx, packed, scales, zeros, weight_dq, shape, rows):
        return weight_dq

    @staticmethod
    def symbolic(g, packed, scales, zeros, weight_dq, shape, rows):
        inputs = [packed, scales] + ([] if zeros is None else [zeros])
        # ``rows`` as an attribute: onnx_export.finalize dequantizes rows and adds the Reshape to ``shape``
        # (a Reshape emitted here loses the kernel shape the Conv symbolic needs)
        out = g.op("edgecomp::Int4Weight", *inputs, shape_i=shape, rows_i=rows, signed_i=int(zeros is None))
        return out.setType(weight_dq.type())
