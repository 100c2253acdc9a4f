"""Codegen: tiles that fit the configured SRAM, and a clear error naming the parameter when none does."""

from __future__ import annotations

import dataclasses

import pytest

from edgecomp.asic import codegen, isa
from edgecomp.errors import ConfigError


@pytest.mark.parametrize("field, value, param", [
    ("weight_bytes", 1024, "asic.sram.weight_kib"),
    ("act_bytes", 4096, "asic.sram.act_kib"),
    ("acc_bytes", 128, "asic.sram.acc_kib"),
    ("out_bytes", 64, "asic.sram.out_kib"),
])
def test_sram_too_small_names_the_parameter(asic_cfg, field, value, param):
    cfg = dataclasses.replace(asic_cfg, **{field: value})
    dp = cfg.datapath(4, 4)
    with pytest.raises(ConfigError) as e:
        codegen.tiling(197, 1536, 384, 128, 4, 4, dp, cfg)
    assert param in e.value.hint


def test_tiles_fit_and_follow_the_array(asic_cfg):
    dp = asic_cfg.datapath(4, 4)
    t = codegen.tiling(197, 384, 1536, 64, 4, 4, dp, asic_cfg)
    assert (t.Tn, t.Tk) == (asic_cfg.cols, 64)  # Tk: rows x 4 MACs per PE = 128, capped by the group of 64
    assert t.Tm == 197  # every token's codes stay on chip while the weights stream
    row = 384 * 4 // 8 + 4 + 4 * (384 // 64)
    assert 2 * codegen.TQ * 384 * 4 + t.Tm * row <= asic_cfg.act_bytes


def test_program_double_buffers_weight_tiles(asic_cfg, random_layer):
    import numpy as np

    layer = random_layer(np.random.default_rng(0), 4, 7, 32, 128, 64)
    dp = asic_cfg.datapath(4, 4)
    t = codegen.tiling(10, 128, 64, 32, 4, 4, dp, asic_cfg)
    prog = codegen.program(codegen.LayerSpec.of(layer), t)
    w_loads = [i.slot for i in prog if isinstance(i, isa.Load) and i.tensor == codegen.W]
    assert w_loads[:4] == [0, 1, 0, 1]
    assert isinstance(prog[-1], isa.End)
    # Each output tile is stored once, and only after the next tile's first GEMM has been queued.
    stores = [k for k, i in enumerate(prog) if isinstance(i, isa.Store)]
    gemms = [k for k, i in enumerate(prog) if isinstance(i, isa.Gemm)]
    assert len(stores) == 2 and gemms[4] < stores[0]


def test_two_heads_of_b_codes_must_fit_the_weight_buffer(asic_cfg):
    """An attention product keeps two heads' bᵀ codes in WGT (the next head's are written during this one's
    GEMMs); a buffer that holds the tiles but not those says so."""
    cfg = dataclasses.replace(asic_cfg, weight_bytes=16 * 1024)
    dp = cfg.datapath(8, 8)
    codegen.tiling(197, 64, 197, 64, 8, 8, dp, cfg)  # a Linear layer of that shape fits
    with pytest.raises(ConfigError) as e:
        codegen.tiling(197, 64, 197, 64, 8, 8, dp, cfg, resident_b=True)
    assert "asic.sram.weight_kib" in e.value.hint and "bᵀ" in str(e.value)
