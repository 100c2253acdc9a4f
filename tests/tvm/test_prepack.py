"""GEMMs with build-time packed weights (edgecomp.tvm.prepack): which shapes are packed, and that packed
pointwise convolutions (EfficientNet-Lite0's 7x7-stage shapes) and matmuls (ViT rows, a batch) give
onnxruntime's outputs with their epilogues fused."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp.specs import TensorSpec

tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402

from edgecomp.targets import load_target  # noqa: E402
from edgecomp.tvm import frontend, prepack  # noqa: E402
from edgecomp.tvm.compile import compile_relax  # noqa: E402


@pytest.mark.parametrize(("pixels", "channels", "want"), [
    (49, 1152, (7, 3, 16)),  # 7x7 stage expansion: 7 rows x 3 vectors
    (49, 320, (7, 2, 16)),  # 48 does not divide 320
    (3136, 24, (7, 3, 8)),  # 3 half-width vectors
    (784, 40, (4, 5, 8)),  # 5 half-width vectors
    (196, 112, (7, 2, 8)),  # 7 full-width vectors: no tile of >= 12 accumulators; 14 half-width ones
    (12544, 16, (8, 2, 8)),  # one full-width vector: (8, 1) is below 12 accumulators
    (12544, 12, None),  # not a whole half-width vector
])
def test_tile_divides_exactly(pixels, channels, want):
    from edgecomp.tvm.cpu_schedule import _vector_lanes

    tgt = load_target("x86").tvm_target()
    if _vector_lanes(tgt) != 16:
        pytest.skip("the tiles above are for 16-lane (AVX-512) vectors")
    assert prepack.tile(pixels, channels, tgt) == want


@pytest.mark.parametrize(("cin", "cout"), [(192, 1152), (1152, 320)])
def test_packed_pointwise_matches_onnxruntime(cin, cout):
    import onnxruntime as ort

    rng = np.random.default_rng(cin)
    w = numpy_helper.from_array((rng.standard_normal((cout, cin, 1, 1)) * 0.05).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")
    lo, hi = (numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.0, "lo"), (6.0, "hi")))
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
    graph = helper.make_graph(nodes, "pw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 7, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 7, 7])],
                              initializer=[w, b, lo, hi])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    target = load_target("x86")
    mod, params, _ = frontend.to_relax(model, (TensorSpec("x", (1, cin, 7, 7)),), target.tvm_target())
    compiled = compile_relax(mod, params, target)
    assert "packed" in compiled.schedules.values(), compiled.schedules
    x = rng.standard_normal((1, cin, 7, 7)).astype(np.float32)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(p) for p in compiled.params]).numpy()
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("rows", "cols", "want"), [
    (197, 1536, True),  # ViT-S: the tiler pads the 197 rows, its column tile divides 1536
    (128, 384, True),
    (1, 1000, False),  # a GEMV keeps the tiler's half-width path
    (197, 100, False),  # no column tile divides 100
])
def test_matmul_tile(rows, cols, want):
    got = prepack.matmul_tile(rows, cols, load_target("x86").tvm_target())
    assert (got is not None) == want
    if got is not None:
        assert cols % (got[1] * got[2]) == 0


@pytest.mark.parametrize("x_shape", [(197, 384), (1, 197, 384), (2, 40, 384)])
def test_packed_matmul_with_epilogue_matches_onnxruntime(x_shape):
    """MatMul by a weight + bias + residual: 197 rows exercise the tiler's row padding, a leading batch of 2
    an outer loop; the epilogue must fuse into the packed function."""
    import onnxruntime as ort

    rng = np.random.default_rng(len(x_shape))
    n = 256
    w = numpy_helper.from_array((rng.standard_normal((384, n)) * 0.05).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")
    out_shape = [*x_shape[:-1], n]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Add", ["a", "r"], ["y"])]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape)),
                                            helper.make_tensor_value_info("r", TensorProto.FLOAT, out_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    target = load_target("x86")
    inputs = (TensorSpec("x", x_shape), TensorSpec("r", tuple(out_shape)))
    mod, params, _ = frontend.to_relax(model, inputs, target.tvm_target())
    compiled = compile_relax(mod, params, target)
    packed = [f for f, rule in compiled.schedules.items() if rule == "packed"]
    assert len(packed) == 1 and "add" in packed[0], compiled.schedules  # bias and residual fused
    x = rng.standard_normal(x_shape).astype(np.float32)
    r = rng.standard_normal(out_shape).astype(np.float32)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(r), *[tvm.runtime.tensor(p) for p in compiled.params])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got.numpy(), sess.run(None, {"x": x, "r": r})[0], rtol=1e-5, atol=1e-4)
