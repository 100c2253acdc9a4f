"""Partitioning: per-token fake-quant and LogNP-decoded activations feeding int4 weights become accelerator
GEMMs (LogNP ones on the W4A8 datapath: int8 table values x int4 codes); the simulator matches the integer
reference bit for bit and onnxruntime on the fake-quant graph to float rounding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def _fake_quant_graph(lognp: bool, K: int = 64, N: int = 48, block: int = 32) -> onnx.ModelProto:
    """x [1, 8, K] -> (LogNP | per-token int4) fake-quant -> MatMulNBits (symmetric int4, zero point 8)."""
    import torch

    from edgecomp.quant.activations import fake_quant_symmetric, lognp_fake_quant

    class FQ(torch.nn.Module):
        def forward(self, x):
            return lognp_fake_quant(x, 4, (-1,)) if lognp else fake_quant_symmetric(x, 4, (-1,))

    import io

    buf = io.BytesIO()
    torch.onnx.export(FQ(), (torch.zeros(1, 8, K),), buf, input_names=["x"], output_names=["a"], opset_version=17,
                      dynamo=False)
    m = onnx.load_from_string(buf.getvalue())
    rng = np.random.default_rng(0)
    u = rng.integers(0, 16, (N, K)).astype(np.uint8)
    packed = (u[:, 0::2] | (u[:, 1::2] << 4)).reshape(N, K // block, block // 2)
    scales = (rng.random((N, K // block)) * 0.05 + 0.01).astype(np.float32).reshape(-1)
    m.graph.initializer.extend([numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "S")])
    m.graph.node.append(helper.make_node("MatMulNBits", ["a", "B", "S"], ["y"], domain="com.microsoft", K=K, N=N,
                                         bits=4, block_size=block, name="fc"))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, N]))
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return m


@pytest.mark.parametrize("lognp", [False, True], ids=["per-token", "lognp"])
def test_partition_runs_on_the_accelerator(asic_cfg, lognp):
    from edgecomp import onnx_tools
    from edgecomp.asic.build import compile_asic
    from edgecomp.asic.partition import partition
    from edgecomp.asic.runtime import Executor
    from edgecomp.targets import load_target

    m = _fake_quant_graph(lognp)
    P = partition(m)
    assert [layer.name for layer in P.layers] == ["fc"]
    assert P.layers[0].qmax == (127 if lognp else 7) and P.layers[0].zeros is None  # symmetric: z = 8
    rng = np.random.default_rng(1)
    feeds = [{"x": (rng.standard_normal((1, 8, 64)) * rng.uniform(0.1, 5, (1, 8, 1))).astype(np.float32)}
             for _ in range(2)]
    compiled, summary = compile_asic(m, feeds, load_target("asic-sim").asic)  # raises unless bit-exact
    assert summary["bit_exact_vs_reference"] and summary["datapaths"] == (["w4a8"] if lognp else ["w4a4"])
    ex = Executor(compiled.host, compiled.layers, compiled.programs, compiled.images, asic_cfg)
    sess = onnx_tools.session(m)
    for f in feeds:
        y, ref = ex(f)[0], onnx_tools.run(sess, f)[0]
        assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-5
    if lognp:  # the LogNP decode (log2 / exp2) is costed on the vector unit
        kinds = {r["kind"] for r in compiled.cost["layers"] if r["unit"] == "vcu"}
        assert {"Log", "Pow"} <= kinds


def test_fusion_looks_through_reshapes():
    """A GEMM whose output reaches an elementwise op through a Reshape (onnxruntime's Reshape -> Gemm ->
    Reshape form) keeps it on chip, as it does without the Reshape."""
    from edgecomp.asic.build import compile_asic
    from edgecomp.targets import load_target

    m = _fake_quant_graph(False)
    T = 800  # y is 800 x 48 x 4 B = 150 KiB, more than asic.sram.fuse_fraction x act_kib: on chip only if streamed
    m.graph.initializer.append(numpy_helper.from_array(np.array([T, 48], np.int64), "shape2d"))
    m.graph.node.extend([helper.make_node("Reshape", ["y", "shape2d"], ["y2"], name="view"),
                         helper.make_node("Erf", ["y2"], ["z"], name="erf")])
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [T, 48]))
    feed = {"x": np.random.default_rng(0).standard_normal((1, T, 64)).astype(np.float32)}
    compiled, _ = compile_asic(m, [feed], load_target("asic-sim").asic)
    rows = {r["name"]: r for r in compiled.cost["layers"]}
    assert "Y" in rows["fc"]["fused_io"]
    assert rows["erf"]["dram_bytes"] == T * 48 * 4  # only its own output, a graph output, goes to DRAM


def test_fusion_looks_through_head_split_transposes():
    """A projection feeding an attention product through the head split (Reshape, Transpose) and the 1/√d Mul
    streams into it like a plain elementwise consumer: the Transpose is a strided DMA tile of the same data."""
    from edgecomp.asic.attention import quantize_attention
    from edgecomp.asic.build import compile_asic
    from edgecomp.targets import load_target

    m = _fake_quant_graph(False)
    T, H, D = 800, 3, 16  # y is 800 x 48 x 4 B = 150 KiB: on chip only if streamed
    m.graph.initializer.extend([numpy_helper.from_array(np.array([1, T, H, D], np.int64), "heads"),
                                numpy_helper.from_array(np.array(0.25, np.float32), "scale")])
    m.graph.node.extend([
        helper.make_node("Reshape", ["y", "heads"], ["y4"], name="split"),
        helper.make_node("Transpose", ["y4"], ["q"], perm=[0, 2, 1, 3], name="Transpose_q"),
        helper.make_node("Mul", ["q", "scale"], ["qs"], name="scale_q"),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2], name="Transpose_k"),
        helper.make_node("MatMul", ["qs", "kt"], ["s"], name="MatMul"),
        helper.make_node("Softmax", ["s"], ["p"], axis=-1, name="Softmax"),
        helper.make_node("MatMul", ["p", "k"], ["o"], name="MatMul_1"),
    ])
    m.graph.input.append(helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, H, T, D]))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, H, T, D]))
    m, n = quantize_attention(m)
    assert n == 1
    rng = np.random.default_rng(0)
    feed = {"x": rng.standard_normal((1, T, 64)).astype(np.float32),
            "k": rng.standard_normal((1, H, T, D)).astype(np.float32)}
    compiled, _ = compile_asic(m, [feed], load_target("asic-sim").asic)
    rows = {r["name"]: r for r in compiled.cost["layers"]}
    assert "Transpose_q" not in rows  # absorbed by the product's DMA
    assert "Y" in rows["fc"]["fused_io"]
    assert rows["scale_q"]["dram_bytes"] == 0
