"""Repeated initializers stored once: shrunk only where every consumer broadcasts them back, outputs unchanged."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgecomp import onnx_broadcast, onnx_tools


def _model(consts: dict[str, np.ndarray], nodes: list, x_shape=(1, 4, 8), out="y"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info(out, TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [y], [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _row_repeated(rows=4, width=8, seed=0):
    row = np.random.default_rng(seed).standard_normal((1, 1, width)).astype(np.float32)
    return np.repeat(row, rows, axis=1)  # [1, rows, width], every row the same


def _run(model, x):
    return onnx_tools.run(onnx_tools.session(model, optimize=False), {"x": x})[0]


def test_uniform_axes():
    a = _row_repeated()
    assert onnx_broadcast.uniform_axes(a) == [1]
    assert onnx_broadcast.uniform_axes(np.ones((2, 3), np.float32)) == [0, 1]
    assert onnx_broadcast.uniform_axes(np.arange(6, dtype=np.float32).reshape(2, 3)) == []


def test_shrinks_a_repeated_addend_and_keeps_outputs_bit_identical():
    c = _row_repeated(rows=64, width=32)
    m = _model({"c": c}, [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "c"], ["y"])],
               x_shape=(1, 64, 32))
    x = np.random.default_rng(1).standard_normal((1, 64, 32)).astype(np.float32)
    before = _run(m, x)
    m2, report = onnx_broadcast.shrink_uniform_initializers(m, {"x": x})  # "r" is a node output: measured
    assert [o.name for o in m2.graph.output] == ["y"]  # the shape probe ran on a copy
    (init,) = m2.graph.initializer
    assert list(init.dims) == [1, 1, 32] and report["initializers"] == [{"name": "c", "from": [1, 64, 32],
                                                                          "to": [1, 1, 32]}]
    assert report["bytes_saved"] == 63 * 32 * 4
    assert np.array_equal(_run(m2, x), before)


def test_keeps_what_broadcasting_would_not_restore():
    c = _row_repeated(rows=64, width=32)
    x = np.random.default_rng(2).standard_normal((1, 1, 32)).astype(np.float32)
    # x has one row: the constant is what gives the output its 64 rows
    m = _model({"c": c}, [helper.make_node("Mul", ["x", "c"], ["y"])], x_shape=(1, 1, 32))
    _, report = onnx_broadcast.shrink_uniform_initializers(m, {"x": x})
    assert report["initializers"] == [] and list(m.graph.initializer[0].dims) == [1, 64, 32]


def test_keeps_constants_read_by_non_elementwise_ops():
    c = np.ones((32, 64), np.float32)  # uniform along both axes, but a MatMul reads it
    m = _model({"c": c}, [helper.make_node("MatMul", ["x", "c"], ["y"])], x_shape=(1, 4, 32))
    _, report = onnx_broadcast.shrink_uniform_initializers(m, {"x": np.ones((1, 4, 32), np.float32)})
    assert report["initializers"] == []


def test_every_consumer_must_agree():
    c = _row_repeated(rows=64, width=32)
    m = _model({"c": c}, [helper.make_node("Add", ["x", "c"], ["a"]), helper.make_node("Sub", ["c", "a"], ["b"]),
                          helper.make_node("MatMul", ["b", "w"], ["y"])],
               x_shape=(1, 64, 32))
    m.graph.initializer.append(numpy_helper.from_array(np.eye(32, dtype=np.float32), "w"))
    x = np.random.default_rng(3).standard_normal((1, 64, 32)).astype(np.float32)
    before = _run(m, x)
    _, report = onnx_broadcast.shrink_uniform_initializers(m, {"x": x})
    assert [r["to"] for r in report["initializers"]] == [[1, 1, 32]]  # Add and Sub both broadcast it back
    assert np.array_equal(_run(m, x), before)


def test_symbolic_inputs_are_left_alone():
    c = _row_repeated(rows=64, width=32)
    m = _model({"c": c}, [helper.make_node("Add", ["x", "c"], ["y"])], x_shape=("batch", 64, 32))
    _, report = onnx_broadcast.shrink_uniform_initializers(m, {"x": np.ones((1, 64, 32), np.float32)})
    assert report["initializers"] == []


def test_graphs_with_control_flow_are_left_alone():
    c = _row_repeated(rows=64, width=32)
    branch = helper.make_graph([helper.make_node("Identity", ["c"], ["b"])], "branch", [],
                               [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 64, 32])])
    m = _model({"c": c, "flag": np.array(True)},
               [helper.make_node("Add", ["x", "c"], ["a"]),
                helper.make_node("If", ["flag"], ["y"], then_branch=branch, else_branch=branch)],
               x_shape=(1, 64, 32))
    _, report = onnx_broadcast.shrink_uniform_initializers(m, {"x": np.ones((1, 64, 32), np.float32)})
    assert report["initializers"] == [] and list(m.graph.initializer[0].dims) == [1, 64, 32]
