"""Dynamic (runtime) activation fake-quantization: uniform symmetric and QuartDepth's LogNP.

Every function here runs inside ``forward()`` of exported models, so it is written only with ops the legacy
``torch.onnx.export(..., dynamo=False, opset_version=17)`` maps one-to-one onto plain ONNX ops (Abs, ReduceMax,
Div, Round, Clip, Mul, Log, Pow, Sign, Add, Sub): no ``torch.quantize_per_*``, no in-place ops, no Python
branching on tensor values. Operation order is chosen so onnxruntime and TVM reproduce torch bit for bit except
for rare rounding ties: scales are divided by, never multiplied by a reciprocal, and quantities with an exact
closed form (the slice maximum) are taken by ReduceMax rather than recomputed through Log/Pow, whose last-ulp
results differ between runtimes.

LogNP (QuartDepth activation polishing). The paper's ``Φ(x; α) = sign(x)(log2(|x| + α) - log2 α)`` equals
``sign(z) log2(1 + |z|)`` with ``z = x / α``; the caller multiplies the activation by ``1 / α`` (per input channel)
and folds ``α`` into the weight columns, so these functions see ``z`` only.

LogNP datapath (what ``lognp_fake_quant`` models). Per slice (token, or sample):

1. ``y = sign(z) log2(1 + |z|)``; ``s = max|y| / qmax`` with ``qmax = 2^(bits-1) - 1``;
   ``q = clamp(round(y / s), -qmax, qmax)`` -- the stored ``bits``-bit code.
2. The magnitude ``|q|`` is decoded through a per-slice table of ``qmax + 1`` (16 for 4-bit) int8 entries,
   ``lut[k] = round(127 (2^(k s) - 1) / gmax)``, ``gmax = 2^(qmax s) - 1 = max|z|``, so the code becomes the
   int8 value ``sign(q) lut[|q|]``.
3. The GEMM is an integer int8 x int4 product of those int8 values with the (alpha-folded) weight codes; its
   result is rescaled by one per-slice float ``gmax / 127`` (times the weight scales).

So the fake-quant value is ``sign(q) lut[|q|] gmax / 127``: the unpolished ``2^(|q| s) - 1`` rounded to 1/127
of the slice range. The table is what lets a uniform integer MMU consume the log-domain code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from edgecomp.errors import ConfigError

# Floor for scales and slice maxima: keeps an all-zero slice at 0 instead of 0/0. A normal fp32 number; it
# underflows in fp16, so these functions are for fp32 activations (what the exported graphs carry).
_EPS = 1e-12
# |z| cap for LogNP: log2(1 + 2^60) = 60, so 2^(|q| s) never comes near the fp32 limit of 2^128.
_ZMAX = 2.0**60
# |y| cap for unpolish: 2^127 is the largest finite power of two in fp32.
_YMAX = 127.0
_LN2 = math.log(2.0)
_LUT_MAX = 127.0  # int8 magnitude range of the decoded LogNP activations

_QUANTILE_LIMIT = 2**24  # torch.quantile refuses inputs with more elements than this


def _qmax(bits: int) -> int:
    if not (isinstance(bits, int) and 2 <= bits <= 8):
        raise ConfigError(f"unsupported activation bit-width {bits}", hint="use 2..8 (4 and 8 are exported)")
    return 2 ** (bits - 1) - 1


def fake_quant_symmetric(x: Tensor, bits: int, dims: Sequence[int]) -> Tensor:
    """Symmetric dynamic fake-quant with one scale per slice over ``dims``.

    x: any float tensor; dims: the reduced axes, e.g. (-1,) per token on [B, T, C] Linear inputs, (1, 2, 3) per
    sample on NCHW conv inputs. s = max|x| / qmax (floored at 1e-12), q = clamp(round(x / s), -qmax, qmax);
    returns q * s, same shape and dtype as x. Elements within range err by at most s / 2.
    """
    qmax = _qmax(bits)
    s = torch.clamp(torch.amax(torch.abs(x), dim=tuple(dims), keepdim=True) / qmax, min=_EPS)
    q = torch.clamp(torch.round(x / s), -qmax, qmax)
    return q * s


def polish(z: Tensor) -> Tensor:
    """LogNP forward map sign(z) log2(1 + |z|), elementwise. Written as Log / ln 2 because ONNX has no Log2."""
    return torch.sign(z) * (torch.log(torch.abs(z) + 1.0) / _LN2)


def unpolish(y: Tensor) -> Tensor:
    """Inverse of polish: sign(y) (2^|y| - 1), with |y| capped at 127 so fp32 stays finite."""
    return torch.sign(y) * (torch.pow(2.0, torch.clamp(torch.abs(y), max=_YMAX)) - 1.0)


def lognp_alpha(x: Tensor, percentile: float = 95.0) -> Tensor:
    """Per-channel polishing factor alpha = the ``percentile``-th percentile of |x| over the rows.

    x: [T, C] calibration activations (tokens or pixels by channels). Returns float32 [C], floored at
    max(1e-6 max|x|, 1e-8) so dead or ReLU-sparse channels never divide by zero. Inputs over 2^24 elements are
    processed in column chunks (and, past 2^24 rows, on an evenly strided row subsample).
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ConfigError(f"lognp_alpha needs a non-empty [T, C] matrix, got shape {tuple(x.shape)}",
                          hint="flatten the leading axes of the activation to rows")
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"LogNP percentile must be in (0, 100], got {percentile}", hint="QuartDepth uses 95")
    a = torch.abs(x.detach().float())
    T, C = a.shape
    if T > _QUANTILE_LIMIT:
        a = a[:: math.ceil(T / _QUANTILE_LIMIT)]
        T = a.shape[0]
    step = max(1, _QUANTILE_LIMIT // T)
    alpha = torch.cat([torch.quantile(a[:, c : c + step], percentile / 100.0, dim=0) for c in range(0, C, step)])
    floor = max(1e-6 * float(a.max()), 1e-8)
    return torch.clamp(alpha, min=floor)


def lognp_fake_quant(z: Tensor, bits: int, dims: Sequence[int]) -> Tensor:
    """LogNP fake-quant of alpha-normalised activations z (see the module docstring for the datapath).

    z: fp32 tensor; dims: the axes one slice spans ((-1,) per token, (1, 2, 3) per sample). Returns
    sign(q) lut[|q|] gmax / 127 with the same shape and dtype as z. |z| is capped at 2^60 first. The log is
    taken of 1 + |z| (ONNX has no Log1p), so a slice whose max|z| is below fp32's resolution of 1 (~1e-7)
    decodes to 0; with z = x / alpha, typical magnitudes are O(1).
    """
    qmax = _qmax(bits)
    dims = tuple(dims)
    z = torch.clamp(z, -_ZMAX, _ZMAX)
    y = polish(z)
    s = torch.clamp(torch.amax(torch.abs(y), dim=dims, keepdim=True) / qmax, min=_EPS)
    q = torch.clamp(torch.round(y / s), -qmax, qmax)
    # NOTE: gmax = 2^(qmax s) - 1 = max|z| exactly in real arithmetic; taking the max directly keeps the per-slice
    # output scale free of Log/Pow ulp differences between torch and ONNX runtimes.
    gmax = torch.clamp(torch.amax(torch.abs(z), dim=dims, keepdim=True), min=_EPS)
    g = torch.pow(2.0, torch.abs(q) * s) - 1.0
    # The clamp catches slices so narrow that fp32 log2(1 + max|z|) overshoots and g exceeds gmax.
    lut = torch.clamp(torch.round(g * _LUT_MAX / gmax), 0.0, _LUT_MAX)
    return torch.sign(q) * lut * gmax / _LUT_MAX
