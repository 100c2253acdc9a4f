"""Weight grids, round-to-nearest, int4 packing and SQNR: the primitives every quantizer shares.

Codes are unsigned integers ``q`` in ``[0, 2^bits - 1]`` with an integer zero point ``z`` (held in a float
tensor) and a float scale ``s``; the value a code stands for is ``(q - z) * s``. Scales and zero points are
``[N, G]``: one pair per output row and per group of ``K / G`` consecutive input columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from edgecomp.errors import ConfigError


@dataclass(frozen=True)
class WeightGrid:
    """The integer grid a weight matrix is rounded onto.

    bits: 2..8; symmetric: zero point fixed at 2^(bits-1) (else min-max asymmetric);
    group_size: columns sharing one (scale, zero); 0 = one group per output row (per-channel).
    """

    bits: int
    symmetric: bool = False
    group_size: int = 0

    def __post_init__(self):
        if not (isinstance(self.bits, int) and 2 <= self.bits <= 8):
            raise ConfigError(f"unsupported weight bit-width {self.bits}", hint="use 2..8 (4 and 8 are exported)")
        if not (isinstance(self.group_size, int) and self.group_size >= 0):
            raise ConfigError(f"weight group size must be an integer >= 0, got {self.group_size}",
                              hint="0 = per output channel, else e.g. 32, 64 or 128")

    @property
    def qmax(self) -> int:
        return 2**self.bits - 1

    def groups(self, K: int) -> int:
        """Number of groups G along an input dimension of K columns."""
        if self.group_size == 0:
            return 1
        if K % self.group_size:
            raise ConfigError(f"group size {self.group_size} does not divide the input dimension K={K}",
                              hint="pick a group size that divides every layer's input width, or 0 (per-channel)")
        return K // self.group_size


def _check_matrix(w: Tensor, name: str = "w") -> None:
    if w.dim() != 2:
        raise ConfigError(f"{name} must be a 2-D [N, K] matrix, got shape {tuple(w.shape)}",
                          hint="flatten conv weights to [C_out, C_in*kh*kw] first")


def _grouped(t: Tensor, G: int) -> Tensor:
    """[N, K] -> [N, G, K/G] view, so [N, G] parameters broadcast as [N, G, 1]."""
    N, K = t.shape
    return t.reshape(N, G, K // G)


def weight_qparams(w: Tensor, grid: WeightGrid) -> tuple[Tensor, Tensor]:
    """Min-max (or abs-max, symmetric) scale and zero point of each group.

    w: [N, K] float. Returns (scale [N, G], zero [N, G]) in w's dtype; zero holds integers in [0, qmax].
    Asymmetric ranges always include 0, so an exact zero weight stays exactly representable.
    """
    _check_matrix(w)
    G = grid.groups(w.shape[1])
    wg = _grouped(w, G)
    if grid.symmetric:
        half = 2 ** (grid.bits - 1)
        scale = wg.abs().amax(dim=-1) / (half - 1)
        zero = torch.full_like(scale, float(half))
        # NOTE: an all-zero group gives s = 0; any positive s encodes it exactly (codes = z).
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return scale, zero
    xmin = wg.amin(dim=-1).clamp(max=0)
    xmax = wg.amax(dim=-1).clamp(min=0)
    scale = (xmax - xmin) / grid.qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-xmin / scale), 0, grid.qmax)
    return scale, zero


def quantize_weight(w: Tensor, scale: Tensor, zero: Tensor, grid: WeightGrid) -> Tensor:
    """Codes round(w / s) + z (half to even), clamped to [0, qmax]. w: [N, K]; scale, zero: [N, G] -> uint8 [N, K]."""
    _check_matrix(w)
    G = grid.groups(w.shape[1])
    q = torch.round(_grouped(w, G) / scale.unsqueeze(-1)) + zero.unsqueeze(-1)
    return torch.clamp(q, 0, grid.qmax).reshape(w.shape).to(torch.uint8)


def dequantize_weight(codes: Tensor, scale: Tensor, zero: Tensor, grid: WeightGrid) -> Tensor:
    """(q - z) * s per group. codes: [N, K] integers; scale, zero: [N, G] -> [N, K] in scale's dtype."""
    _check_matrix(codes, "codes")
    G = grid.groups(codes.shape[1])
    q = _grouped(codes.to(scale.dtype), G)
    return ((q - zero.to(scale.dtype).unsqueeze(-1)) * scale.unsqueeze(-1)).reshape(codes.shape)


def rtn(w: Tensor, grid: WeightGrid) -> tuple[Tensor, Tensor, Tensor]:
    """Round-to-nearest baseline: (codes uint8 [N, K], scale [N, G], zero [N, G])."""
    scale, zero = weight_qparams(w, grid)
    return quantize_weight(w, scale, zero, grid), scale, zero


def pack_int4(codes: Tensor) -> Tensor:
    """Two 4-bit codes per byte, the LOW nibble holding the even index (onnxruntime MatMulNBits / ONNX INT4 layout).

    codes: uint8 [..., K] with values 0..15 and K even -> uint8 [..., K // 2].
    """
    K = codes.shape[-1]
    if K % 2:
        raise ConfigError(f"int4 packing needs an even number of codes along the last axis, got K={K}",
                          hint="pad K to a multiple of 2 (or of the group size) before packing")
    if codes.dtype != torch.uint8 or (codes.numel() and int(codes.max()) > 15):
        raise ConfigError("int4 packing needs uint8 codes in 0..15", hint="quantize with a 4-bit (or narrower) grid")
    return codes[..., 0::2] | (codes[..., 1::2] << 4)


def pack_int4_padded(codes: Tensor) -> Tensor:
    """``pack_int4`` after padding an odd last axis with one zero code: uint8 [..., K] -> [..., ceil(K / 2)]
    (packed zero points of an odd group count, a flattened conv weight of odd size)."""
    if codes.shape[-1] % 2:
        codes = torch.cat([codes, codes.new_zeros(*codes.shape[:-1], 1)], dim=-1)
    return pack_int4(codes)


def unpack_int4(packed: Tensor, K: int) -> Tensor:
    """Inverse of pack_int4: uint8 [..., ceil(K / 2)] -> uint8 [..., K] (an odd K drops the last high nibble)."""
    if packed.shape[-1] != (K + 1) // 2:
        raise ConfigError(f"{packed.shape[-1]} packed bytes cannot hold K={K} int4 codes",
                          hint="pass the K the codes had before pack_int4")
    pairs = torch.stack((packed & 0x0F, packed >> 4), dim=-1)
    return pairs.reshape(*packed.shape[:-1], -1)[..., :K]


def sqnr_db(ref: Tensor, test: Tensor) -> float:
    """Signal-to-quantization-noise ratio 10 log10(||ref||^2 / ||ref - test||^2) in dB, in float64; +inf when equal."""
    ref64, test64 = ref.double(), test.double()
    noise = float(((ref64 - test64) ** 2).sum())
    signal = float((ref64**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)
