"""Cycle and energy model: per instruction, per host-graph vector op, plus the roofline cross-check.

Per instruction (``instruction_cost``):

- LOAD / STORE (DMA): busy ``bytes / B`` cycles, B = DRAM bytes per cycle (``dram_gbps / clock_ghz``), and the
  data is ready ``dram_latency_cycles`` later (requests are pipelined, so latency does not occupy the engine).
  A tensor the program keeps on chip (fusion) moves at ``sram.bytes_per_cycle`` with no DRAM traffic.
- GEMM (MMU, weight-stationary): ``m + fill_cycles`` cycles for one Tk x Tn weight tile and m streamed rows;
  energy ``m n k pj_per_mac`` + SRAM reads of both operands and the accumulator write.
- VQUANT / VFOLD / VEPI (VCU): ``elements x cycles_per_element / lanes``; energy per lane-op.

Host-graph ops (``vector_op``): float ops the VCU runs (LayerNorm, softmax, GELU's erf, elementwise, float
MatMul as lane-MACs) get VCU cycles; layout ops (Reshape, Transpose...) move bytes through SRAM; anything else
runs on the host CPU and is listed, not timed. ``roofline`` gives the lower bound of a GEMM on the array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from edgecomp.asic import isa
from edgecomp.asic.config import AsicConfig, Datapath


@dataclass
class Energy:
    """pJ by component."""

    mmu: float = 0.0
    vcu: float = 0.0
    sram: float = 0.0
    dram: float = 0.0

    def add(self, other: Energy) -> None:
        self.mmu += other.mmu
        self.vcu += other.vcu
        self.sram += other.sram
        self.dram += other.dram

    @property
    def total(self) -> float:
        return self.mmu + self.vcu + self.sram + self.dram

    def to_dict(self) -> dict:
        return {"mmu_pj": self.mmu, "vcu_pj": self.vcu, "sram_pj": self.sram, "dram_pj": self.dram}


@dataclass(frozen=True)
class InsCost:
    busy: float  # cycles the unit is occupied
    latency: float  # extra cycles until the result is ready (DMA first-byte latency)
    dram_bytes: float = 0.0
    macs: int = 0
    lane_ops: float = 0.0
    energy: Energy = field(default_factory=Energy)


def _dma(cfg: AsicConfig, nbytes: float, on_chip: bool) -> InsCost:
    if on_chip:
        return InsCost(nbytes / cfg.sram_bytes_per_cycle, 0.0, 0.0,
                       energy=Energy(sram=2 * nbytes * cfg.sram_pj_per_byte))
    return InsCost(nbytes / cfg.dram_bytes_per_cycle, cfg.dram_latency_cycles, nbytes,
                   energy=Energy(sram=nbytes * cfg.sram_pj_per_byte, dram=nbytes * cfg.dram_pj_per_byte))


def _vcu(cfg: AsicConfig, elements: float, kind: str, sram_bytes: float) -> InsCost:
    ops = elements * cfg.vcu_cycles[kind]
    return InsCost(ops / cfg.vcu_lanes, 0.0, lane_ops=ops,
                   energy=Energy(vcu=ops * cfg.vcu_pj_per_lane_op, sram=sram_bytes * cfg.sram_pj_per_byte))


def instruction_cost(ins: isa.Instruction, cfg: AsicConfig, dp: Datapath, bits: tuple[int, ...],
                     on_chip: frozenset = frozenset()) -> InsCost:
    """Cost of one instruction of a program whose tensors have element ``bits`` (codegen.tensor_bits), on
    datapath ``dp`` (which sets the activation / weight widths the MMU reads); ``on_chip``: tensor ids fused."""
    ab, wb = dp.act_bits, dp.weight_bits
    if isinstance(ins, (isa.Load, isa.Store)):
        return _dma(cfg, ins.rows * ins.cols * bits[ins.tensor] / 8, ins.tensor in on_chip)
    if isinstance(ins, isa.Gemm):
        macs = ins.m * ins.n * ins.k
        sram = ins.m * ins.k * ab / 8 + ins.n * ins.k * wb / 8 + ins.m * ins.n * 4
        return InsCost(ins.m + cfg.fill_cycles, 0.0, macs=macs,
                       energy=Energy(mmu=macs * dp.pj_per_mac, sram=sram * cfg.sram_pj_per_byte))
    if isinstance(ins, isa.VQuant):
        if ab == 16:  # fp16 datapath: a conversion pass, no quantization
            return _vcu(cfg, ins.rows * ins.k, "elementwise", ins.rows * ins.k * 6)
        return _vcu(cfg, ins.rows * ins.k, "quantize", ins.rows * ins.k * (4 + ab / 8))
    if isinstance(ins, isa.VFold):
        return _vcu(cfg, ins.m * ins.n, "fold", ins.m * ins.n * 12)
    if isinstance(ins, isa.VEpi):
        return _vcu(cfg, ins.m * ins.n, "epilogue", ins.m * ins.n * 12)
    return InsCost(0.0, 0.0)


def roofline(M: int, K: int, N: int, wbits: int, abits: int, dp: Datapath, cfg: AsicConfig,
             x_in_dram: bool = True, y_in_dram: bool = True) -> dict:
    """Lower bounds of one GEMM: compute ``MKN / (rows cols macs_per_pe)`` and DRAM traffic (weights once,
    fp32 activations in and out unless fused on chip) at ``dram_gbps``; the bound is their max."""
    peak = cfg.rows * cfg.cols * dp.macs_per_pe
    compute = M * K * N / peak
    a_bits = 16 if dp.act_bits == 16 else 32
    w_bits = 16 if dp.weight_bits == 16 else wbits
    nbytes = N * K * w_bits / 8 + (M * K * x_in_dram + M * N * y_in_dram) * a_bits / 8
    memory = nbytes / cfg.dram_bytes_per_cycle
    return {"compute_cycles": compute, "memory_cycles": memory, "bound_cycles": max(compute, memory),
            "bound": "compute" if compute >= memory else "memory"}


# Host-graph ops: op type -> VCU cost class (cycles_per_element key), "layout" (a copy through SRAM), "free"
# (metadata only) or absent (host CPU).
VECTOR_OPS = {
    "Add": "elementwise", "Sub": "elementwise", "Mul": "elementwise", "Div": "elementwise",
    "Abs": "elementwise", "Sign": "elementwise", "Round": "elementwise", "Clip": "elementwise",
    "Neg": "elementwise", "Sqrt": "elementwise", "Where": "elementwise", "Max": "elementwise",
    "Min": "elementwise", "Relu": "elementwise", "Cast": "elementwise", "Equal": "elementwise",
    "And": "elementwise", "Not": "elementwise", "Tanh": "exp2", "Sigmoid": "exp2",
    "Pow": "exp2", "Exp": "exp2", "Log": "log2", "Erf": "erf",
    "ReduceMax": "reduce", "ReduceMean": "reduce", "ReduceSum": "reduce", "ReduceL2": "reduce",
    "Softmax": "softmax", "LayerNormalization": "layernorm", "MatMul": "matmul",
    "Transpose": "layout", "Concat": "layout", "Slice": "layout", "Split": "layout",
    "Reshape": "free", "Flatten": "free", "Unsqueeze": "free", "Squeeze": "free", "Identity": "free",
    "Shape": "free", "Constant": "free",
}
REDUCING = {"reduce", "softmax", "layernorm"}


@dataclass(frozen=True)
class OpCost:
    unit: str  # "vcu" | "mmu" | "layout" | "free" | "host"
    cycles: float
    lane_ops: float
    dram_bytes: float
    energy: Energy
    flops: float = 0.0  # host ops: multiply-adds x 2 (what the host spends), else 0


def _numel(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def vector_op(node, shapes: dict, cfg: AsicConfig, on_chip, float_bytes: int = 4,
              mmu: Datapath | None = None) -> OpCost:
    """Cost of one host-graph ``node`` given every value's (shape, dtype) in ``shapes``; ``on_chip(v)`` says
    whether value ``v`` stays in SRAM (fusion), else it is read from / written to DRAM. ``float_bytes``: the
    size float32 values take on the accelerator (2 on the fp16 datapath). ``mmu``: a datapath float MatMuls
    run on (fp16 configuration), else they run on the VCU in fp32."""
    kind = VECTOR_OPS.get(node.op_type)
    ins = [shapes[v] for v in node.input if v and v in shapes]
    outs = [shapes[v] for v in node.output if v and v in shapes]
    out_el = sum(_numel(s) for s, _ in outs)
    if kind is None:
        flops = _host_flops(node, ins, outs)
        return OpCost("host", 0.0, 0.0, 0.0, Energy(), flops)
    if kind == "free":
        return OpCost("free", 0.0, 0.0, 0.0, Energy())
    dram = 0.0
    for v in [*node.input, *node.output]:
        if v and v in shapes and not on_chip(v):
            s, dt = shapes[v]
            dram += _numel(s) * _itemsize(dt, float_bytes)
    e = Energy(dram=dram * cfg.dram_pj_per_byte)
    io_bytes = sum(_numel(s) * _itemsize(d, float_bytes) for s, d in ins + outs)
    dram_cycles = dram / cfg.dram_bytes_per_cycle
    if kind == "layout":
        e.sram += 2 * io_bytes * cfg.sram_pj_per_byte
        return OpCost("layout", max(io_bytes / cfg.sram_bytes_per_cycle, dram_cycles), 0.0, dram, e)
    if kind == "matmul":
        macs = out_el * ins[0][0][-1]
        if mmu is not None:
            a, o = ins[0][0], outs[0][0]
            M, K, N = a[-2] if len(a) > 1 else 1, a[-1], o[-1]
            batch = out_el // max(1, M * N)
            tiles = batch * math.ceil(K / (cfg.rows * mmu.macs_per_pe)) * math.ceil(N / cfg.cols)
            cycles = tiles * (M + cfg.fill_cycles)  # weight-stationary tiles, as a GEMM instruction
            e.mmu += macs * mmu.pj_per_mac
            e.sram += io_bytes * cfg.sram_pj_per_byte
            return OpCost("mmu", max(cycles, dram_cycles), 0.0, dram, e)
        elements = macs
    elif kind in REDUCING:
        elements = max(sum(_numel(s) for s, _ in ins[:1]), out_el)
    else:
        elements = out_el
    ops = elements * cfg.vcu_cycles[kind]
    e.vcu += ops * cfg.vcu_pj_per_lane_op
    e.sram += io_bytes * cfg.sram_pj_per_byte
    # NOTE: VCU ops stream their operands; DRAM transfers overlap the computation (double-buffered rows).
    return OpCost("vcu", max(ops / cfg.vcu_lanes, dram_cycles), ops, dram, e)


def _itemsize(dtype: str, float_bytes: int = 4) -> int:
    import numpy as np

    return float_bytes if dtype == "float32" else np.dtype(dtype).itemsize


def _host_flops(node, ins, outs) -> float:
    if node.op_type == "Conv" and len(ins) >= 2:
        w = ins[1][0]
        return 2.0 * sum(_numel(s) for s, _ in outs) * _numel(w[1:])
    return float(sum(_numel(s) for s, _ in outs))
