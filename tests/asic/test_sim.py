"""Simulator: tiled, packed, double-buffered programs give the numpy integer reference's outputs bit for bit;
cycle counts respect the analytical roofline of the array and show DMA / MMU / VCU overlap."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.asic import codegen, isa, reference
from edgecomp.asic.cost import roofline
from edgecomp.asic.sim import Simulator


def _run(layer, x, cfg, functional=True):
    M = x.size // layer.K
    dp = cfg.datapath(layer.wbits, layer.abits)
    spec = codegen.LayerSpec.of(layer)
    t = codegen.tiling(M, layer.K, layer.N, layer.G, layer.wbits, layer.abits, dp, cfg)
    prog = codegen.program(spec, t)
    dram = codegen.dram_image(layer)
    dram[codegen.X] = x.reshape(M, layer.K)
    dram[codegen.Y] = np.zeros((M, layer.N), np.float32)
    stats = Simulator(cfg, dp, functional=functional).run(prog, dram, codegen.tensor_bits(spec))
    return dram[codegen.Y], stats, t, prog


@pytest.mark.parametrize("wbits, qmax, G, M, K, N, asym", [
    (4, 7, 32, 50, 64, 96, True),  # W4A4, asymmetric int4, several groups
    (4, 127, 64, 197, 384, 200, False),  # W4A8, symmetric int4 (z = 8), N not a multiple of the array
    (8, 127, 384, 37, 384, 40, False),  # W8A8 per channel: one group over K split into several k-tiles
    (4, 7, 128, 600, 256, 64, True),  # more rows than the ACT buffer holds: several m-blocks
])
def test_gemm_bit_exact(asic_cfg, random_layer, wbits, qmax, G, M, K, N, asym):
    rng = np.random.default_rng(M)
    layer = random_layer(rng, wbits, qmax, G, K, N, asym=asym)
    x = (rng.standard_normal((M, K)) * rng.uniform(0.1, 10, (M, 1))).astype(np.float32)
    x[0, :] = 0.0  # an all-zero token: scale floor
    y, stats, t, _ = _run(layer, x, asic_cfg)
    ref = reference.gemm(layer, x)
    assert y.shape == ref.shape and np.array_equal(y.view(np.uint32), ref.view(np.uint32))
    assert stats.macs == M * K * N
    if M == 600:
        assert t.Tm < M  # the case really exercises several m-blocks


def test_a_wrong_weight_nibble_is_caught(asic_cfg, random_layer):
    """The bit-exact comparison is sensitive: one flipped int4 code changes the output."""
    rng = np.random.default_rng(3)
    layer = random_layer(rng, 4, 7, 32, 64, 32)
    x = rng.standard_normal((8, 64)).astype(np.float32)
    codes = layer.codes.copy()
    codes[5, 17] ^= 1
    import dataclasses

    y, *_ = _run(dataclasses.replace(layer, codes=codes), x, asic_cfg)
    assert not np.array_equal(y, reference.gemm(layer, x))


@pytest.mark.parametrize("wbits, qmax, M, K, N", [(4, 7, 256, 1024, 1024), (8, 127, 256, 512, 512),
                                                  (4, 127, 197, 384, 1536)])
def test_cycles_against_roofline(asic_cfg, random_layer, wbits, qmax, M, K, N):
    rng = np.random.default_rng(0)
    layer = random_layer(rng, wbits, qmax, K if wbits == 8 else 128, K, N)
    _, stats, t, prog = _run(layer, np.zeros((M, K), np.float32), asic_cfg, functional=False)
    dp = asic_cfg.datapath(wbits, layer.abits)
    roof = roofline(M, K, N, wbits, dp.act_bits, dp, asic_cfg)
    # Never faster than the bound; within the array's fill overhead ((M + fill) / M) plus the prologue and
    # the epilogue of the last tile (one tile's worth of weight DMA and VCU work) of it.
    assert stats.cycles >= roof["bound_cycles"]
    assert stats.cycles <= roof["bound_cycles"] * (M + asic_cfg.fill_cycles) / M * 1.25 + 20_000
    # MMU busy time is exactly the weight-stationary model: one (m + fill) pass per weight tile.
    n_gemm = sum(isinstance(i, isa.Gemm) for i in prog)
    assert n_gemm == (K // t.Tk) * -(-N // t.Tn)
    assert stats.busy["mmu"] == n_gemm * (M + asic_cfg.fill_cycles)
    # Units overlap: the run is shorter than the units' busy times added up.
    assert stats.cycles < sum(stats.busy.values())


def test_dram_traffic_counts_packed_weights(asic_cfg, random_layer):
    rng = np.random.default_rng(1)
    M, K, N = 16, 256, 64
    layer = random_layer(rng, 4, 7, 64, K, N, bias=False)
    _, stats, _, _ = _run(layer, np.ones((M, K), np.float32), asic_cfg, functional=False)
    expected = N * K // 2 + (K // 64) * N * (4 + 0.5) + M * K * 4 + M * N * 4  # int4 W, scales + zeros, X, Y
    assert stats.dram_bytes == pytest.approx(expected)


def test_groups_overlap_their_fold(asic_cfg, random_layer):
    """With one k-tile per group (W4A4, G = Tk = 128) the MMU runs group g+1 while the VCU folds group g (the
    int32 accumulator alternates per group) and the next weight tile is not queued behind scale loads: after the
    quantize prologue the run is MMU-bound, not MMU + VCU."""
    rng = np.random.default_rng(0)
    M, K, N = 197, 1536, 384
    layer = random_layer(rng, 4, 7, 128, K, N)
    dp = asic_cfg.datapath(4, 4)
    spec = codegen.LayerSpec.of(layer)
    t = codegen.tiling(M, K, N, 128, 4, 4, dp, asic_cfg)
    assert t.Tk == t.G == 128 and t.Tm == M
    prog = codegen.program(spec, t)
    gemms = [i for i in prog if isinstance(i, isa.Gemm)]
    assert [g.acc for g in gemms[:4]] == [0, 2, 0, 2]
    on_chip = frozenset({codegen.X, codegen.Y})  # streamed in and out: the weights are all the DRAM traffic
    stats = Simulator(asic_cfg, dp, functional=False).run(prog, {}, codegen.tensor_bits(spec), on_chip)
    prologue = M * K * 4 / asic_cfg.sram_bytes_per_cycle  # fp32 rows copied in before the first GEMM
    fold = sum(isinstance(i, isa.VFold) for i in prog) * M * t.Tn * 2 / asic_cfg.vcu_lanes
    assert stats.cycles <= prologue + stats.busy["mmu"] + 2_000 < prologue + stats.busy["mmu"] + fold
