"""edgecomp.tvm.patchify: a stride == kernel convolution becomes Reshape/Transpose + MatMul, exactly the same
function (onnxruntime on both graphs), for a float weight initializer and for a computed weight; other
convolutions are left alone."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime")

from edgecomp import onnx_tools  # noqa: E402
from edgecomp.tvm import patchify  # noqa: E402


def _conv_model(strides, pads=(0, 0, 0, 0), computed_weight=False, bias=True):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 4, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")]
    nodes = []
    weight = "w"
    if computed_weight:  # e.g. a DequantizeLinear output: not an initializer
        nodes.append(helper.make_node("Neg", ["w"], ["w_neg"]))
        weight = "w_neg"
    nodes.append(helper.make_node("Conv", ["x", weight] + (["b"] if bias else []), ["y"], kernel_shape=[4, 4],
                                  strides=list(strides), pads=list(pads), name="patch"))
    Ho = (16 + pads[0] + pads[2] - 4) // strides[0] + 1
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, Ho, Ho])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("computed_weight,bias", [(False, True), (True, True), (False, False)])
def test_patch_conv_becomes_one_matmul_with_the_same_outputs(computed_weight, bias):
    model = _conv_model((4, 4), computed_weight=computed_weight, bias=bias)
    new = patchify.rewrite(model)
    onnx.checker.check_model(new, full_check=True)
    ops = [n.op_type for n in new.graph.node]
    assert "Conv" not in ops and ops.count("MatMul") == 1
    assert ("w" in {t.name for t in new.graph.initializer}) == computed_weight  # a float weight is pre-transposed
    x = {"x": np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    want = onnx_tools.session(model).run(None, x)[0]
    got = onnx_tools.session(new).run(None, x)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("strides,pads", [((2, 2), (0, 0, 0, 0)), ((4, 4), (1, 1, 1, 1))])
def test_overlapping_or_padded_convolutions_stay(strides, pads):
    model = _conv_model(strides, pads)
    assert patchify.rewrite(model) is model
