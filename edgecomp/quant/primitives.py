"""Weight grids, round-to-nearest, int4 packing and SQNR: the primitives every quantizer shares.

Codes are unsigned integers ``q`` in ``[0, 2^bits - 1]`` with a zero point ``z`` (held in a float tensor;
an integer unless the grid has ``float_zero``) and a float scale ``s``; the value a code stands for is
``(q - z) * s``. Scales and zero points are ``[N, G]``: one pair per output row and per group of ``K / G``
consecutive input columns.

A float zero point is GGUF Q4_1's grid (``value = d q + m`` with a float minimum ``m = -z d``): checkpoints
shipped on that grid re-quantize losslessly onto it (``shipped_group`` finds it).
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
    group_size: columns sharing one (scale, zero); 0 = one group per output row (per-channel);
    float_zero: (asymmetric only) the zero point is -min/s unrounded, so each group's range is exactly its own
    [min, max] instead of being widened to include 0 (GGUF Q4_1; onnxruntime's MatMulNBits takes float zero points).
    """

    bits: int
    symmetric: bool = False
    group_size: int = 0
    float_zero: bool = False

    def __post_init__(self):
        if not (isinstance(self.bits, int) and 2 <= self.bits <= 8):
            raise ConfigError(f"unsupported weight bit-width {self.bits}", hint="use 2..8 (4 and 8 are exported)")
        if not (isinstance(self.group_size, int) and self.group_size >= 0):
            raise ConfigError(f"weight group size must be an integer >= 0, got {self.group_size}",
                              hint="0 = per output channel, else e.g. 32, 64 or 128")
        if self.float_zero and self.symmetric:
            raise ConfigError("a symmetric weight grid has no float zero point", hint="drop one of the two")

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
    if grid.float_zero:
        xmin, xmax = wg.amin(dim=-1), wg.amax(dim=-1)
    else:
        xmin, xmax = wg.amin(dim=-1).clamp(max=0), wg.amax(dim=-1).clamp(min=0)
    scale = (xmax - xmin) / grid.qmax
    if grid.float_zero:  # a constant group: any scale encodes it exactly at code 0
        scale = torch.where(scale > 0, scale, torch.where(xmin != 0, xmin.abs(), torch.ones_like(scale)))
        return scale, -xmin / scale
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.clamp(torch.round(-xmin / scale), 0, grid.qmax)
    return scale, zero


def round_codes(w_over_s: Tensor, zero: Tensor, grid: WeightGrid) -> Tensor:
    """Unclamped codes of ``w / s`` (any shape broadcasting with ``zero``): ``round(w / s) + z`` for an integer
    zero point (exact: z is an integer), ``round(w / s + z)`` for a float one (half to even either way)."""
    return torch.round(w_over_s + zero) if grid.float_zero else torch.round(w_over_s) + zero


def quantize_weight(w: Tensor, scale: Tensor, zero: Tensor, grid: WeightGrid) -> Tensor:
    """Codes ``round_codes(w / s, z)`` clamped to [0, qmax]. w: [N, K]; scale, zero: [N, G] -> uint8 [N, K]."""
    _check_matrix(w)
    G = grid.groups(w.shape[1])
    q = round_codes(_grouped(w, G) / scale.unsqueeze(-1), zero.unsqueeze(-1), grid)
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


SHIPPED_GROUPS = (32, 64, 128)  # GGUF Q4_0 / Q4_1 use 32; AWQ / GPTQ exports use 64 or 128


def shipped_group(w: Tensor, bits: int = 4, symmetric: bool = False, tol: float = 1e-3) -> int:
    """The smallest group size g in ``SHIPPED_GROUPS`` whose grid holds ``w`` exactly, or 0 if none does:
    the ``bits``-bit float-zero min-max grid (GGUF Q4_1), or with ``symmetric`` the abs-max grid of
    ``2^(bits-1) - 1`` levels per side (GGUF Q8_0 at 8 bits). Exactly: every ``w / s`` (offset by the group
    minimum when asymmetric) of every group lies within ``tol`` of an integer.

    w: [N, K] float. Such a weight was dequantized from a checkpoint stored on that grid; re-quantizing it onto
    the same grid loses nothing. Float64, so fp32 rounding in the dequantized values (~1e-7 relative) stays far
    inside ``tol``.
    """
    _check_matrix(w)
    levels = 2 ** (bits - 1) - 1 if symmetric else 2**bits - 1
    for g in SHIPPED_GROUPS:
        if w.shape[1] % g:
            continue
        wg = _grouped(w.detach().double(), w.shape[1] // g)
        if symmetric:
            lo, s = 0.0, wg.abs().amax(dim=-1, keepdim=True) / levels
        else:
            lo = wg.amin(dim=-1, keepdim=True)
            s = (wg.amax(dim=-1, keepdim=True) - lo) / levels
        r = (wg - lo) / torch.where(s > 0, s, torch.ones_like(s))
        if float((r - torch.round(r)).abs().max()) <= tol:
            return g
    return 0


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
