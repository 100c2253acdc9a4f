from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp.errors import UnsupportedOpError
from edgecomp.specs import TensorSpec
from edgecomp.tvm import frontend


def _reshape_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(1, 6), "w")
    shape = numpy_helper.from_array(np.array([2, 3], np.int64), "shape")
    nodes = [helper.make_node("Add", ["x", "w"], ["s"]), helper.make_node("Reshape", ["s", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w, shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_shape_constants_are_inlined_and_weights_stay_params():
    mod, params, _ = frontend.to_relax(_reshape_model(), (TensorSpec("x", (1, 6)),))
    assert len(params) == 1 and params[0].dtype == np.float32  # only the float weight is a parameter
    assert len(mod["main"].params) == 2


def test_unsupported_op_is_named():
    model = _reshape_model()
    model.graph.node.append(helper.make_node("Celu", ["y"], ["z"], name="odd"))
    with pytest.raises(UnsupportedOpError, match=r"Celu \(node 'odd'\)"):
        frontend.check_ops(model)
    onnx.checker.check_model(_reshape_model())


def _gemm_model(shared: bool):
    """y = x @ wᵀ + b (Gemm transB=1); with ``shared``, w also feeds a second (MatMul) branch."""
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])]
    w = numpy_helper.from_array(rng.standard_normal((3, 5)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="fc")]
    if shared:
        outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 3]))
        nodes.append(helper.make_node("MatMul", ["w", "wt"], ["z"]))
        wt = numpy_helper.from_array(rng.standard_normal((5, 3)).astype(np.float32), "wt")
        init = [w, b, wt]
    else:
        init = [w, b]
    graph = helper.make_graph(nodes, "g", [x], outs, initializer=init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("shared", [False, True])
def test_gemm_weights_are_transposed_once_at_build_not_per_call(shared):
    import onnxruntime as ort

    model = _gemm_model(shared)
    rewritten = frontend._pretranspose_gemm_weights(model)
    gemm = next(n for n in rewritten.graph.node if n.op_type == "Gemm")
    assert [a.i for a in gemm.attribute if a.name == "transB"] == [0]
    inits = {t.name: numpy_helper.to_array(t) for t in rewritten.graph.initializer}
    assert inits[gemm.input[1]].shape == (5, 3)
    assert ("w" in inits and inits["w"].shape == (3, 5)) == shared  # the other reader keeps the original
    feeds = {"x": np.random.default_rng(1).standard_normal((2, 5)).astype(np.float32)}
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    got = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    mod, _, _ = frontend.to_relax(model, (TensorSpec("x", (2, 5)),))
    assert "permute_dims" not in mod.script()  # no per-call transpose of the Gemm weight
