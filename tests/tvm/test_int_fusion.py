"""Integer Linear layers (edgecomp.tvm.int_fusion + kernels/cpu/qgemm) checked against onnxruntime.

One graph holds the cases side by side: per-token fake-quant (A8 and A4) feeding int4 MatMulNBits
(symmetric, asymmetric with zero points, groups 32..128, bias as input 5 or as a following Add) and int8
DequantizeLinear weights (``[K, N]`` per column, ``Transpose`` of ``[N, K]`` per row, and onnxruntime's folded
``Reshape -> Gemm`` / ``Gemm(transB=1)`` forms), 2-D and 3-D inputs
with row counts that are not a multiple of the row tile, and one quantized tensor shared by two layers
(one QuantizeRows). onnxruntime runs the float fake-quant graph; the integer kernels must agree to float
rounding (the integer part is exact). Layers the kernel cannot take (N not a multiple of 16, LogNP-style
activations) must keep the float path and still agree.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tvm")

from edgecomp import onnx_tools  # noqa: E402
from edgecomp._kernels.cpu import qgemm  # noqa: E402
from edgecomp.runtime.vm import VMRunner  # noqa: E402
from edgecomp.specs import TensorSpec  # noqa: E402
from edgecomp.targets import load_target  # noqa: E402
from edgecomp.tvm import frontend, int_fusion  # noqa: E402
from edgecomp.tvm.compile import compile_relax  # noqa: E402

MS = "com.microsoft"
TARGET = load_target("x86")
pytestmark = pytest.mark.skipif(not qgemm.has_vnni(TARGET.tvm_target()), reason="host CPU has no AVX-512 VNNI")


class Graph:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.outputs, self.feeds = [], [], [], [], {}

    def input(self, name, shape):
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        # a few large outliers per row, as real activations have
        x = self.rng.standard_normal(shape).astype(np.float32)
        x[..., :: max(1, shape[-1] // 3)] *= 20
        self.feeds[name] = x
        return name

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, name, domain="", **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, domain=domain, **attrs))
        return name

    def fake_quant(self, x, prefix, qmax):
        """edgecomp.quant.activations.fake_quant_symmetric as torch exports it (per token)."""
        ab = self.node("Abs", [x], f"{prefix}_abs")
        mx = self.node("ReduceMax", [ab], f"{prefix}_max", axes=[-1], keepdims=1)
        s0 = self.node("Div", [mx, self.init(f"{prefix}_qmax", np.float32(qmax))], f"{prefix}_s0")
        s = self.node("Clip", [s0, self.init(f"{prefix}_eps", np.float32(1e-12))], f"{prefix}_s")
        d = self.node("Div", [x, s], f"{prefix}_div")
        r = self.node("Round", [d], f"{prefix}_round")
        q = self.node("Clip", [r, self.init(f"{prefix}_lo", np.float32(-qmax)),
                               self.init(f"{prefix}_hi", np.float32(qmax))], f"{prefix}_q")
        return self.node("Mul", [q, s], f"{prefix}_fq")

    def matmul_nbits(self, a, prefix, K, N, block, zero_points, bias_input):
        nb = K // block
        u = self.rng.integers(0, 16, (N, K)).astype(np.uint8)
        packed = (u[:, 0::2] | (u[:, 1::2] << 4)).reshape(N, nb, block // 2)
        scales = (self.rng.random((N, nb)) * 0.02 + 0.001).astype(np.float32)
        ins = [a, self.init(f"{prefix}_B", packed), self.init(f"{prefix}_S", scales.reshape(-1))]
        if zero_points:
            z = self.rng.integers(0, 16, (N, nb + nb % 2)).astype(np.uint8)
            ins.append(self.init(f"{prefix}_Z", (z[:, 0::2] | (z[:, 1::2] << 4)).reshape(-1)))
        if bias_input:
            ins += [""] * (5 - len(ins)) + [self.init(f"{prefix}_bias", self.rng.standard_normal(N).astype(np.float32))]
        return self.node("MatMulNBits", ins, f"{prefix}_mm", domain=MS, K=K, N=N, bits=4, block_size=block)

    def matmul_int8(self, a, prefix, K, N, transposed):
        codes = self.rng.integers(-127, 128, (N, K)).astype(np.int8)
        scales = (self.rng.random(N) * 0.002 + 1e-4).astype(np.float32)
        if transposed:  # DequantizeLinear(W[N, K], axis 0) -> Transpose
            dq = self.node("DequantizeLinear", [self.init(f"{prefix}_W", codes), self.init(f"{prefix}_s", scales),
                                                self.init(f"{prefix}_z", np.zeros(N, np.int8))], f"{prefix}_dq", axis=0)
            w = self.node("Transpose", [dq], f"{prefix}_t", perm=[1, 0])
        else:  # DequantizeLinear(W^T[K, N], axis 1), as onnxruntime's folding leaves it
            w = self.node("DequantizeLinear", [self.init(f"{prefix}_W", np.ascontiguousarray(codes.T)),
                                               self.init(f"{prefix}_s", scales)], f"{prefix}_dq", axis=1)
        return self.node("MatMul", [a, w], f"{prefix}_mm")

    def add_bias(self, y, prefix, N):
        return self.node("Add", [y, self.init(f"{prefix}_b", self.rng.standard_normal(N).astype(np.float32))],
                         f"{prefix}_add")

    def output(self, name, shape):
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))

    def model(self):
        graph = helper.make_graph(self.nodes, "g", self.inputs, self.outputs, initializer=self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


def _graph() -> tuple[Graph, dict[str, str]]:
    """The cases; returns the graph and {output: the fused layer it must come from ('' = float path)}."""
    g, expect = Graph(0), {}
    # shared A8 tensor [1, 13, 192] -> int4 symmetric g64 (+Add bias) and asymmetric g32 (bias input 5)
    x = g.input("x", (1, 13, 192))
    fq = g.fake_quant(x, "fq8", 127)
    y = g.add_bias(g.matmul_nbits(fq, "sym", 192, 64, 64, False, False), "sym", 64)
    g.output(y, (1, 13, 64))
    expect[y] = "sym_mm"
    y = g.matmul_nbits(fq, "asym", 192, 48, 32, True, True)
    g.output(y, (1, 13, 48))
    expect[y] = "asym_mm"
    # 2-D [5, 256] A8 -> int8 per column, and Transpose form with a bias Add
    x2 = g.input("x2", (5, 256))
    fq2 = g.fake_quant(x2, "fq2", 127)
    y = g.matmul_int8(fq2, "w8", 256, 32, False)
    g.output(y, (5, 32))
    expect[y] = "w8_mm"
    y = g.add_bias(g.matmul_int8(fq2, "w8t", 256, 96, True), "w8t", 96)
    g.output(y, (5, 96))
    expect[y] = "w8t_mm"
    # A4 (qmax 7), int4 asymmetric g128, 3-D [2, 9, 256]
    x3 = g.input("x3", (2, 9, 256))
    y = g.matmul_nbits(g.fake_quant(x3, "fq4", 7), "a4", 256, 32, 128, True, False)
    g.output(y, (2, 9, 32))
    expect[y] = "a4_mm"
    # onnxruntime's folded forms: Reshape -> Gemm(W [K, N], bias) and Gemm(transB=1) on a 2-D input
    x5 = g.input("x5", (1, 7, 128))
    flat = g.node("Reshape", [g.fake_quant(x5, "fq5", 127), g.init("shape5", np.array([7, 128]))], "r5")
    codes = g.rng.integers(-127, 128, (32, 128)).astype(np.int8)
    dq = g.node("DequantizeLinear", [g.init("g5_W", np.ascontiguousarray(codes.T)),
                                     g.init("g5_s", (g.rng.random(32) * 0.002).astype(np.float32))], "g5_dq", axis=1)
    y = g.node("Gemm", [flat, dq, g.init("g5_b", g.rng.standard_normal(32).astype(np.float32))], "g5_mm")
    g.output(y, (7, 32))
    expect[y] = "r5"
    codes = g.rng.integers(-127, 128, (48, 64)).astype(np.int8)
    dq = g.node("DequantizeLinear", [g.init("g6_W", codes),
                                     g.init("g6_s", (g.rng.random(48) * 0.002).astype(np.float32))], "g6_dq", axis=0)
    y = g.node("Gemm", [g.fake_quant(g.input("x6", (6, 64)), "fq6", 127), dq,
                        g.init("g6_b", g.rng.standard_normal(48).astype(np.float32))], "g6_mm", transB=1)
    g.output(y, (6, 48))
    expect[y] = "g6_mm"
    # N = 10 (not a multiple of 16): float path
    y = g.matmul_nbits(g.fake_quant(g.input("x4", (3, 64)), "fqn", 127), "n10", 64, 10, 32, False, False)
    g.output(y, (3, 10))
    expect[y] = ""
    return g, expect


def test_fusion_finds_every_legal_layer_and_says_why_not_the_rest():
    g, expect = _graph()
    fused, report = int_fusion.fuse(g.model(), TARGET.tvm_target())
    assert sorted(report.layers) == sorted(v for v in expect.values() if v)
    assert list(report.skipped) == ["n10_mm"] and "N=10" in report.skipped["n10_mm"]
    ops = [n.op_type for n in fused.graph.node]
    # one per (tensor, group size): fq8 feeds groups 64 and 32, fq2 two int8 layers (G = K = 256), fq4-6
    assert ops.count(int_fusion.QUANTIZE_ROWS) == 6
    assert ops.count(int_fusion.QGEMM) == 7
    assert "Round" in ops  # the unfused layer keeps its fake-quant chain; the fused chains are gone
    assert ops.count("Round") == 1


def test_integer_kernels_match_onnxruntime():
    g, expect = _graph()
    model = g.model()
    want = onnx_tools.session(model).run(None, g.feeds)  # keeps int8 DQ -> MatMul in fp32
    specs = tuple(TensorSpec(n, a.shape) for n, a in g.feeds.items())
    mod, params, report = frontend.to_relax(model, specs, TARGET.tvm_target())
    compiled = compile_relax(mod, params, TARGET, use_database=False, threads=2)
    kernels = {f: r for f, r in compiled.schedules.items() if r.startswith("kernel:")}
    assert sorted(set(kernels.values())) == ["kernel:qgemm", "kernel:quantize_rows"]
    assert "none" not in compiled.schedules.values()
    got = VMRunner(compiled.executable, compiled.params, specs)(g.feeds)
    for out, a, b in zip(g.outputs, got, want, strict=True):
        scale = float(np.abs(b).max())
        # fp32 sums in another order: a few ulps of the largest output; a wrong zero point, scale or
        # rounding tie would be off by at least one activation step (~1e-2 of the output range)
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * scale, err_msg=out.name)
