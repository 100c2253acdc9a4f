"""The simulator: executes an instruction program with the accelerator's arithmetic and times it.

Functional model: DRAM is the program's tensor table (``dict[id, ndarray]``, codegen's layouts: int4 weights
packed two per byte); SRAM is ``(buffer, slot) -> ndarray``. The MMU unpacks nibbles from its weight slot and
multiplies int8/int4 codes into int32 accumulators (computed as float32 / float64 BLAS products, exact because
every partial sum of a tile is an integer below 2^24 / 2^53, then cast); VFOLD subtracts z x (group row sum) in int32
and folds the group into fp32; VEPI applies the token scale and bias. Float operations happen in the same
order as ``edgecomp.asic.reference``, which is why the two agree bit for bit.

Timing model: each unit (DMA load queue, DMA store queue, MMU, VCU) issues its instructions in program
order; an instruction starts when its unit is free, the slots it reads are ready (RAW), and the slots it
writes are no longer read or written by earlier instructions (WAR / WAW); through DRAM, a LOAD waits for the
earlier STOREs to its tensor and a STORE for the earlier LOADs of it. Double-buffered slots therefore
let the DMA of the next tile run under the GEMM of this one; a stall on bandwidth shows as MMU idle time.
Busy cycles per unit and the end time come out in ``Stats``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecomp.asic import codegen, isa
from edgecomp.asic.config import AsicConfig, Datapath
from edgecomp.asic.cost import Energy, instruction_cost

EPS = np.float32(1e-12)


@dataclass
class Stats:
    cycles: float = 0.0
    busy: dict = field(default_factory=lambda: {"dma": 0.0, "mmu": 0.0, "vcu": 0.0})
    macs: int = 0
    dram_bytes: float = 0.0
    lane_ops: float = 0.0
    instructions: int = 0
    energy: Energy = field(default_factory=Energy)

    def add(self, other: Stats) -> None:
        """Accumulate a run that follows this one (programs run back to back)."""
        self.cycles += other.cycles
        for k, v in other.busy.items():
            self.busy[k] += v
        self.macs += other.macs
        self.dram_bytes += other.dram_bytes
        self.lane_ops += other.lane_ops
        self.instructions += other.instructions
        self.energy.add(other.energy)

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, "busy_cycles": dict(self.busy), "macs": self.macs,
                "dram_bytes": self.dram_bytes, "vcu_lane_ops": self.lane_ops, "instructions": self.instructions,
                "energy": self.energy.to_dict()}


class _Rows:
    """An ACT slot written block by block (VQUANT rows) and read whole."""

    def __init__(self):
        self.parts: dict[int, np.ndarray] = {}
        self._whole = None

    def write(self, row: int, a: np.ndarray) -> None:
        if row == 0:
            self.parts = {}
        self.parts[row] = a
        self._whole = None

    def whole(self) -> np.ndarray:
        if self._whole is None:
            self._whole = np.concatenate([self.parts[r] for r in sorted(self.parts)], axis=0)
        return self._whole


def _unpack(w: np.ndarray, wbits: int) -> np.ndarray:
    """Weight slot -> int [n, k]: int4 bytes hold even k in the low nibble."""
    if wbits != 4:
        return w.astype(np.int32)
    out = np.empty((w.shape[0], w.shape[1] * 2), np.int32)
    out[:, 0::2] = w & 0x0F
    out[:, 1::2] = w >> 4
    return out


class Simulator:
    """``Simulator(cfg, dp).run(program, dram, bits)`` executes (unless ``functional=False``) and times it
    (unless ``timing=False``: run / eval need only the outputs)."""

    def __init__(self, cfg: AsicConfig, dp: Datapath, functional: bool = True, timing: bool = True):
        self.cfg, self.dp, self.functional, self.timing = cfg, dp, functional, timing

    def run(self, program: list[isa.Instruction], dram: dict[int, np.ndarray], bits: tuple[int, ...],
            on_chip: frozenset = frozenset()) -> Stats:
        sram: dict = {}
        stats = Stats()
        unit_free = {u: 0.0 for u in isa.Unit}
        ready: dict = {}  # slot -> cycle its last write completes
        stored: dict = {}  # DRAM tensor id -> cycle its last STORE completes (a LOAD of it waits: RAW through DRAM)
        loaded: dict = {}  # DRAM tensor id -> cycle its LOADs so far complete (a STORE to it waits: WAR)
        last_use: dict = {}  # slot -> cycle its last read or write completes
        names = {isa.Unit.DMA: "dma", isa.Unit.DMA_OUT: "dma", isa.Unit.MMU: "mmu", isa.Unit.VCU: "vcu"}
        for ins in program:
            reads, writes = _slots(ins)
            if self.functional:
                _EXEC[type(ins)](self, ins, sram, dram)
            if not self.timing:
                continue
            c = instruction_cost(ins, self.cfg, self.dp, bits, on_chip)
            start = max([unit_free[ins.UNIT]] + [ready.get(s, 0.0) for s in reads]
                        + [last_use.get(s, 0.0) for s in writes])
            if isinstance(ins, isa.Load):
                start = max(start, stored.get(ins.tensor, 0.0))
            elif isinstance(ins, isa.Store):
                start = max(start, loaded.get(ins.tensor, 0.0))
            end = start + c.busy
            unit_free[ins.UNIT] = end
            done = end + c.latency
            if isinstance(ins, isa.Store):
                stored[ins.tensor] = done
            elif isinstance(ins, isa.Load):
                loaded[ins.tensor] = max(loaded.get(ins.tensor, 0.0), done)
            for s in writes:
                ready[s] = done
                last_use[s] = done
            for s in reads:
                last_use[s] = max(last_use.get(s, 0.0), end)
            stats.busy[names[ins.UNIT]] += c.busy
            stats.macs += c.macs
            stats.dram_bytes += c.dram_bytes
            stats.lane_ops += c.lane_ops
            stats.energy.add(c.energy)
            stats.instructions += 1
        # NOTE: the two DMA queues share one DRAM port; the schedule above lets them overlap, so the run
        # takes at least the time all DMA traffic needs at full bandwidth.
        stats.cycles = max([*unit_free.values(), *ready.values(), stats.busy["dma"], 0.0])
        return stats

    # ---- functional semantics, one method per opcode -------------------------------------------------

    def _load(self, ins: isa.Load, sram, dram):
        src = dram[ins.tensor]
        if ins.tensor == codegen.W and self.dp.weight_bits == 4:
            tile = src[ins.row:ins.row + ins.rows, ins.col // 2:(ins.col + ins.cols) // 2]
        else:
            tile = src[ins.row:ins.row + ins.rows, ins.col:ins.col + ins.cols]
        sram[(ins.buf, ins.slot)] = tile

    def _store(self, ins: isa.Store, sram, dram):
        a = sram[(ins.buf, ins.slot)]
        a = a.whole() if isinstance(a, _Rows) else a
        # NOTE: a slot is contiguous rows; a [N, 1] column of scales stores as the [1, N] row it is in memory.
        dram[ins.tensor][ins.row:ins.row + ins.rows, ins.col:ins.col + ins.cols] = a.reshape(ins.rows, ins.cols)

    def _vquant(self, ins: isa.VQuant, sram, dram):
        x = sram[(isa.Buf.ACT, ins.src)]
        s = np.maximum(np.max(np.abs(x), axis=-1, keepdims=True) / np.float32(ins.qmax), EPS)
        lo, dtype = (0, np.int16) if ins.unsigned else (-ins.qmax, np.int8)  # unsigned: codes up to 255
        q = np.clip(np.rint(x / s), lo, ins.qmax).astype(dtype)
        sums = q.reshape(q.shape[0], ins.k // ins.group, ins.group).sum(axis=-1, dtype=np.int32)
        for off, a in enumerate((q, s, sums)):
            sram.setdefault((isa.Buf.ACT, ins.dst + off), _Rows()).write(ins.row, a)

    def _gemm(self, ins: isa.Gemm, sram, dram):
        a = sram[(isa.Buf.ACT, ins.act)].whole()[:ins.m, ins.k0:ins.k0 + ins.k]
        w = _unpack(sram[(isa.Buf.WGT, ins.wgt)], ins.wbits)[:ins.n, :ins.k]
        # NOTE: |partial sums| <= qmax * max|w| * k; below 2^24 a float32 BLAS product is exact, else float64.
        ft = np.float32 if 127 * 255 * ins.k < 2**24 else np.float64
        prod = (a.astype(ft) @ w.T.astype(ft)).astype(np.int32)
        key = (isa.Buf.ACC, ins.acc)
        sram[key] = sram[key] + prod if ins.acc_in else prod

    def _vfold(self, ins: isa.VFold, sram, dram):
        acc = sram[(isa.Buf.ACC, ins.acc)]
        if ins.zeros != isa.NO_SLOT:
            z = sram[(isa.Buf.WGT, ins.zeros)].astype(np.int32)  # [1, n]
            R = sram[(isa.Buf.ACT, ins.sums)].whole()[:ins.m, ins.g:ins.g + 1]
            acc = acc - z * R
        term = acc.astype(np.float32) * sram[(isa.Buf.WGT, ins.scales)][0]
        key = (isa.Buf.ACC, ins.facc)
        sram[key] = term if ins.first else sram[key] + term

    def _vepi(self, ins: isa.VEpi, sram, dram):
        y = sram[(isa.Buf.ACC, ins.facc)] * sram[(isa.Buf.ACT, ins.scale)].whole()[:ins.m]
        if ins.bias != isa.NO_SLOT:
            y = y + sram[(isa.Buf.WGT, ins.bias)][0]
        sram[(isa.Buf.OUT, ins.out)] = y

    def _end(self, ins, sram, dram):
        pass


_EXEC = {isa.Load: Simulator._load, isa.Store: Simulator._store, isa.VQuant: Simulator._vquant,
         isa.Gemm: Simulator._gemm, isa.VFold: Simulator._vfold, isa.VEpi: Simulator._vepi, isa.End: Simulator._end}


def _slots(ins: isa.Instruction) -> tuple[list, list]:
    """(slots read, slots written) of ``ins``."""
    A, W, C, O = isa.Buf.ACT, isa.Buf.WGT, isa.Buf.ACC, isa.Buf.OUT
    if isinstance(ins, isa.Load):
        return [], [(ins.buf, ins.slot)]
    if isinstance(ins, isa.Store):
        return [(ins.buf, ins.slot)], []
    if isinstance(ins, isa.VQuant):
        return [(A, ins.src)], [(A, ins.dst), (A, ins.dst + 1), (A, ins.dst + 2)]
    if isinstance(ins, isa.Gemm):
        return [(A, ins.act), (W, ins.wgt)] + ([(C, ins.acc)] if ins.acc_in else []), [(C, ins.acc)]
    if isinstance(ins, isa.VFold):
        r = [(C, ins.acc), (W, ins.scales), (A, ins.sums)] + ([(W, ins.zeros)] if ins.zeros != isa.NO_SLOT else [])
        return r + ([] if ins.first else [(C, ins.facc)]), [(C, ins.facc)]
    if isinstance(ins, isa.VEpi):
        r = [(C, ins.facc), (A, ins.scale)] + ([(W, ins.bias)] if ins.bias != isa.NO_SLOT else [])
        return r, [(O, ins.out)]
    return [], []
