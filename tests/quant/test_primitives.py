"""Weight grids, round-to-nearest, int4 packing and SQNR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.quant.primitives import (
    WeightGrid,
    dequantize_weight,
    pack_int4,
    quantize_weight,
    rtn,
    shipped_group,
    sqnr_db,
    unpack_int4,
    weight_qparams,
)


def _w(N=16, K=64, seed=0):
    return torch.randn(N, K, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("bits", [1, 9, 16])
def test_grid_rejects_unsupported_bits(bits):
    with pytest.raises(ConfigError, match=f"unsupported weight bit-width {bits}") as e:
        WeightGrid(bits)
    assert "2..8" in e.value.hint


def test_grid_groups_and_qmax():
    assert WeightGrid(4).qmax == 15 and WeightGrid(8).qmax == 255
    assert WeightGrid(4).groups(96) == 1 and WeightGrid(4, group_size=32).groups(96) == 3
    with pytest.raises(ConfigError, match="group size 32 .*K=100"):
        WeightGrid(4, group_size=32).groups(100)
    with pytest.raises(ConfigError):
        WeightGrid(4, group_size=-1)


@pytest.mark.parametrize("grid", [WeightGrid(4), WeightGrid(4, group_size=16), WeightGrid(3, symmetric=True),
                                  WeightGrid(8, group_size=32), WeightGrid(2, symmetric=True, group_size=8)])
def test_rtn_error_within_half_step(grid):
    w = _w()
    codes, scale, zero = rtn(w, grid)
    G = grid.groups(w.shape[1])
    assert codes.dtype == torch.uint8 and int(codes.max()) <= grid.qmax
    assert scale.shape == zero.shape == (w.shape[0], G) and scale.dtype == w.dtype
    assert torch.equal(zero, zero.round()) and float(zero.min()) >= 0 and float(zero.max()) <= grid.qmax
    w_hat = dequantize_weight(codes, scale, zero, grid)
    step = scale.repeat_interleave(w.shape[1] // G, dim=1)
    assert bool(((w - w_hat).abs() <= step / 2 * (1 + 1e-5)).all())


def test_symmetric_grid_matches_matmulnbits_convention():
    w = _w(4, 32)
    scale, zero = weight_qparams(w, WeightGrid(4, symmetric=True))
    assert torch.equal(zero, torch.full_like(zero, 8.0))
    assert torch.allclose(scale[:, 0], w.abs().amax(dim=1) / 7)
    codes = quantize_weight(w, scale, zero, WeightGrid(4, symmetric=True))
    # The largest magnitude lands on code 8 +- 7, never on the unused code 0.
    assert int(codes.min()) >= 1


def test_asymmetric_grid_keeps_zero_exact_and_handles_zero_groups():
    w = _w(4, 32)
    w[0] = 0.0  # an all-zero row: scale must not be 0
    w[1, 5] = 0.0
    w[2] = w[2].abs() + 1.0  # all positive: the range is stretched down to 0
    grid = WeightGrid(4)
    codes, scale, zero = rtn(w, grid)
    assert bool(torch.isfinite(scale).all()) and bool((scale > 0).all())
    w_hat = dequantize_weight(codes, scale, zero, grid)
    assert bool((w_hat[0] == 0).all()) and float(w_hat[1, 5]) == 0.0
    assert float(zero[2, 0]) == 0.0 and math.isclose(float(scale[2, 0]), float(w[2].max()) / 15, rel_tol=1e-6)


def test_rounding_is_half_to_even():
    grid = WeightGrid(8, symmetric=True)
    scale, zero = torch.ones(1, 1), torch.full((1, 1), 128.0)
    codes = quantize_weight(torch.tensor([[0.5, 1.5, 2.5, -0.5, -1.5, 300.0]]), scale, zero, grid)
    assert codes.tolist() == [[128, 130, 130, 128, 126, 255]]


def test_dequantize_uses_scale_dtype():
    codes, scale, zero = rtn(_w(), WeightGrid(4, group_size=16))
    assert dequantize_weight(codes, scale.double(), zero, WeightGrid(4, group_size=16)).dtype == torch.float64


def test_pack_int4_layout_matches_onnx_uint4():
    from onnx import TensorProto, numpy_helper

    codes = torch.randint(0, 16, (3, 10), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (3, 5) and packed.dtype == torch.uint8
    assert int(pack_int4(torch.tensor([1, 2], dtype=torch.uint8))[0]) == 0x21  # low nibble = even index
    t = TensorProto(data_type=TensorProto.UINT4, dims=[3, 10], raw_data=packed.numpy().tobytes())
    assert np.array_equal(numpy_helper.to_array(t).astype(np.uint8), codes.numpy())
    assert torch.equal(unpack_int4(packed, 10), codes)
    assert torch.equal(unpack_int4(packed, 9), codes[:, :9])


def test_pack_int4_rejects_bad_input():
    with pytest.raises(ConfigError, match="even"):
        pack_int4(torch.zeros(2, 3, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="0..15"):
        pack_int4(torch.tensor([3, 16], dtype=torch.uint8))
    with pytest.raises(ConfigError):
        unpack_int4(torch.zeros(2, 4, dtype=torch.uint8), 10)


def test_sqnr_db():
    ref = torch.ones(100, dtype=torch.float64)
    assert sqnr_db(ref, ref) == math.inf
    assert math.isclose(sqnr_db(ref, ref + 0.1), 20.0, rel_tol=1e-9)
    assert sqnr_db(torch.zeros(3), torch.ones(3)) == -math.inf
    w = _w()
    assert sqnr_db(w, dequantize_weight(*rtn(w, WeightGrid(8)), WeightGrid(8))) > sqnr_db(
        w, dequantize_weight(*rtn(w, WeightGrid(4)), WeightGrid(4))) + 20


def _q4_1(N: int, K: int, g: int, seed: int = 0) -> torch.Tensor:
    """A weight as GGUF Q4_1 dequantizes it: d q + m per group of g, d and m float16, q in 0..15."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (N, K // g, g), generator=gen).float()
    q[..., 0], q[..., 1] = 0, 15  # Q4_1 puts each group's min at code 0 and its max at 15
    d = (torch.rand(N, K // g, 1, generator=gen) * 0.05 + 1e-3).half().float()
    m = (torch.randn(N, K // g, 1, generator=gen) * 0.1).half().float()
    return (d * q + m).reshape(N, K)


def test_shipped_group_finds_the_q4_1_grid_and_nothing_else():
    w = _q4_1(16, 128, 32)
    assert shipped_group(w) == 32
    assert shipped_group(_q4_1(16, 128, 64)) == 64
    assert shipped_group(torch.randn(16, 128)) == 0
    assert shipped_group(w + 1e-3 * torch.randn(16, 128)) == 0


@pytest.mark.parametrize("method", ["rtn", "gptq"])
def test_requantizing_a_shipped_grid_onto_itself_is_lossless(method):
    from edgecomp.quant.gptq import gptq

    w = _q4_1(24, 128, 32, seed=1)
    grid = WeightGrid(4, group_size=32, float_zero=True)
    if method == "rtn":
        codes, scale, zero = rtn(w, grid)
    else:
        x = torch.randn(256, 128, generator=torch.Generator().manual_seed(2))
        H = x.T @ x / 256
        codes, scale, zero = gptq(w, H, grid)
    err = (dequantize_weight(codes, scale, zero, grid) - w).abs().max()
    assert float(err) <= 1e-6 * float(w.abs().max())
    # the integer-zero grid of the same group size cannot hold it (its range is widened to include 0)
    codes, scale, zero = rtn(w, WeightGrid(4, group_size=32))
    assert float((dequantize_weight(codes, scale, zero, WeightGrid(4, group_size=32)) - w).abs().max()) > 1e-4


def test_float_zero_grid_is_asymmetric_and_covers_each_group_exactly():
    with pytest.raises(ConfigError, match="float zero"):
        WeightGrid(4, symmetric=True, float_zero=True)
    w = torch.tensor([[0.5, 0.75, 2.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    grid = WeightGrid(4, group_size=4, float_zero=True)
    codes, scale, zero = rtn(w, grid)
    assert codes[0].tolist() == [0, 2, 15, 5] and codes[1].tolist() == [0, 0, 0, 0]
    torch.testing.assert_close(dequantize_weight(codes, scale, zero, grid)[1], w[1])
