"""The accelerator's instruction set: frozen dataclasses, each encoded as one 128-bit little-endian word.

Word layout (bit 0 = least significant): ``opcode`` in bits 0-7, then the instruction's fields in the order
its ``FIELDS`` lists them, each an unsigned integer of the stated width; unused high bits are zero.
``encode(i) -> int``, ``decode(word) -> Instruction``; ``encode_program`` / ``decode_program`` turn a list
of instructions into bytes (16 per instruction) and back. docs/asic.md has the table of every field.

Units: ``DMA`` (LOAD), ``DMA_OUT`` (STORE), ``MMU`` (GEMM), ``VCU`` (VQUANT, VFOLD, VEPI). Operands name on-chip buffers
(``Buf``) and slots inside them; DRAM operands name a tensor of the program's tensor table and a 2-D tile
(row, column, rows, columns, in elements of that tensor's type).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar

from edgecomp.errors import ConfigError

WORD_BITS = 128
WORD_BYTES = WORD_BITS // 8


class Buf(IntEnum):
    """On-chip buffers (``[asic.sram]``): weights, activations, accumulators, outputs."""

    WGT = 0
    ACT = 1
    ACC = 2
    OUT = 3


class Unit(IntEnum):
    DMA = 0  # load queue (DRAM -> SRAM)
    MMU = 1
    VCU = 2
    DMA_OUT = 3  # store queue (SRAM -> DRAM); shares the DRAM bandwidth with the load queue


@dataclass(frozen=True)
class Instruction:
    OPCODE: ClassVar[int]
    UNIT: ClassVar[Unit]
    FIELDS: ClassVar[tuple[tuple[str, int], ...]]  # (field name, bit width) after the 8-bit opcode


@dataclass(frozen=True)
class Load(Instruction):
    """DMA DRAM -> SRAM: tile [row:row+rows, col:col+cols] of tensor ``tensor`` into ``buf``/``slot``."""

    OPCODE: ClassVar[int] = 0x01
    UNIT: ClassVar[Unit] = Unit.DMA
    FIELDS: ClassVar = (("buf", 2), ("slot", 6), ("tensor", 16), ("row", 16), ("col", 16), ("rows", 16),
                        ("cols", 16))
    buf: int
    slot: int
    tensor: int
    row: int
    col: int
    rows: int
    cols: int


@dataclass(frozen=True)
class Store(Instruction):
    """DMA SRAM -> DRAM: ``buf``/``slot`` (rows x cols) into tensor ``tensor`` at (row, col)."""

    OPCODE: ClassVar[int] = 0x02
    UNIT: ClassVar[Unit] = Unit.DMA_OUT
    FIELDS: ClassVar = Load.FIELDS
    buf: int
    slot: int
    tensor: int
    row: int
    col: int
    rows: int
    cols: int


@dataclass(frozen=True)
class VQuant(Instruction):
    """VCU per-token quantize of ACT/``src`` (fp32 rows x K) into rows ``row:row+rows`` of: codes ACT/``dst``,
    scales ACT/``dst+1``, per-group row sums of the codes (groups of ``group``) ACT/``dst+2``. Codes in
    [-qmax, qmax], or [0, qmax] when ``unsigned`` (softmax probabilities); ``row`` = 0 starts a new block."""

    OPCODE: ClassVar[int] = 0x10
    UNIT: ClassVar[Unit] = Unit.VCU
    FIELDS: ClassVar = (("src", 6), ("dst", 6), ("qmax", 8), ("group", 16), ("row", 16), ("rows", 16),
                        ("k", 16), ("unsigned", 1))
    src: int
    dst: int
    qmax: int
    group: int
    row: int
    rows: int
    k: int
    unsigned: int = 0


@dataclass(frozen=True)
class Gemm(Instruction):
    """MMU: ACC/``acc`` (int32 m x n) [+]= ACT/``act``[:, k0:k0+k] (codes) x WGT/``wgt`` (n x k weights)ᵀ.
    ``acc_in`` = 1 accumulates, 0 overwrites. ``wbits`` 4: WGT holds packed nibbles (low nibble = even k)."""

    OPCODE: ClassVar[int] = 0x20
    UNIT: ClassVar[Unit] = Unit.MMU
    FIELDS: ClassVar = (("act", 6), ("wgt", 6), ("acc", 6), ("acc_in", 1), ("wbits", 5), ("k0", 16), ("m", 16),
                        ("n", 16), ("k", 16))
    act: int
    wgt: int
    acc: int
    acc_in: int
    wbits: int
    k0: int
    m: int
    n: int
    k: int


@dataclass(frozen=True)
class VFold(Instruction):
    """VCU: ACC/``facc`` (fp32 m x n) = [ACC/``facc`` +] f32(ACC/``acc`` - z R[:, g]) * ws, one weight group.
    ``scales`` (WGT slot): ws [n] of this group; ``zeros`` (WGT slot, 63 = none): z [n]; R = ACT/``sums``
    column ``g``. ``first`` = 1 starts the sum."""

    OPCODE: ClassVar[int] = 0x11
    UNIT: ClassVar[Unit] = Unit.VCU
    FIELDS: ClassVar = (("acc", 6), ("facc", 6), ("scales", 6), ("zeros", 6), ("sums", 6), ("first", 1),
                        ("g", 16), ("m", 16), ("n", 16))
    acc: int
    facc: int
    scales: int
    zeros: int
    sums: int
    first: int
    g: int
    m: int
    n: int


NO_SLOT = 63


@dataclass(frozen=True)
class VEpi(Instruction):
    """VCU epilogue: OUT/``out`` (fp32 m x n) = ACC/``facc`` * s[:, None] + bias, s = ACT/``scale``
    (per token), bias = WGT/``bias`` ([n], NO_SLOT = none)."""

    OPCODE: ClassVar[int] = 0x12
    UNIT: ClassVar[Unit] = Unit.VCU
    FIELDS: ClassVar = (("facc", 6), ("scale", 6), ("bias", 6), ("out", 6), ("m", 16), ("n", 16))
    facc: int
    scale: int
    bias: int
    out: int
    m: int
    n: int


@dataclass(frozen=True)
class End(Instruction):
    """Program end: wait for every unit."""

    OPCODE: ClassVar[int] = 0xFF
    UNIT: ClassVar[Unit] = Unit.DMA
    FIELDS: ClassVar = ()


OPCODES: dict[int, type[Instruction]] = {c.OPCODE: c for c in (Load, Store, VQuant, Gemm, VFold, VEpi, End)}


def _check_layout() -> None:
    for cls in OPCODES.values():
        names = [f.name for f in fields(cls)]
        assert names == [n for n, _ in cls.FIELDS], cls.__name__
        assert 8 + sum(w for _, w in cls.FIELDS) <= WORD_BITS, cls.__name__


_check_layout()


def encode(ins: Instruction) -> int:
    """The 128-bit word of ``ins``; raises ConfigError when a field does not fit its width."""
    word, shift = ins.OPCODE, 8
    for name, width in ins.FIELDS:
        v = getattr(ins, name)
        if not (isinstance(v, int) and 0 <= v < (1 << width)):
            raise ConfigError(f"{type(ins).__name__}.{name} = {v} does not fit {width} bits",
                              hint="the tile is too large for the instruction encoding; lower the tile size")
        word |= v << shift
        shift += width
    return word


def decode(word: int) -> Instruction:
    cls = OPCODES.get(word & 0xFF)
    if cls is None:
        raise ConfigError(f"unknown opcode 0x{word & 0xFF:02x}", hint="the program file is corrupt")
    values, shift = {}, 8
    for name, width in cls.FIELDS:
        values[name] = (word >> shift) & ((1 << width) - 1)
        shift += width
    if word >> shift:
        raise ConfigError(f"{cls.__name__} word has bits set above its fields", hint="the program file is corrupt")
    return cls(**values)


def encode_program(program: list[Instruction]) -> bytes:
    return b"".join(encode(i).to_bytes(WORD_BYTES, "little") for i in program)


def decode_program(data: bytes) -> list[Instruction]:
    if len(data) % WORD_BYTES:
        raise ConfigError(f"program of {len(data)} bytes is not a whole number of {WORD_BYTES}-byte words",
                          hint="the program file is truncated")
    return [decode(int.from_bytes(data[i:i + WORD_BYTES], "little")) for i in range(0, len(data), WORD_BYTES)]
