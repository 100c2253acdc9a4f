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
