"""int4 embedding tables: torch forward = F.embedding on the dequantized table; export carries packed int4 rows
(com.microsoft.GatherBlockQuantized) that onnxruntime gathers to the same numbers; tied Parameters survive."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgecomp import onnx_tools
from edgecomp.errors import ConfigError
from edgecomp.quant.embedding import QuantEmbedding, quantize_embeddings
from edgecomp.quant.onnx_export import finalize
from edgecomp.quant.primitives import WeightGrid, dequantize_weight, rtn, unpack_int4

V, D = 1000, 64


class Tiny(nn.Module):
    def __init__(self, tied: bool = False):
        super().__init__()
        self.emb = nn.Embedding(V, D, padding_idx=0)
        self.fc = nn.Linear(D, V if tied else 16, bias=not tied)
        if tied:
            self.fc.weight = self.emb.weight

    def forward(self, ids):
        return self.fc(self.emb(ids))


def _export(module: nn.Module, ids: torch.Tensor):
    buf = io.BytesIO()
    torch.onnx.export(module, (ids,), buf, input_names=["ids"], output_names=["y"], dynamo=False, opset_version=17,
                      custom_opsets={"com.microsoft": 1, "edgecomp": 1})
    return finalize(onnx.load_from_string(buf.getvalue()))


GRIDS = [WeightGrid(4, symmetric=s, group_size=g) for s in (True, False) for g in (32, 64)]


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{'sym' if g.symmetric else 'asym'}_g{g.group_size}")
def test_exported_table_is_packed_int4_and_onnxruntime_matches(grid):
    torch.manual_seed(0)
    m = Tiny().eval()
    w = m.emb.weight.detach().clone()
    reports = quantize_embeddings(m, lambda name, emb: grid)
    assert isinstance(m.emb, QuantEmbedding)
    groups = D // grid.group_size
    zp_bytes = 0 if grid.symmetric else V * -(-groups // 2)
    assert reports == [{"layer": "emb", "kind": "embedding", "w_bits": 4, "group": grid.group_size,
                        "symmetric": grid.symmetric, "weight_sqnr_db": reports[0]["weight_sqnr_db"],
                        "bytes": V * D // 2 + 4 * V * groups + zp_bytes}]
    assert 15 < reports[0]["weight_sqnr_db"] < 30
    codes, scale, zero = rtn(w, grid)
    assert torch.equal(m.emb.weight_dq, dequantize_weight(codes, scale, zero, grid))
    assert not m.emb.weight_dq[0].any()  # the (zero) padding row stays exactly zero

    ids = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(1))
    ids[0, 0] = 0
    with torch.no_grad():
        ref = m(ids).numpy()
        np.testing.assert_array_equal(ref, m.fc(F.embedding(ids, m.emb.weight_dq)).numpy())
    model = _export(m, ids)

    (node,) = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"]
    assert node.domain == "com.microsoft" and node.input[1] == "ids" and len(node.input) == 3 + (not grid.symmetric)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"bits": 4, "block_size": grid.group_size, "gather_axis": 0, "quantize_axis": 1}
    inits = {t.name: t for t in model.graph.initializer}
    data = numpy_helper.to_array(inits[node.input[0]])
    assert data.dtype == np.uint8 and data.shape == (V, D // 2)
    assert torch.equal(unpack_int4(torch.from_numpy(data), D), codes)
    if not grid.symmetric:
        zp = inits[node.input[3]]
        assert zp.data_type == TensorProto.UINT8 and list(zp.dims) == [V, -(-groups // 2)]
    # no float copy of the table anywhere (initializer or Constant node)
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.name == "value"]
    assert not any(t.data_type == TensorProto.FLOAT and V * D <= np.prod(t.dims) for t in tensors)

    got = onnx_tools.session(model).run(None, {"ids": ids.numpy()})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_tied_parameter_is_left_intact():
    torch.manual_seed(2)
    m = Tiny(tied=True).eval()
    p = m.emb.weight
    before = p.detach().clone()
    ids = torch.randint(0, V, (1, 5))
    with torch.no_grad():
        head = m.fc(torch.ones(1, D))
    quantize_embeddings(m, lambda name, emb: WeightGrid(4, symmetric=False, group_size=32))
    assert isinstance(m.emb, QuantEmbedding)
    assert m.fc.weight is p and p.requires_grad and torch.equal(p.detach(), before)
    assert [n for n, _ in m.named_parameters()] == ["fc.weight"]  # the table is only the head's now
    with torch.no_grad():
        assert torch.equal(m.fc(torch.ones(1, D)), head)
        np.testing.assert_allclose(m(ids).numpy(), (m.emb.weight_dq[ids] @ p.T).numpy(), rtol=1e-6, atol=1e-6)


def test_grid_choice_shared_modules_and_unexportable_grids():
    shared = nn.Embedding(128, 32)
    m = nn.ModuleDict({"a": shared, "b": shared, "pos": nn.Embedding(16, 32), "head": nn.Linear(32, 4)})
    seen = []

    def grid_for(name, emb):
        seen.append(name)
        return None if name == "pos" else WeightGrid(4, symmetric=True, group_size=16)

    reports = quantize_embeddings(m, grid_for)
    assert seen == ["a", "pos"] and [r["layer"] for r in reports] == ["a"]
    assert isinstance(m["a"], QuantEmbedding) and m["a"] is m["b"] and type(m["pos"]) is nn.Embedding
    with pytest.raises(ConfigError, match="power of two"):
        QuantEmbedding(nn.Embedding(10, 48), WeightGrid(4, group_size=0))  # one block of 48
    with pytest.raises(ConfigError, match="power of two"):
        QuantEmbedding(nn.Embedding(10, 64), WeightGrid(4, group_size=8))
    with pytest.raises(ConfigError, match="does not divide"):
        QuantEmbedding(nn.Embedding(10, 48), WeightGrid(4, group_size=32))
    with pytest.raises(ConfigError, match="4 bits or symmetric 8 bits"):
        QuantEmbedding(nn.Embedding(10, 64), WeightGrid(8, symmetric=False, group_size=32))
    with pytest.raises(ConfigError, match="float-zero"):
        QuantEmbedding(nn.Embedding(10, 64), WeightGrid(4, group_size=32, float_zero=True))


def test_a_table_shipped_on_an_8_bit_grid_exports_8_bit_rows_that_onnxruntime_matches():
    from edgecomp.config import QuantizeConfig
    from edgecomp.quant.plan import embedding_grid

    V, D = 1024, 64
    gen = torch.Generator().manual_seed(3)
    q = torch.randint(-127, 128, (V, D // 32, 32), generator=gen).float()
    q[..., 0] = 127
    d = (torch.rand(V, D // 32, 1, generator=gen) * 0.01 + 1e-3).half().float()
    emb = nn.Embedding(V, D)
    with torch.no_grad():
        emb.weight.copy_((q * d).reshape(V, D))
    grid = embedding_grid("emb", emb, QuantizeConfig(scheme="w4a8"))
    assert grid == WeightGrid(8, symmetric=True, group_size=32)
    m = QuantEmbedding(emb, grid)
    assert torch.equal(m.weight_dq, emb.weight.detach()) and m.nbytes == V * D + V * D // 32 * 4
    ids = torch.tensor([[0, 5, 1023, 17]])
    model = _export(m, ids)
    node = next(n for n in model.graph.node if n.op_type == "GatherBlockQuantized")
    assert {a.name: a.i for a in node.attribute if a.name == "bits"} == {"bits": 8}
    got = onnx_tools.session(model).run(None, {"ids": ids.numpy()})[0]
    np.testing.assert_array_equal(got, emb(ids).detach().numpy())


def test_an_8_bit_scheme_stores_the_vocabulary_table_as_int8_groups_onnxruntime_matches():
    """W8A8: the table is symmetric int8 in groups (it was left fp32: MiniLM's W8A8 build was 1.5x smaller);
    each value moves by at most half its group's step, and onnxruntime gathers exactly the fake-quant rows."""
    from edgecomp.config import QuantizeConfig
    from edgecomp.quant.plan import embedding_grid

    V, D = 1024, 256
    emb = nn.Embedding(V, D)
    with torch.no_grad():
        emb.weight.copy_(torch.randn(V, D, generator=torch.Generator().manual_seed(5)))
    assert embedding_grid("emb", nn.Embedding(16, D), QuantizeConfig(scheme="w8a8")) is None  # small: float
    grid = embedding_grid("emb", emb, QuantizeConfig(scheme="w8a8"))
    assert grid == WeightGrid(8, symmetric=True, group_size=128)
    m = QuantEmbedding(emb, grid)
    assert m.nbytes == V * D + V * D // 128 * 4
    step = emb.weight.detach().abs().reshape(V, D // 128, 128).amax(-1, keepdim=True) / 127
    err = (m.weight_dq - emb.weight.detach()).reshape(V, D // 128, 128).abs()
    assert bool(torch.all(err <= step / 2 + 1e-6)) and float(err.max()) > 0
    ids = torch.tensor([[0, 5, 1023, 17]])
    model = _export(m, ids)
    node = next(n for n in model.graph.node if n.op_type == "GatherBlockQuantized")
    assert {a.name: a.i for a in node.attribute if a.name == "bits"} == {"bits": 8}
    got = onnx_tools.session(model).run(None, {"ids": ids.numpy()})[0]
    np.testing.assert_allclose(got, m(ids).detach().numpy(), rtol=1e-6, atol=1e-7)
