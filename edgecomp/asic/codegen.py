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
 6     XB          f32 [N, K]: bᵀ of an activation x     32
                   activation product (MatMulQ)
====  ==========  ====================================  ==============================

An activation x activation program covers every leading index b (batch x heads): X is [B·M, K], XB [B·N, K], Y
[B·M, N] (index b at rows b·M / b·N), and the W / WS it writes on chip hold two indices ([2N, K], [2, N]).

Tiling (``Tiling``): the MMU takes a weight tile of ``Tk x Tn`` (Tk = rows x macs_per_pe, capped by the group
size, Tn = cols) and streams ``m`` activation rows through it. Activations are quantized once per row block of
``Tm`` rows (as many as the ACT buffer holds as codes, beside a double-buffered fp32 staging area of ``Tq``
rows) and stay on chip while every weight tile passes; weight tiles, group scales and zero points are
double-buffered (slot parity), so the DMA of tile t+1 overlaps the GEMM of tile t, and so is the int32
accumulator, per group, so a group's GEMMs overlap the previous group's VFOLD. Loop order: ``for m-block:
quantize rows; for n-tile: for group: for k-tile: LOAD W (then the group's scales), GEMM; VFOLD; VEPI;
STORE``, each STORE issued after the next tile's first GEMM (a STORE waiting for its epilogue must not hold
back the next tile's weight loads). ``tiling`` raises a ConfigError naming the ``[asic.sram]`` parameter
when not even a minimal tile fits.

An activation x activation partition (``kind`` "matmul", ``matmul_program``) runs the same loop for each
leading index (batch x heads), after a prologue that quantizes the right operand on chip: bᵀ rows are loaded
into the staging slots, VQUANT turns them into int8 codes and scales (ACT slots ``BQ``..), and two STOREs move
codes and scales into W / WS, which the program keeps on chip (SRAM-rate copies into the weight buffer, no DRAM
traffic). Then W is an int8 "weight" with one group (G = K) and no zero point, so the GEMM / VFOLD / VEPI
arithmetic is the Linear layers': ``y = (f32(acc) * sb) * sa``. With one group a k-tile may be ragged (K = 197
keys is prime). The heads are software pipelined: head h+1's prologue is spread over head h's GEMMs and
writes the other half of W / WS, and head h+1's rows go to the other codes buffer, so only the first head's
prologue is exposed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgecomp.asic import isa
from edgecomp.asic.config import AsicConfig, Datapath
from edgecomp.asic.partition import GemmLayer, MatMulLayer
from edgecomp.errors import ConfigError

X, W, WS, Z, BIAS, Y, XB = range(7)
TENSOR_NAMES = ("X", "W", "WS", "Z", "BIAS", "Y", "XB")
TQ = 4  # rows per quantize staging block (fp32, double-buffered)

# ACT slots: 0/1 staging, 2 codes, 3 scales, 4 row sums, 5-7 the same for bᵀ (matmul prologue), 8-10 a second
# codes / scales / sums set (matmul: the next head's rows are quantized while this head's GEMMs read the first).
# WGT slots: 0/1 weights, 2/3 scales, 4/5 zeros, 6/7 bias.
ST, CODES, SCALE, SUMS, BQ, CODES2 = 0, 2, 3, 4, 5, 8
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


def tiling(M: int, K: int, N: int, G: int, wbits: int, abits: int, dp: Datapath, cfg: AsicConfig,
           resident_b: bool = False) -> Tiling:
    """Tile sizes for a GEMM of x [M, K] by W [N, K] (groups of G) on datapath ``dp``. ``resident_b``: an
    activation x activation product: the prologue's bᵀ codes, scales and row sums also occupy ACT, the codes
    of two leading indices sit in WGT (the next head's prologue overlaps this head's GEMMs), and row codes are
    double-buffered."""
    Tk = min(cfg.rows * dp.macs_per_pe, G, K)
    while G != K and G % Tk:  # a k-tile never spans two groups; with one group the last one may be ragged
        Tk -= 1
    Tn = min(cfg.cols, N)
    w_tile = 2 * (Tk * Tn * wbits // 8 + Tn * 4 + Tn + Tn * 4)  # weights + scales + zeros + bias, two each
    if resident_b:
        w_tile += 2 * (N * K * wbits // 8 + 4 * N)  # two heads' bᵀ codes and scales (W / WS, kept on chip)
    if w_tile > cfg.weight_bytes:
        raise ConfigError(f"the weight buffer ({cfg.weight_bytes} B) cannot hold two {Tk}x{Tn} weight tiles "
                          + ("and two heads' bᵀ codes " if resident_b else "") + f"({w_tile} B) of a {M}x{K}x{N} GEMM",
                          hint="raise asic.sram.weight_kib in the target TOML, or lower asic.mmu.rows / cols")
    staging = 2 * TQ * K * 4 + (N * K + 8 * N if resident_b else 0)
    row = (K * abits // 8 + 4 + 4 * (K // G)) * (2 if resident_b else 1)  # codes + scale + group row sums
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
    kind: str = "gemm"  # "gemm": x times constant weights; "matmul": a x b, both activations (MatMulQ)
    unsigned: bool = False  # matmul: a quantized to [0, qmax] (softmax probabilities)
    qmax_b: int = 0  # matmul: bᵀ rows quantized to [-qmax_b, qmax_b]
    batch: int = 1  # matmul: leading index count (batch x heads); one program covers them all

    @classmethod
    def of(cls, layer: GemmLayer) -> LayerSpec:
        return cls(layer.name, layer.K, layer.N, layer.G, layer.wbits, layer.qmax, layer.bias is not None)

    @classmethod
    def of_matmul(cls, layer: MatMulLayer, K: int, N: int, batch: int) -> LayerSpec:
        """An activation x activation product of traced shape [batch, M, K] x [batch, K, N]: int8 codes of bᵀ
        are its one-group "weights"."""
        return cls(layer.name, K, N, K, 8, layer.qmax_a, False, "matmul", layer.unsigned_a, layer.qmax_b, batch)

    def as_fp16(self) -> LayerSpec:
        """The same GEMM on the fp16 datapath: fp16 weights, no groups, no zero points."""
        return replace(self, G=self.K, wbits=16)


@dataclass
class _Cursor:
    """Slot parities carried across the leading indices of one program."""

    kt: int = 0  # weight tiles issued
    nt: int = 0  # output tiles
    gt: int = 0  # groups (int32 accumulator, scale and zero-point slots)
    mb: int = 0  # row blocks (codes buffer, when double-buffered)


def program(layer: LayerSpec, t: Tiling) -> list[isa.Instruction]:
    """The instruction program of ``layer`` for activations of M = ``t.M`` rows (module docstring)."""
    return _gemm_loop(layer, t, _Cursor()) + [isa.End()]


def _gemm_loop(layer: LayerSpec, t: Tiling, cur: _Cursor, x0: int = 0, y0: int = 0, w0: int = 0, ws0: int = 0,
               double_codes: bool = False, splice: list[list[isa.Instruction]] = ()) -> list[isa.Instruction]:
    """The tiled GEMM loop of one leading index. ``x0`` / ``y0`` / ``w0`` / ``ws0``: the row where its tiles
    start in the program's X, Y, W and WS tensors. ``double_codes``: row blocks alternate between two codes
    buffers. ``splice``: instruction groups (the next head's prologue) spread evenly over the GEMMs, so their
    DMA and VCU work runs under the MMU's."""
    K, N, G = t.K, t.N, t.G
    has_z, has_b = layer.wbits == 4, layer.has_bias
    n_gemms = -(-t.M // t.Tm) * -(-N // t.Tn) * (K // G) * len(range(0, G, t.Tk))
    per_gemm, spliced = -(-len(splice) // n_gemms), 0
    prog: list[isa.Instruction] = []
    for m0 in range(0, t.M, t.Tm):
        m = min(t.Tm, t.M - m0)
        codes = CODES2 if double_codes and cur.mb % 2 else CODES
        scale, sums = codes + 1, codes + 2
        cur.mb += 1
        for qi, r0 in enumerate(range(0, m, TQ)):
            r = min(TQ, m - r0)
            prog.append(isa.Load(isa.Buf.ACT, ST + qi % 2, X, x0 + m0 + r0, 0, r, K))
            prog.append(isa.VQuant(ST + qi % 2, codes, layer.qmax, G, r0, r, K, int(layer.unsigned)))
        pending: isa.Store | None = None  # the previous tile's STORE, issued once this tile's first GEMM is queued
        for n0 in range(0, N, t.Tn):
            n = min(t.Tn, N - n0)
            facc, out = 2 * (cur.nt % 2) + 1, cur.nt % 2
            if has_b:
                prog.append(isa.Load(isa.Buf.WGT, B_SLOT + cur.nt % 2, BIAS, 0, n0, 1, n))
            for g in range(K // G):
                # NOTE: the int32 accumulator alternates per group, so group g+1's GEMMs run while VFOLD
                # reads group g's sums (with Tk = G one GEMM per group, a single slot serialises MMU and VCU).
                acc, gp = 2 * (cur.gt % 2), cur.gt % 2
                cur.gt += 1
                for k0 in range(g * G, (g + 1) * G, t.Tk):
                    ws, k = W_SLOT + cur.kt % 2, min(t.Tk, (g + 1) * G - k0)
                    prog.append(isa.Load(isa.Buf.WGT, ws, W, w0 + n0, k0, n, k))
                    if k0 == g * G:
                        # NOTE: scales and zeros after the weight tile: they wait for the VFOLD two groups
                        # back, and the in-order DMA queue must not hold the next GEMM's weights behind them.
                        prog.append(isa.Load(isa.Buf.WGT, WS_SLOT + gp, WS, ws0 + g, n0, 1, n))
                        if has_z:
                            prog.append(isa.Load(isa.Buf.WGT, Z_SLOT + gp, Z, g, n0, 1, n))
                    prog.append(isa.Gemm(codes, ws, acc, int(k0 != g * G), layer.wbits, k0, m, n, k))
                    cur.kt += 1
                    if pending is not None:
                        prog.append(pending)
                        pending = None
                    for group in splice[spliced:spliced + per_gemm]:
                        prog += group
                    spliced += per_gemm
                prog.append(isa.VFold(acc, facc, WS_SLOT + gp, Z_SLOT + gp if has_z else isa.NO_SLOT, sums,
                                      int(g == 0), g, m, n))
            prog.append(isa.VEpi(facc, scale, B_SLOT + cur.nt % 2 if has_b else isa.NO_SLOT, out, m, n))
            pending = isa.Store(isa.Buf.OUT, out, Y, y0 + m0, n0, m, n)
            cur.nt += 1
        prog.append(pending)
    return prog


def matmul_program(layer: LayerSpec, t: Tiling) -> list[isa.Instruction]:
    """Every leading index (``layer.batch``: batch x heads) of an activation x activation partition, software
    pipelined: head h's bᵀ (XB rows h·N...) is quantized into W / WS rows of parity h % 2 while head h-1's
    GEMMs run (its loads and VQUANTs spread over them, its two on-chip STOREs after them), then head h's GEMM
    loop reads those rows, with its own rows of X and Y (h·M...) and the other codes buffer."""
    K, N, M = t.K, t.N, t.M

    def prologue(h: int) -> tuple[list[list[isa.Instruction]], list[isa.Instruction]]:
        groups = []
        for qi, r0 in enumerate(range(0, N, TQ)):
            r = min(TQ, N - r0)
            groups.append([isa.Load(isa.Buf.ACT, ST + qi % 2, XB, h * N + r0, 0, r, K),
                           isa.VQuant(ST + qi % 2, BQ, layer.qmax_b, K, r0, r, K)])
        # [N, 1] scales: the same bytes as a [1, N] row
        return groups, [isa.Store(isa.Buf.ACT, BQ, W, (h % 2) * N, 0, N, K),
                        isa.Store(isa.Buf.ACT, BQ + 1, WS, h % 2, 0, 1, N)]

    groups, stores = prologue(0)
    prog = [i for g in groups for i in g] + stores
    cur = _Cursor()
    for h in range(layer.batch):
        nxt, nxt_stores = prologue(h + 1) if h + 1 < layer.batch else ([], [])
        prog += _gemm_loop(layer, t, cur, x0=h * M, y0=h * M, w0=(h % 2) * N, ws0=h % 2, double_codes=True,
                           splice=nxt)
        prog += nxt_stores
    return prog + [isa.End()]


PROGRAMS = {"gemm": program, "matmul": matmul_program}


def build_program(layer: LayerSpec, t: Tiling) -> list[isa.Instruction]:
    """The program of ``layer`` (either kind)."""
    return PROGRAMS[layer.kind](layer, t)


def layer_tiling(layer: LayerSpec, M: int, dp: Datapath, cfg: AsicConfig) -> Tiling:
    """``tiling`` for ``layer`` (already in its datapath's form) with M activation rows."""
    return tiling(M, layer.K, layer.N, layer.G, layer.wbits, dp.act_bits, dp, cfg, layer.kind == "matmul")


def matmul_scratch(layer: LayerSpec) -> dict[int, np.ndarray]:
    """The on-chip W / WS tensors an activation x activation program writes its bᵀ codes into: two leading
    indices' worth (parity rows)."""
    return {W: np.zeros((2 * layer.N, layer.K), np.int8), WS: np.zeros((2, layer.N), np.float32)}


def on_chip_tensors(layer: LayerSpec) -> tuple[int, ...]:
    """Tensors a program keeps on chip whatever the fusion analysis says: the matmul prologue's W / WS."""
    return (W, WS) if layer.kind == "matmul" else ()


def tensor_bits(layer: LayerSpec, act_bits: int | None = None) -> tuple[int, ...]:
    """Element bits of each tensor id in DRAM (X, Y, XB: fp32, fp16 on the fp16 datapath; ``act_bits``
    overrides that for a cost-only what-if)."""
    act = act_bits or (16 if layer.wbits == 16 else 32)
    return (act, layer.wbits, 32, layer.wbits, 32, act, act)
