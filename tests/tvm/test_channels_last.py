"""Channels-last conversion (edgecomp.tvm.channels_last): a small MobileNet-style ONNX block imported for a CPU
target runs NHWC with its weight transposes done once at build, and gives onnxruntime's outputs."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp.specs import TensorSpec

tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402

from edgecomp.tvm import channels_last, frontend  # noqa: E402
from edgecomp.tvm.compile import compile_relax  # noqa: E402


def _block_model(quantized: bool = False):
    """stem 3x3/2 -> ReLU6 -> depthwise 3x3 -> ReLU6 -> 1x1 (+ residual) -> global average pool -> Gemm.
    ``quantized``: the 1x1 weight is an int8 DequantizeLinear (so the block must stay NCHW)."""
    rng = np.random.default_rng(0)

    def init(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [init("w0", 32, 3, 3, 3), init("b0", 32), init("wd", 32, 1, 3, 3), init("bd", 32),
             init("b1", 32), init("fc", 32, 10), init("fcb", 10),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6.0, np.float32), "hi")]
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c0", "lo", "hi"], ["r0"]),
        helper.make_node("Conv", ["r0", "wd", "bd"], ["cd"], group=32, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["cd", "lo", "hi"], ["rd"]),
    ]
    if quantized:
        q = rng.integers(-127, 128, (32, 32, 1, 1)).astype(np.int8)
        inits += [numpy_helper.from_array(q, "w1q"), numpy_helper.from_array(np.array(0.01, np.float32), "s1")]
        nodes.append(helper.make_node("DequantizeLinear", ["w1q", "s1"], ["w1"]))
    else:
        inits.append(init("w1", 32, 32, 1, 1))
    nodes += [
        helper.make_node("Conv", ["rd", "w1", "b1"], ["c1"]),
        helper.make_node("Add", ["c1", "r0"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 28, 28])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _calls(mod, name):
    found = []

    def visit(e):
        if isinstance(e, relax.Call) and getattr(e.op, "name", "") == name:
            found.append(e)

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return found


def test_block_runs_channels_last_and_matches_onnxruntime():
    import onnxruntime as ort

    from edgecomp.targets import load_target

    target = load_target("x86")
    model = _block_model()
    inputs = (TensorSpec("x", (1, 3, 28, 28)),)
    mod, params, _ = frontend.to_relax(model, inputs, target.tvm_target())
    convs = _calls(mod, "relax.nn.conv2d")
    assert len(convs) == 2 and all(str(c.attrs.data_layout) == "NHWC" for c in convs)
    # the 1x1 conv (196 pixels, 32 channels: 7 rows x 2 vectors) reads a weight packed at build
    packed = [gv for gv in mod.get_global_vars() if gv.name_hint.startswith("conv2d_packed")]
    assert len(packed) == 1
    assert not _calls(mod, "relax.isnan")  # the clip bounds' NaN guards were folded too
    main = mod["main"]
    param_vars = set(main.params[1:])
    transposed = [c for c in _calls(mod, "relax.permute_dims") if c.args[0] in param_vars]
    assert transposed == [], "weight transposes must be done at build"
    # one activation transpose in (NCHW input), one before the NCHW-shaped pooling output
    assert len(_calls(mod, "relax.permute_dims")) <= 2
    assert len(params) == len(main.params) - 1
    assert any(p.shape == (3, 3, 3, 32) for p in params)  # HWIO stem weight
    w1 = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w1"))  # OIHW
    assert any(np.array_equal(p, w1[:, :, 0, 0].T[None]) for p in params if p.shape == (1, 32, 32))

    compiled = compile_relax(mod, params, target)
    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    x = np.random.default_rng(1).standard_normal((1, 3, 28, 28)).astype(np.float32)
    got = vm["main"](tvm.runtime.tensor(x), *[tvm.runtime.tensor(p) for p in params]).numpy()
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, sess.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)
    assert {"conv2d_nhwc", "packed"} <= set(compiled.schedules.values())


def test_dequantized_weights_keep_nchw():
    from edgecomp.targets import load_target

    mod, _, _ = frontend.to_relax(_block_model(quantized=True), (TensorSpec("x", (1, 3, 28, 28)),),
                                  load_target("x86").tvm_target())
    assert {str(c.attrs.data_layout) for c in _calls(mod, "relax.nn.conv2d")} == {"NCHW"}


def test_fold_parameter_layouts_dedupes_and_drops_unused():
    """permute_dims / reshape of parameters become parameters holding the result; equal results share
    one parameter; a parameter nothing reads any more is dropped; inputs are untouched."""
    rng = np.random.default_rng(2)
    w, b = rng.standard_normal((4, 3)).astype(np.float32), np.float32(6.0) * np.ones((), np.float32)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2, 4), "float32"))
    wv = relax.Var("w", relax.TensorType((4, 3), "float32"))
    bv = relax.Var("b", relax.TensorType((), "float32"))
    with bb.function("main", [x, wv, bv], {"num_input": 1}):
        with bb.dataflow():
            wt = bb.emit(relax.op.permute_dims(wv, [1, 0]))
            wtt = bb.emit(relax.op.permute_dims(wt, [1, 0]))
            y = bb.emit(relax.op.matmul(x, wtt))
            nan = bb.emit(relax.op.isnan(bv))
            lo = bb.emit(relax.op.where(nan, relax.const(-np.inf, "float32"), bv))
            hi = bb.emit(relax.op.where(nan, relax.const(np.inf, "float32"), bv))
            y = bb.emit(relax.op.maximum(y, lo))
            out = bb.emit_output(relax.op.minimum(y, hi))
        bb.emit_func_output(out)
    mod, params = channels_last.fold_parameter_layouts(bb.get(), [w, b])
    main = mod["main"]
    assert [p.name for p in main.params][:1] == ["x"]
    assert all(p.name.startswith("folded_") for p in main.params[1:])  # w and b are read by nothing else
    assert len(params) == 2  # w (permuted twice) and 6.0 (lo and hi guard the same bound)
    np.testing.assert_array_equal(params[0], w)
    assert float(params[1]) == 6.0


def test_a_transposed_convolution_keeps_the_network_nchw():
    """TVM legalizes conv2d_transpose for NCHW only; a decoder with one stays NCHW (depth-vit was slower
    converted)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 6, 6), "float32"))
    w = relax.Var("w", relax.TensorType((8, 8, 3, 3), "float32"))
    wt = relax.Var("wt", relax.TensorType((8, 4, 2, 2), "float32"))
    with bb.function("main", [x, w, wt], {"num_input": 1}):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w, padding=1))
            out = bb.emit_output(relax.op.nn.conv2d_transpose(y, wt, strides=2))
        bb.emit_func_output(out)
    mod = bb.get()
    assert not channels_last.convertible(mod)
    converted, _ = channels_last.convert(mod, [np.zeros((8, 8, 3, 3), np.float32), np.zeros((8, 4, 2, 2), np.float32)])
    assert {str(c.attrs.data_layout) for c in _calls(converted, "relax.nn.conv2d")} == {"NCHW"}
