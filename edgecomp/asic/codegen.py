"""Lower one accelerator partition to a tiled instruction program and its DRAM image.

Tensor table of a program (ids are the ``tensor`` operands of LOAD / STORE):

====  ==========  ====================================  ==============================
 id    name        DRAM layout                           element bits
====  ==========  ====================================  ==============================
 0     X           f32 [M, K] activations                32
 1     W           int4: u8 [N, K/2] packed, low nibble   wbits
                   = even k; int8: i8 [N, K]
 2     WS          f32 [K/G, N] (one row per group)      32
 3     Z           u8 [K/G, N] (int4 zero points)        wbits
 4     BIAS        f32 [1, N]                            32
 5     Y           f32 [M, N] outputs                    32
====  ==========  ====================================  ==============================

Tiling (``Tiling``): the MMU takes a weight tile of ``Tk x Tn`` (Tk = rows x macs_per_pe, capped by the group
size, Tn = cols) and streams ``m`` activation rows through it. Activations are quantized once per row block of
``Tm`` rows (as many as the ACT buffer holds as codes, beside a double-buffered fp32 staging area of ``Tq``
rows) and stay on chip while every weight tile passes; weight tiles, group scales and zero points are
double-buffered (slot parity), so the DMA of tile t+1 overlaps the GEMM of tile t. Loop order:
``for m-block: quantize rows; for n-tile: for group: LOAD scales; for k-tile: LOAD W, GEMM; VFOLD;
VEPI; STORE``, each STORE issued after the next tile's first GEMM (a STORE waiting for its epilogue must not
hold back the next tile's weight loads). ``tiling`` raises a ConfigError naming the ``[asic.sram]`` parameter
when not even a minimal tile fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecomp.asic import isa
from edgecomp.asic.config import AsicConfig, Datapath
from edgecomp.asic.partition import GemmLayer
from edgecomp.errors import ConfigError

X, W, WS, Z, BIAS, Y = range(6)
TENSOR_NAMES = ("X", "W", "WS", "Z", "BIAS", "Y")
TQ = 4  # rows per quantize staging block (fp32, double-buffered)

# ACT slots: 0/1 staging, 2 codes, 3 scales, 4 row sums. WGT slots: 0/1 weights, 2/3 scales, 4/5 zeros, 6/7 bias.
ST, CODES, SCALE, SUMS = 0, 2, 3, 4
W_SLOT, WS_SLOT, Z_SLOT, B_SLOT = 0, 2, 4, 6


@dataclass(frozen=True)
class Tiling:
    M: int
    K: int
    N: int
    G: int
    Tm: int  # activation rows per block (codes resident)
    Tn: int  # output channels per tile
    Tk: int  # reduction depth per weight tile (divides G)
    wbits: int
    abits: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def tiling(M: int, K: int, N: int, G: int, wbits: int, abits: int, dp: Datapath, cfg: AsicConfig) -> Tiling:
    """Tile sizes for a GEMM of x [M, K] by W [N, K] (groups of G) on datapath ``dp``."""
    Tk = min(cfg.rows * dp.macs_per_pe, G, K)
    while G % Tk:
        Tk -= 1
    Tn = min(cfg.cols, N)
    w_tile = 2 * (Tk * Tn * wbits // 8 + Tn * 4 + Tn + Tn * 4)  # weights + scales + zeros + bias, two each
    if w_tile > cfg.weight_bytes:
        raise ConfigError(f"the weight buffer ({cfg.weight_bytes} B) cannot hold two {Tk}x{Tn} weight tiles "
                          f"({w_tile} B) of a {M}x{K}x{N} GEMM",
                          hint="raise asic.sram.weight_kib in the target TOML, or lower asic.mmu.rows / cols")
    staging = 2 * TQ * K * 4
    row = K * abits // 8 + 4 + 4 * (K // G)  # codes + scale + group row sums
    by_act = (cfg.act_bytes - staging) // row
    by_acc = cfg.acc_bytes // (2 * Tn * 8)  # int32 + fp32 accumulators, double-buffered
    by_out = cfg.out_bytes // (2 * Tn * 4)
    if by_act < 1:
        raise ConfigError(f"the activation buffer ({cfg.act_bytes} B) cannot hold the staging rows ({staging} B) "
                          f"and one quantized row ({row} B) of a GEMM with K={K}",
                          hint="raise asic.sram.act_kib in the target TOML")
    if by_acc < 1:
        raise ConfigError(f"the accumulator buffer ({cfg.acc_bytes} B) cannot hold one {Tn}-wide output row twice",
                          hint="raise asic.sram.acc_kib in the target TOML, or lower asic.mmu.cols")
    if by_out < 1:
        raise ConfigError(f"the output buffer ({cfg.out_bytes} B) cannot hold one {Tn}-wide output row twice",
                          hint="raise asic.sram.out_kib in the target TOML, or lower asic.mmu.cols")
    Tm = min(M, by_act, by_acc, by_out, 0xFFFF)
    return Tiling(M, K, N, G, Tm, Tn, Tk, wbits, abits)


def dram_image(layer: GemmLayer) -> dict[int, np.ndarray]:
    """The layer's constant tensors as they sit in DRAM (ids W, WS, Z, BIAS)."""
    if layer.wbits == 4:
        u = layer.codes.astype(np.uint8)
        w = (u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8)
    else:
        w = layer.codes.astype(np.int8)
    img = {W: w, WS: np.ascontiguousarray(layer.scales.T, np.float32)}
    if layer.wbits == 4:
        img[Z] = np.ascontiguousarray(layer.integer_zeros().T.astype(np.uint8))
    if layer.bias is not None:
        img[BIAS] = layer.bias.reshape(1, -1).astype(np.float32)
    return img


@dataclass(frozen=True)
class LayerSpec:
    """What a program depends on: a partition's shape and formats, not its weight values."""

    name: str
    K: int
    N: int
    G: int
    wbits: int  # 4, 8, or 16 (the fp16 configuration)
    qmax: int
    has_bias: bool

    @classmethod
    def of(cls, layer: GemmLayer) -> LayerSpec:
        return cls(layer.name, layer.K, layer.N, layer.G, layer.wbits, layer.qmax, layer.bias is not None)

    def as_fp16(self) -> LayerSpec:
        """The same GEMM on the fp16 datapath: fp16 weights, no groups, no zero points."""
        return LayerSpec(self.name, self.K, self.N, self.K, 16, self.qmax, self.has_bias)


def program(layer: LayerSpec, t: Tiling) -> list[isa.Instruction]:
    """The instruction program of ``layer`` for activations of M = ``t.M`` rows (module docstring)."""
    K, N, G = t.K, t.N, t.G
    has_z, has_b = layer.wbits == 4, layer.has_bias
    prog: list[isa.Instruction] = []
    kt = nt = 0
    for m0 in range(0, t.M, t.Tm):
        m = min(t.Tm, t.M - m0)
        for qi, r0 in enumerate(range(0, m, TQ)):
            r = min(TQ, m - r0)
            prog.append(isa.Load(isa.Buf.ACT, ST + qi % 2, X, m0 + r0, 0, r, K))
            prog.append(isa.VQuant(ST + qi % 2, CODES, layer.qmax, G, r0, r, K))
        pending: isa.Store | None = None  # the previous tile's STORE, issued once this tile's first GEMM is queued
        for n0 in range(0, N, t.Tn):
            n = min(t.Tn, N - n0)
            acc, facc, out = 2 * (nt % 2), 2 * (nt % 2) + 1, nt % 2
            if has_b:
                prog.append(isa.Load(isa.Buf.WGT, B_SLOT + nt % 2, BIAS, 0, n0, 1, n))
            for g in range(K // G):
                prog.append(isa.Load(isa.Buf.WGT, WS_SLOT + g % 2, WS, g, n0, 1, n))
                if has_z:
                    prog.append(isa.Load(isa.Buf.WGT, Z_SLOT + g % 2, Z, g, n0, 1, n))
                for k0 in range(g * G, (g + 1) * G, t.Tk):
                    ws = W_SLOT + kt % 2
                    prog.append(isa.Load(isa.Buf.WGT, ws, W, n0, k0, n, t.Tk))
                    prog.append(isa.Gemm(CODES, ws, acc, int(k0 != g * G), layer.wbits, k0, m, n, t.Tk))
                    kt += 1
                    if pending is not None:
                        prog.append(pending)
                        pending = None
                prog.append(isa.VFold(acc, facc, WS_SLOT + g % 2, Z_SLOT + g % 2 if has_z else isa.NO_SLOT, SUMS,
                                      int(g == 0), g, m, n))
            prog.append(isa.VEpi(facc, SCALE, B_SLOT + nt % 2 if has_b else isa.NO_SLOT, out, m, n))
            pending = isa.Store(isa.Buf.OUT, out, Y, m0, n0, m, n)
            nt += 1
        prog.append(pending)
    prog.append(isa.End())
    return prog


def tensor_bits(layer: LayerSpec) -> tuple[int, ...]:
    """Element bits of each tensor id in DRAM (X and Y: fp32, fp16 on the fp16 datapath)."""
    act = 16 if layer.wbits == 16 else 32
    return (act, layer.wbits, 32, layer.wbits, 32, act)
