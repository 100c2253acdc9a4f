"""Pointwise convolutions with build-time packed weights (edgecomp.tvm.prepack): which shapes are packed, and
that the packed GEMM gives onnxruntime's outputs on EfficientNet-Lite0's 7x7-stage shapes."""

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
    assert "conv2d_packed" in compiled.schedules.values(), compiled.schedules
    x = rng.standard_normal((1, cin, 7, 7)).astype(np.float32)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(p) for p in compiled.params]).numpy()
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
