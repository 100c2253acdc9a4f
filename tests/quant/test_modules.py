"""Fake-quant modules: torch forward = dequantized product; export carries integer weights that
onnxruntime runs to the same numbers."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgecomp import onnx_tools
from edgecomp.quant.modules import ActQuant, QuantConv2d, QuantizedWeight, QuantLinear
from edgecomp.quant.onnx_export import finalize
from edgecomp.quant.primitives import WeightGrid, rtn


def _qweight(w: torch.Tensor, grid: WeightGrid) -> QuantizedWeight:
    codes, scale, zero = rtn(w.reshape(w.shape[0], -1), grid)
    return QuantizedWeight(codes, scale, zero, grid)


def _export(module: nn.Module, x: torch.Tensor):
    buf = io.BytesIO()
    torch.onnx.export(module, (x,), buf, input_names=["x"], output_names=["y"], dynamo=False, opset_version=17,
                      custom_opsets={"com.microsoft": 1, "edgecomp": 1})
    return finalize(onnx.load_from_string(buf.getvalue()))


def _ort(model, x: torch.Tensor) -> np.ndarray:
    return onnx_tools.session(model).run(None, {"x": x.numpy()})[0]


GRIDS = [WeightGrid(4, symmetric=False, group_size=32), WeightGrid(4, symmetric=True, group_size=64),
         WeightGrid(3, symmetric=False, group_size=32), WeightGrid(8, symmetric=True, group_size=0),
         WeightGrid(4, group_size=32, float_zero=True)]


@pytest.mark.parametrize("a_group", [0, 32])
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"w{g.bits}{'s' if g.symmetric else 'a'}g{g.group_size}"
                         f"{'f' if g.float_zero else ''}")
def test_linear_exports_integer_weights_that_onnxruntime_matches(grid, a_group):
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(128, 48)
    w = torch.randn(48, 128, generator=g) + 0.5  # off-centre, so float and integer zero points differ
    m = QuantLinear(_qweight(w, grid), torch.randn(48, generator=g), ActQuant("int", 8, (-1,), group=a_group)).eval()
    x = torch.randn(1, 5, 128, generator=g)
    with torch.no_grad():
        ref = m(x).numpy()
        expect = nn.functional.linear(m.act(x), m.weight_dq, m.bias).numpy()
    np.testing.assert_allclose(ref, expect, rtol=1e-6, atol=1e-6)
    model = _export(m, x)
    ops = {n.op_type for n in model.graph.node}
    init_types = {t.data_type for t in model.graph.initializer}
    if grid.bits <= 4:
        assert "MatMulNBits" in ops
        assert onnx.TensorProto.UINT8 in init_types
    else:
        assert "DequantizeLinear" in ops and onnx.TensorProto.INT8 in init_types
    assert not any(t.data_type == onnx.TensorProto.FLOAT and list(t.dims) == [48, 128] for t in model.graph.initializer)
    np.testing.assert_allclose(_ort(model, x), ref, rtol=1e-4, atol=1e-4)
    del lin


CONV_CASES = [(grid, groups) for grid in (WeightGrid(4, False, 0), WeightGrid(4, True, 0), WeightGrid(8, True, 0))
              for groups in (1, 8)] + [(WeightGrid(4, False, 24), 1), (WeightGrid(4, True, 24), 1)]  # K = 72


@pytest.mark.parametrize(("grid", "groups"), CONV_CASES,
                         ids=lambda v: v if isinstance(v, int) else f"{'int' if v.symmetric else 'uint'}{v.bits}"
                         f"-g{v.group_size}")
def test_conv_exports_int4_dequantize_linear(grid, groups):
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(8, 16 if groups == 1 else 8, 3, padding=1, groups=groups)  # K = 72: three groups of 24
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    m = QuantConv2d(conv, _qweight(conv.weight.detach(), grid), ActQuant("int", 8, (1, 2, 3))).eval()
    x = torch.randn(1, 8, 6, 6, generator=g)
    with torch.no_grad():
        ref = m(x).numpy()
    model = _export(m, x)
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(dq) == 1
    w_init = {t.name: t for t in model.graph.initializer}[dq[0].input[0]]
    want = {4: onnx.TensorProto.INT4 if grid.symmetric else onnx.TensorProto.UINT4, 8: onnx.TensorProto.INT8}
    assert w_init.data_type == want[grid.bits]
    assert len(w_init.raw_data) == (conv.weight.numel() + 1) // 2 * (2 if grid.bits == 8 else 1)
    np.testing.assert_allclose(_ort(model, x), ref, rtol=1e-4, atol=1e-4)


def test_quantized_weight_bytes_count_packed_storage():
    w = torch.randn(64, 256)
    qw = _qweight(w, WeightGrid(4, symmetric=False, group_size=128))
    assert qw.nbytes == 64 * 128 + 4 * 64 * 2 + 64 * 2 // 2


def test_grouped_activations_scale_each_block_of_a_token_on_its_own():
    x = torch.cat([torch.full((1, 2, 32), 0.01), torch.full((1, 2, 32), 100.0)], dim=-1)
    x[..., 0] = 0.013  # representable only with a block scale: per token, 100/127 swallows it
    per_token, grouped = ActQuant("int", 8, (-1,)), ActQuant("int", 8, (-1,), group=32)
    assert float(per_token(x)[0, 0, 0]) == 0.0
    assert float((grouped(x) - x).abs().max()) <= 100.0 / 127 / 2 + 1e-6
    assert float((grouped(x)[..., :32] - x[..., :32]).abs().max()) <= 0.013 / 127 / 2 + 1e-9
    with pytest.raises(ValueError, match="per-token"):
        ActQuant("int", 8, (1, 2, 3), group=32)
