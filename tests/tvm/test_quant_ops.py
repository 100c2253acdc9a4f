"""Quantised-weight ONNX forms (edgecomp.tvm.quant_ops) imported into TVM and checked against onnxruntime.

Each graph holds several cases side by side (one compile per graph keeps the file fast):
MatMulNBits (block sizes 16..128, with/without uint8/float zero points and bias, 2-D/3-D inputs, a
padded last block, non-initializer weights); int8 DequantizeLinear -> Transpose/MatMul, MatMul, Gemm(transB)
and Conv, plus uint8 activation QDQ; 4-bit (INT4/UINT4) com.microsoft / opset-21 DequantizeLinear -> Conv
(per axis 0/1, per tensor, blocked, with/without zero points, odd element counts). Every compiled
PrimFunc must be scheduled (no "none" rule), and weights must stay int8 / packed uint8 parameters.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tvm")

from edgecomp.errors import UnsupportedOpError  # noqa: E402
from edgecomp.runtime.vm import VMRunner  # noqa: E402
from edgecomp.specs import TensorSpec  # noqa: E402
from edgecomp.targets import load_target  # noqa: E402
from edgecomp.tvm import frontend, quant_ops  # noqa: E402
from edgecomp.tvm.compile import compile_relax  # noqa: E402

RTOL, ATOL = 1e-4, 1e-4
MS = "com.microsoft"


class Graph:
    """Accumulates nodes, initializers, inputs and outputs of one test graph."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self.feeds: dict[str, np.ndarray] = {}

    def input(self, name: str, shape: tuple[int, ...]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.feeds[name] = self.rng.standard_normal(shape).astype(np.float32)
        return name

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def output(self, name: str, shape: tuple[int, ...]) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))

    def model(self, opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "g", self.inputs, self.outputs, initializer=self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])

    def specs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec(n, a.shape) for n, a in self.feeds.items())


def _run_both(model: onnx.ModelProto, g: Graph):
    """(TVM outputs, onnxruntime outputs, params, schedules) for ``model``.

    onnxruntime's full optimisation rewrites int8 ``DequantizeLinear -> MatMul`` into an 8-bit MatMulNBits
    that quantises the activations too (accuracy level 4: errors of ~1e-2 relative); level 0 keeps fp32.
    """
    so = ort.SessionOptions()
    so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    want = sess.run(None, g.feeds)
    mod, params, _ = frontend.to_relax(model, g.specs())
    compiled = compile_relax(mod, params, load_target("x86"), use_database=False, threads=2)
    got = VMRunner(compiled.executable, compiled.params, g.specs())(g.feeds)
    return got, want, params, compiled.schedules


def _check(got, want, schedules, names):
    assert "none" not in schedules.values(), schedules
    assert len(got) == len(want) == len(names)
    for name, a, b in zip(names, got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL * max(1.0, float(np.abs(b).max())), err_msg=name)


# ---------------------------------------------------------------------------------------------------
# MatMulNBits


def _matmul_nbits(g: Graph, tag: str, x: str, K: int, N: int, block: int, zp: str | None, bias: bool,
                  weight_via_identity: bool = False) -> int:
    """Add one MatMulNBits node (output ``y_<tag>``); returns the packed weight byte count."""
    n_blocks = -(-K // block)
    q = g.rng.integers(0, 16, (N, n_blocks * block), dtype=np.uint8)
    q[:, K:] = 0
    b = quant_ops.pack_int4(q).reshape(N, n_blocks, block // 2)
    scales = (g.rng.random(N * n_blocks) * 0.05 + 0.01).astype(np.float32)
    ins = [x, g.init(f"B_{tag}", b), g.init(f"S_{tag}", scales)]
    if weight_via_identity:  # B is then no initializer: the converter works on the ONNX layout
        g.nodes.append(helper.make_node("Identity", [ins[1]], [f"Bid_{tag}"]))
        ins[1] = f"Bid_{tag}"
    if zp == "uint8":
        z = g.rng.integers(0, 16, (N, 2 * -(-n_blocks // 2)), dtype=np.uint8)
        ins.append(g.init(f"Z_{tag}", quant_ops.pack_int4(z)))
    elif zp == "float":
        ins.append(g.init(f"Z_{tag}", g.rng.uniform(0, 15, N * n_blocks).astype(np.float32)))
    else:
        ins.append("")
    if bias:
        ins += ["", g.init(f"bias_{tag}", g.rng.standard_normal(N).astype(np.float32))]
    while not ins[-1]:
        ins.pop()
    g.nodes.append(helper.make_node("MatMulNBits", ins, [f"y_{tag}"], name=f"mm_{tag}", domain=MS,
                                    K=K, N=N, bits=4, block_size=block))
    g.output(f"y_{tag}", (*g.feeds[x].shape[:-1], N))
    return b.size


MATMUL_CASES = [  # tag, input, block, zero points, bias
    ("b16", "x2", 16, None, False),
    ("b32_zp_bias", "x2", 32, "uint8", True),
    ("b64_zp", "x2", 64, "uint8", False),
    ("b128_bias", "x2", 128, None, True),
    ("b32_fzp", "x2", 32, "float", True),
    ("3d_b32_zp_bias", "x3", 32, "uint8", True),
    ("3d_b128", "x3", 128, None, False),
]


def test_matmul_nbits_matches_onnxruntime():
    g = Graph(0)
    K, N = 128, 48
    g.input("x2", (5, K))
    g.input("x3", (1, 7, K))
    g.input("x_pad", (3, 40))  # K = 40 with block 16: the last block is padded
    sizes = {}
    for tag, x, block, zp, bias in MATMUL_CASES:
        sizes[f"B_{tag}"] = _matmul_nbits(g, tag, x, K, N, block, zp, bias)
    _matmul_nbits(g, "pad", "x_pad", 40, 24, 16, "uint8", True)
    _matmul_nbits(g, "ident", "x3", K, N, 32, "uint8", True, weight_via_identity=True)
    model = g.model()
    got, want, params, schedules = _run_both(model, g)
    _check(got, want, schedules, [o.name for o in g.outputs])
    # the dequantisation is its own injective PrimFunc; the matmuls get the GEMM tiler
    assert {r for f, r in schedules.items() if f.startswith("dequantize_q4")} == {"injective"}, schedules
    assert "matmul" in schedules.values(), schedules
    # weights stay packed 4-bit bytes: transposed to [K/2, N] for initializers (same count), the ONNX
    # layout for the weight behind the Identity; scales stay float
    onnx_bytes = sum(len(t.raw_data) for t in model.graph.initializer if t.data_type == TensorProto.UINT8)
    assert sum(p.nbytes for p in params if p.dtype == np.uint8) == onnx_bytes
    assert {p.dtype for p in params} == {np.dtype(np.uint8), np.dtype(np.float32)}
    kn = sorted(p.size for p in params if p.dtype == np.uint8 and p.shape == (K // 2, N))
    assert kn == sorted(sizes.values()), kn
    assert any(p.shape == (N, K // 32, 16) for p in params)  # B_ident


# ---------------------------------------------------------------------------------------------------
# int8 DequantizeLinear (standard op) on int8 weight initializers


def _int8_weight(g: Graph, tag: str, shape: tuple[int, ...], per_axis: bool = True) -> str:
    w = g.rng.integers(-127, 128, shape, dtype=np.int8)
    if per_axis:
        scale = (g.rng.random(shape[0]) * 0.02 + 0.001).astype(np.float32)
        zp = np.zeros(shape[0], np.int8)
        attrs = {"axis": 0}
    else:
        scale, zp, attrs = np.array(0.01, np.float32), np.array(0, np.int8), {}
    ins = [g.init(f"W_{tag}", w), g.init(f"Ws_{tag}", scale), g.init(f"Wz_{tag}", zp)]
    g.nodes.append(helper.make_node("DequantizeLinear", ins, [f"Wf_{tag}"], name=f"dq_{tag}", **attrs))
    return f"Wf_{tag}"


def test_int8_dequantize_linear_matmul_and_conv():
    g = Graph(1)
    g.input("x", (3, 64))
    g.input("img", (1, 8, 10, 10))
    w = _int8_weight(g, "fc", (32, 64))  # torch Linear layout [out, in]
    g.nodes += [helper.make_node("Transpose", [w], ["Wt_fc"], perm=[1, 0]),
                helper.make_node("MatMul", ["x", "Wt_fc"], ["y_fc"])]
    w2 = _int8_weight(g, "fc2", (64, 16), per_axis=False)  # per-tensor, scalar zero point
    # activations through QuantizeLinear -> DequantizeLinear (uint8, zero point 128)
    qdq = [g.init("xs", np.array(0.02, np.float32)), g.init("xz", np.array(128, np.uint8))]
    g.nodes += [helper.make_node("QuantizeLinear", ["x", *qdq], ["xq"]),
                helper.make_node("DequantizeLinear", ["xq", *qdq], ["xf"]),
                helper.make_node("MatMul", ["xf", w2], ["y_fc2"])]
    w3 = _int8_weight(g, "gemm", (24, 64))  # torch's F.linear on 2-D input: Gemm(transB=1)
    g.init("bg", g.rng.standard_normal(24).astype(np.float32))
    g.nodes.append(helper.make_node("Gemm", ["x", w3, "bg"], ["y_gemm"], transB=1))
    wc = _int8_weight(g, "conv", (16, 8, 3, 3))
    g.init("bc", g.rng.standard_normal(16).astype(np.float32))
    g.nodes.append(helper.make_node("Conv", ["img", wc, "bc"], ["y_conv"], pads=[1, 1, 1, 1]))
    g.output("y_fc", (3, 32))
    g.output("y_fc2", (3, 16))
    g.output("y_gemm", (3, 24))
    g.output("y_conv", (1, 16, 10, 10))
    model = g.model()
    got, want, params, schedules = _run_both(model, g)
    _check(got, want, schedules, ["y_fc", "y_fc2", "y_gemm", "y_conv"])
    # the int8 weights (and the per-axis zero points) are runtime parameters, not folded float constants;
    # the transposed Linear weight is stored transposed ([K, N], same bytes) and dequantised elementwise
    int8 = sorted(p.shape for p in params if p.dtype == np.int8)
    assert int8 == sorted([(32,), (24,), (16,), (64, 32), (64, 16), (64, 24), (16, 8, 3, 3)]), int8
    assert not any(p.dtype == np.float32 and p.size in (32 * 64, 16 * 8 * 9) for p in params)
    assert not any("transpose" in f for f in schedules), schedules


# ---------------------------------------------------------------------------------------------------
# 4-bit DequantizeLinear (com.microsoft, and ai.onnx opset 21) on INT4/UINT4 initializers


def _int4_tensor(name: str, values: np.ndarray, signed: bool) -> TensorProto:
    dtype = TensorProto.INT4 if signed else TensorProto.UINT4
    return helper.make_tensor(name, dtype, values.shape, quant_ops.pack_int4(values).tobytes(), raw=True)


def _int4_conv(g: Graph, tag: str, x: str, shape: tuple[int, ...], signed: bool, zp: bool, domain: str = MS,
               block: int = 0, axis: int | None = 0) -> int:
    """Conv whose weight is a 4-bit DequantizeLinear (output ``y_<tag>``); returns the weight element count.

    Per axis ``axis`` (None: per tensor), or blocked along axis 1 when ``block``."""
    lo, hi = (-8, 8) if signed else (0, 16)
    q = g.rng.integers(lo, hi, shape)
    if block:
        s_shape, attrs = (shape[0], -(-shape[1] // block), *shape[2:]), {"axis": 1, "block_size": block}
    elif axis is None:
        s_shape, attrs = (), {}
    else:
        s_shape, attrs = (shape[axis],), {"axis": axis}
    scale = (g.rng.random(s_shape) * 0.05 + 0.01).astype(np.float32)
    g.inits.append(_int4_tensor(f"W_{tag}", q, signed))
    ins = [f"W_{tag}", g.init(f"Ws_{tag}", scale)]
    if zp:
        g.inits.append(_int4_tensor(f"Wz_{tag}", g.rng.integers(lo, hi, s_shape), signed))
        ins.append(f"Wz_{tag}")
    g.nodes.append(helper.make_node("DequantizeLinear", ins, [f"Wf_{tag}"], name=f"dq_{tag}", domain=domain,
                                    **attrs))
    g.nodes.append(helper.make_node("Conv", [x, f"Wf_{tag}"], [f"y_{tag}"], pads=[1, 1, 1, 1]))
    n, _, h, w = g.feeds[x].shape
    g.output(f"y_{tag}", (n, shape[0], h + 3 - shape[2], w + 3 - shape[3]))
    return math.prod(shape)


def _check_packed(model, params, counts):
    packed = sorted(p.size for p in params if p.dtype == np.uint8)
    expected = sorted(-(-n // 2) for n in counts)
    assert [n for n in packed if n in expected] == expected, (packed, expected)
    assert not any(p.dtype == np.float32 and p.size in counts for p in params)
    # (a single-byte per-tensor zero point is inlined as a constant, like every one-element integer tensor)
    onnx_bytes = sum(len(t.raw_data) for t in model.graph.initializer
                     if t.data_type in (TensorProto.INT4, TensorProto.UINT4) and len(t.raw_data) > 1)
    assert sum(p.nbytes for p in params if p.dtype == np.uint8) == onnx_bytes


def test_int4_dequantize_linear_conv_com_microsoft():
    g = Graph(2)
    g.input("img", (1, 6, 9, 9))
    counts = [
        _int4_conv(g, "s4", "img", (8, 6, 3, 3), signed=True, zp=False),
        _int4_conv(g, "s4_zp", "img", (8, 6, 3, 3), signed=True, zp=True),
        _int4_conv(g, "u4", "img", (16, 6, 3, 3), signed=False, zp=False),
        _int4_conv(g, "u4_zp_odd", "img", (5, 6, 3, 3), signed=False, zp=True),  # 270 values, 5 zero points
    ]
    model = g.model()
    got, want, params, schedules = _run_both(model, g)
    _check(got, want, schedules, [o.name for o in g.outputs])
    _check_packed(model, params, counts)
    assert "conv2d" in schedules.values(), schedules


def test_int4_dequantize_linear_opset21_blocked_axis1_per_tensor():
    g = Graph(3)
    g.input("img", (1, 8, 6, 6))
    counts = [
        _int4_conv(g, "s4_axis", "img", (4, 8, 3, 3), signed=True, zp=True, domain=""),
        _int4_conv(g, "u4_block", "img", (4, 8, 3, 3), signed=False, zp=True, domain="", block=4),
        _int4_conv(g, "s4_axis1", "img", (4, 8, 3, 3), signed=True, zp=True, domain="", axis=1),
        _int4_conv(g, "u4_tensor", "img", (6, 8, 1, 1), signed=False, zp=True, domain="", axis=None),
    ]
    model = g.model(opset=21)
    got, want, params, schedules = _run_both(model, g)
    _check(got, want, schedules, [o.name for o in g.outputs])
    _check_packed(model, params, counts)
    assert "conv2d" in schedules.values(), schedules


# ---------------------------------------------------------------------------------------------------
# import-time checks (no compile)


def test_rewrite_keeps_the_input_model_and_packed_bytes():
    g = Graph(4)
    g.input("img", (1, 2, 4, 4))
    _int4_conv(g, "s4", "img", (3, 2, 3, 3), signed=True, zp=True)
    model = g.model()
    before = model.SerializeToString()
    out = quant_ops.rewrite(model)
    assert model.SerializeToString() == before
    node = [n for n in out.graph.node if n.op_type == quant_ops.DEQUANT_INT4][0]
    assert node.domain == quant_ops.DOMAIN
    inits = {t.name: t for t in out.graph.initializer}
    orig = {t.name: t for t in model.graph.initializer}
    for name in ("W_s4", "Wz_s4"):
        assert inits[name].data_type == TensorProto.UINT8
        assert numpy_helper.to_array(inits[name]).tobytes() == orig[name].raw_data


def test_int8_dequantize_transpose_is_folded_into_the_initializer():
    g = Graph(6)
    g.input("x", (2, 16))
    w = _int8_weight(g, "a", (8, 16))
    g.nodes += [helper.make_node("Transpose", [w], ["Wt_a"], perm=[1, 0]),
                helper.make_node("MatMul", ["x", "Wt_a"], ["y_a"])]
    w = _int8_weight(g, "b", (8, 16))  # its dequantised weight has a second consumer: left alone
    g.nodes += [helper.make_node("Transpose", [w], ["Wt_b"]), helper.make_node("MatMul", ["x", "Wt_b"], ["y_b"]),
                helper.make_node("ReduceSum", [w], ["y_c"], keepdims=0)]
    w = _int8_weight(g, "g", (8, 16))
    g.nodes.append(helper.make_node("Gemm", ["x", w], ["y_g"], transB=1))
    out = quant_ops.rewrite(g.model())
    gemm = [n for n in out.graph.node if n.op_type == "Gemm"][0]
    assert list(gemm.input) == ["x", "Wf_g"] and helper.get_attribute_value(gemm.attribute[0]) == 0
    ops = [(n.op_type, list(n.input)) for n in out.graph.node]
    assert ("DequantizeLinear", ["W_a_kn", "Ws_a", "Wz_a"]) in ops and ops.count(("Transpose", ["Wf_b"])) == 1
    assert sum(op == "Transpose" for op, _ in ops) == 1
    dq_a = [n for n in out.graph.node if n.input and n.input[0] == "W_a_kn"][0]
    assert dq_a.output == ["Wt_a"] and helper.get_attribute_value(dq_a.attribute[0]) == 1  # axis 0 -> 1
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    orig = {t.name: numpy_helper.to_array(t) for t in g.inits}
    assert "W_a" not in inits and np.array_equal(inits["W_a_kn"], orig["W_a"].T)


def test_unknown_and_unsupported_quant_ops_are_named():
    g = Graph(5)
    g.input("x", (2, 32))
    _matmul_nbits(g, "ok", "x", 32, 8, 16, None, False)
    frontend.check_ops(g.model())
    model = g.model()
    model.graph.node.append(helper.make_node("QLinearMatMul", ["y_ok"] * 8, ["z"], name="qmm"))
    with pytest.raises(UnsupportedOpError, match=r"QLinearMatMul \(node 'qmm'\)"):
        frontend.check_ops(model)
    model = g.model()
    for a in model.graph.node[0].attribute:
        if a.name == "bits":
            a.i = 8
    with pytest.raises(UnsupportedOpError, match=r"com\.microsoft\.MatMulNBits \(node 'mm_ok'\).*8-bit"):
        frontend.to_relax(model, g.specs())
    model = g.model()
    model.graph.node[0].input.extend(["", "g_idx"])
    with pytest.raises(UnsupportedOpError, match=r"MatMulNBits \(node 'mm_ok'\).*g_idx"):
        frontend.check_ops(model)
    assert {"MatMulNBits", quant_ops.DEQUANT_INT4, quant_ops.MATMUL_KN} <= frontend.supported_ops()


# ---------------------------------------------------------------------------------------------------
# GatherBlockQuantized (int4 embedding tables, edgecomp.quant.embedding)


def _gather_q4(g: Graph, tag: str, ids: str, V: int, D: int, block: int, zp: bool,
               scale_dtype=np.float32, bits: int = 4) -> int:
    """Add one GatherBlockQuantized node on a packed [V, D/2] table (bits=8: [V, D]; output ``y_<tag>``);
    returns the table bytes."""
    n_blocks = -(-D // block)
    if bits == 8:
        data = g.rng.integers(0, 256, (V, D), dtype=np.uint8)
    else:
        data = quant_ops.pack_int4(g.rng.integers(0, 16, (V, D), dtype=np.uint8)).reshape(V, D // 2)
    scales = (g.rng.random((V, n_blocks)) * 0.05 + 0.01).astype(scale_dtype)
    ins = [g.init(f"E_{tag}", data), ids, g.init(f"Es_{tag}", scales)]
    if zp:
        z = g.rng.integers(0, 16, (V, 2 * -(-n_blocks // 2)), dtype=np.uint8)
        ins.append(g.init(f"Ez_{tag}", quant_ops.pack_int4(z).reshape(V, -1)))
    g.nodes.append(helper.make_node("GatherBlockQuantized", ins, [f"y_{tag}"], name=f"gbq_{tag}", domain=MS,
                                    bits=bits, block_size=block, gather_axis=0, quantize_axis=1))
    dtype = TensorProto.FLOAT if scale_dtype == np.float32 else TensorProto.FLOAT16
    g.outputs.append(helper.make_tensor_value_info(f"y_{tag}", dtype, [*g.feeds[ids].shape, D]))
    return data.size


def _ids(g: Graph, name: str, shape: tuple[int, ...], V: int, dtype=np.int64) -> str:
    g.inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), list(shape)))
    ids = g.rng.integers(0, V, shape).astype(dtype)
    ids.flat[:3] = [-1, V, -V]  # negative indices count from the end; out of range gives a zero row
    g.feeds[name] = ids
    return name


def test_gather_block_quantized_matches_onnxruntime():
    g = Graph(7)
    V = 300
    _ids(g, "ids", (2, 9), V)
    _ids(g, "ids32", (11,), V, np.int32)
    tables = [
        _gather_q4(g, "sym_b32", "ids", V, 64, 32, zp=False),
        _gather_q4(g, "zp_b16_odd", "ids", V, 48, 16, zp=True),  # 3 blocks: padded zero-point bytes
        _gather_q4(g, "zp_b64_1blk", "ids32", V, 64, 64, zp=True),
        _gather_q4(g, "zp_b16_partial", "ids", V, 40, 16, zp=True),  # last block of 8 columns
        _gather_q4(g, "fp16", "ids32", V, 32, 16, zp=False, scale_dtype=np.float16),
        _gather_q4(g, "q8_b32", "ids", V, 64, 32, zp=False, bits=8),  # GGUF Q8_0-style rows, zero point 128
    ]
    model = g.model()
    specs = (TensorSpec("ids", (2, 9), "int64"), TensorSpec("ids32", (11,), "int32"))
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, g.feeds)
    mod, params, _ = frontend.to_relax(model, specs)
    compiled = compile_relax(mod, params, load_target("x86"), use_database=False, threads=2)
    got = VMRunner(compiled.executable, compiled.params, specs)(g.feeds)
    assert "none" not in compiled.schedules.values(), compiled.schedules
    assert any(f.startswith("gather_dequantize_q4") for f in compiled.schedules), compiled.schedules
    for name, a, b in zip([o.name for o in g.outputs], got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=1e-3 if a.dtype == np.float16
                                   else 1e-6, atol=1e-6, err_msg=name)
        assert not a.reshape(-1, a.shape[-1])[1].any() and b.reshape(-1, b.shape[-1])[0].any(), name  # ids V, -1
    # the tables stay packed uint8 parameters (same bytes as in the ONNX graph), never widened
    onnx_bytes = {t.name: numpy_helper.to_array(t).tobytes() for t in model.graph.initializer
                  if t.data_type == TensorProto.UINT8}
    assert sorted(p.size for p in params if p.dtype == np.uint8 and p.shape[0] == V and p.shape[1] > 4) == sorted(
        tables)
    assert sum(p.nbytes for p in params if p.dtype == np.uint8) == sum(len(b) for b in onnx_bytes.values())
    assert not any(p.dtype != np.uint8 and p.size >= V * 32 for p in params)


def test_gather_block_quantized_unsupported_forms_are_named():
    g = Graph(8)
    _ids(g, "ids", (4,), 64)
    _gather_q4(g, "ok", "ids", 64, 32, 16, zp=True)
    frontend.check_ops(g.model())
    assert "GatherBlockQuantized" in frontend.supported_ops()
    for attr, value, pattern in [("bits", 8, "8-bit data with zero points"), ("bits", 2, "2-bit data"),
                                 ("quantize_axis", 0, "quantize_axis=0"),
                                 ("block_size", 24, "block_size=24")]:
        model = g.model()
        for a in model.graph.node[0].attribute:
            if a.name == attr:
                a.i = value
        with pytest.raises(UnsupportedOpError, match=rf"GatherBlockQuantized \(node 'gbq_ok'\).*{pattern}"):
            frontend.check_ops(model)
    model = g.model()
    model.graph.node.insert(0, helper.make_node("Identity", ["E_ok"], ["E_id"]))
    model.graph.node[1].input[0] = "E_id"
    with pytest.raises(UnsupportedOpError, match="no 2-D uint8 initializer"):
        frontend.check_ops(model)
