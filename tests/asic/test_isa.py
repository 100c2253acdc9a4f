"""ISA: every instruction round-trips through its 128-bit word; bad words and oversized fields are refused."""

from __future__ import annotations

import dataclasses

import pytest

from edgecomp.asic import isa
from edgecomp.errors import ConfigError


def _example(cls, seed: int) -> isa.Instruction:
    """An instance with every field set to a distinct value that uses its top bit."""
    vals = {}
    for i, (name, width) in enumerate(cls.FIELDS):
        vals[name] = (1 << (width - 1)) | ((seed + i) % (1 << (width - 1))) if width > 1 else 1
    return cls(**vals)


@pytest.mark.parametrize("cls", list(isa.OPCODES.values()), ids=lambda c: c.__name__)
def test_round_trip(cls):
    for seed in range(3):
        ins = _example(cls, seed)
        word = isa.encode(ins)
        assert 0 <= word < 1 << isa.WORD_BITS and word & 0xFF == cls.OPCODE
        assert isa.decode(word) == ins


def test_program_bytes_round_trip():
    prog = [_example(c, 7) for c in isa.OPCODES.values()] * 3
    data = isa.encode_program(prog)
    assert len(data) == isa.WORD_BYTES * len(prog)
    assert isa.decode_program(data) == prog


def test_fields_are_packed_in_declared_order():
    ins = isa.Load(buf=3, slot=1, tensor=2, row=0, col=0, rows=0, cols=0)
    assert isa.encode(ins) == 0x01 | 3 << 8 | 1 << 10 | 2 << 16


def test_oversized_field_is_refused():
    ins = dataclasses.replace(_example(isa.Gemm, 0), m=1 << 16)
    with pytest.raises(ConfigError, match="Gemm.m = 65536 does not fit 16 bits"):
        isa.encode(ins)


def test_bad_words_are_refused():
    with pytest.raises(ConfigError, match="unknown opcode 0x7e"):
        isa.decode(0x7E)
    with pytest.raises(ConfigError, match="bits set above its fields"):
        isa.decode(isa.End.OPCODE | 1 << 100)
    with pytest.raises(ConfigError, match="not a whole number"):
        isa.decode_program(b"\x00" * 17)
