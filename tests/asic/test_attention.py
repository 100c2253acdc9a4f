"""Integer attention on the accelerator: the rewrite inserts fake-quant on Q, Kᵀ, P, V; each product becomes a
MatMulQ partition whose instruction program (bᵀ quantized on chip, the Linear layers' GEMM loop per head) gives
the numpy integer reference's outputs bit for bit, and onnxruntime on the rewritten graph to float rounding."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp.asic import codegen, reference
from edgecomp.asic.partition import MatMulLayer
from edgecomp.asic.sim import Simulator
from edgecomp.errors import ConfigError, InputError


def _attention_graph(H: int, T: int, D: int, mask: bool = False) -> onnx.ModelProto:
    """q, k, v [1, H, T, D] -> softmax(q kᵀ * 0.125 [+ mask]) v -> [1, T, H, D] (the exported ViT / BERT form)."""
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2], name="Transpose_k"),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="MatMul"),
        helper.make_node("Mul", ["s", "scale"], ["s2"], name="Mul"),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, H, T, D]) for n in "qkv"]
    if mask:
        nodes.append(helper.make_node("Add", ["s2", "mask"], ["s3"], name="Add"))
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 1, T]))
    nodes += [
        helper.make_node("Softmax", ["s3" if mask else "s2"], ["p"], axis=-1, name="Softmax"),
        helper.make_node("MatMul", ["p", "v"], ["o"], name="MatMul_1"),
        helper.make_node("Transpose", ["o"], ["y"], perm=[0, 2, 1, 3], name="Transpose_o"),
    ]
    g = helper.make_graph(
        nodes,
        "attn",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(0.125, np.float32), "scale")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(H, T, D, mask, n=2):
    rng = np.random.default_rng(T)
    out = []
    for _ in range(n):
        f = {
            c: (rng.standard_normal((1, H, T, D)) * rng.uniform(0.2, 4, (1, H, T, 1))).astype(np.float32) for c in "qkv"
        }
        if mask:
            f["mask"] = np.where(np.arange(T) < T - 3, 0.0, -1e4).astype(np.float32).reshape(1, 1, 1, T)
        out.append(f)
    return out


@pytest.mark.parametrize("H, T, D, mask", [(3, 37, 16, False), (2, 50, 64, True), (1, 197, 64, False)])
def test_attention_runs_on_the_mmu_bit_exact(asic_cfg, H, T, D, mask):
    from edgecomp import onnx_tools
    from edgecomp.asic.attention import quantize_attention
    from edgecomp.asic.build import compile_asic
    from edgecomp.asic.partition import partition
    from edgecomp.asic.runtime import Executor
    from edgecomp.targets import load_target

    m, n = quantize_attention(_attention_graph(H, T, D, mask))
    assert n == 1
    P = partition(m)
    assert [(x.name, x.qmax_a, x.unsigned_a, x.qmax_b) for x in P.matmuls] == [
        ("MatMul", 127, False, 127),
        ("MatMul_1", 255, True, 127),
    ]
    feeds = _feeds(H, T, D, mask)
    compiled, summary = compile_asic(m, feeds, load_target("asic-sim").asic)  # raises unless bit-exact
    assert summary["attention_on_accelerator"] == 2 and summary["datapaths"] == ["w8a8"]
    ex = Executor(compiled.host, compiled.layers, compiled.programs, compiled.images, asic_cfg)
    sess = onnx_tools.session(m)
    for f in feeds:
        y, ref = ex(f)[0], onnx_tools.run(sess, f)[0]
        # codes x codes is exact in fp32 in any order, then the two scales in the simulator's order: onnxruntime
        # on the rewritten graph gives the accelerator's bits
        assert np.array_equal(y.view(np.uint32), ref.view(np.uint32))
    # Cost: both products on the MMU, never below their roofline; the transposes around them are strided DMA;
    # the scores and probabilities never touch DRAM (streamed through Mul / Softmax).
    rows = {r["name"]: r for r in compiled.cost["layers"]}
    assert rows["MatMul"]["kind"] == rows["MatMul_1"]["kind"] == "matmul" and rows["MatMul"]["batch"] == H
    assert all(rows[k]["cycles"] >= rows[k]["roofline_cycles"] for k in ("MatMul", "MatMul_1"))
    assert rows["MatMul"]["macs"] == rows["MatMul_1"]["macs"] == H * T * T * D
    assert "Transpose_k" not in rows and "Transpose_o" not in rows
    assert rows["Softmax"]["dram_bytes"] == 0 and "Y" in rows["MatMul"]["fused_io"]


def _run(layer: MatMulLayer, a: np.ndarray, b: np.ndarray, cfg):
    """One leading index through the simulator: a [M, K], b [K, N]."""
    (M, K), N = a.shape, b.shape[1]
    spec = codegen.LayerSpec.of_matmul(layer, K, N, 1)
    dp = cfg.datapath(8, 8)
    t = codegen.layer_tiling(spec, M, dp, cfg)
    dram = {
        codegen.X: a,
        codegen.XB: np.ascontiguousarray(b.T),
        codegen.Y: np.zeros((M, N), np.float32),
        **codegen.matmul_scratch(spec),
    }
    stats = Simulator(cfg, dp).run(
        codegen.build_program(spec, t), dram, codegen.tensor_bits(spec), frozenset(codegen.on_chip_tensors(spec))
    )
    return dram[codegen.Y], stats, t


@pytest.mark.parametrize(
    "M, K, N, unsigned",
    [
        (197, 64, 197, False),  # QKᵀ of vit-s16: N = 197 keys, several n-tiles, ragged last one
        (197, 197, 64, True),  # P·V: K = 197 (prime) -> ragged last k-tile; P codes unsigned 0..255
        (600, 40, 24, False),  # more rows than one ACT block
    ],
)
def test_matmul_program_bit_exact(asic_cfg, M, K, N, unsigned):
    rng = np.random.default_rng(K)
    a = (rng.standard_normal((M, K)) * rng.uniform(0.1, 8, (M, 1))).astype(np.float32)
    if unsigned:
        a = np.exp(a - a.max(axis=-1, keepdims=True))
        a /= a.sum(axis=-1, keepdims=True)
    a[1] = 0.0  # an all-zero row: scale floor
    b = (rng.standard_normal((K, N)) * rng.uniform(0.1, 8, (1, N))).astype(np.float32)
    layer = MatMulLayer("mm", "a", "b", "y", 255 if unsigned else 127, unsigned, 127)
    y, stats, t = _run(layer, a, b, asic_cfg)
    ref = reference.matmul(layer, a[None], b[None])[0]
    assert np.array_equal(y.view(np.uint32), ref.view(np.uint32))
    assert stats.macs == M * K * N
    if K == 197:
        assert t.Tk == 32 and K % t.Tk  # the ragged k-tile is exercised
    if M == 600:
        assert t.Tm < M


def test_reference_is_the_quantized_product(asic_cfg):
    """The integer reference equals dequantized codes multiplied in float64, to two f32 roundings; P codes are
    unsigned and reach 255 in every row; a wrong scale width is caught by the bit-exact comparison."""
    rng = np.random.default_rng(7)
    M, K, N = 20, 30, 12
    p = rng.random((M, K)).astype(np.float32)
    p /= p.sum(axis=-1, keepdims=True)
    v = rng.standard_normal((K, N)).astype(np.float32)
    layer = MatMulLayer("pv", "p", "v", "o", 255, True, 127)
    qa, sa = reference.quantize_rows(p, 255, unsigned=True)
    qb, sb = reference.quantize_rows(np.ascontiguousarray(v.T), 127)
    assert qa.min() >= 0 and np.all(qa.max(axis=1) == 255) and np.abs(qb).max() == 127
    exact = (qa.astype(np.float64) * sa) @ (qb.astype(np.float64) * sb).T
    y = reference.matmul(layer, p[None], v[None])[0]
    np.testing.assert_allclose(y, exact, rtol=3e-7, atol=0)
    wrong, *_ = _run(dataclasses.replace(layer, qmax_b=126), p, v, asic_cfg)
    assert not np.array_equal(wrong, y)


# vit-s16's QKᵀ (scores streamed on chip into the softmax) and P·V (output to DRAM), as the build fuses them
@pytest.mark.parametrize("K, N, unsigned, fused", [(64, 197, False, {codegen.X, codegen.Y}),
                                                   (197, 64, True, {codegen.X})])
def test_heads_are_software_pipelined(asic_cfg, K, N, unsigned, fused):
    """Head h+1's bᵀ prologue runs under head h's GEMMs (other W / WS rows, other codes buffer): six heads take
    about their busiest unit's time, well under six one-head runs back to back."""
    dp = asic_cfg.datapath(8, 8)
    on_chip = frozenset(fused | {codegen.W, codegen.WS})

    def run(batch):
        spec = codegen.LayerSpec("mm", K, N, K, 8, 255 if unsigned else 127, False, "matmul", unsigned, 127, batch)
        prog = codegen.build_program(spec, codegen.layer_tiling(spec, 197, dp, asic_cfg))
        return Simulator(asic_cfg, dp, functional=False).run(prog, {}, codegen.tensor_bits(spec), on_chip)

    one, six = run(1), run(6)
    assert six.macs == 6 * one.macs and six.busy == pytest.approx({k: 6 * v for k, v in one.busy.items()})
    assert six.cycles <= 1.05 * max(six.busy.values()) + one.cycles - max(one.busy.values())
    assert six.cycles < 0.85 * 6 * one.cycles


def test_bad_operands_and_configuration_are_refused(asic_cfg):
    from edgecomp.asic.config import AsicConfig
    from edgecomp.targets import load_target

    layer = MatMulLayer("mm", "a", "b", "y", 127, False, 127)
    with pytest.raises(InputError, match="no batched matrix product"):
        reference.matmul(layer, np.zeros((2, 4, 8), np.float32), np.zeros((1, 8, 4), np.float32))
    table = dict(load_target("asic-sim").asic, attention="int4")
    with pytest.raises(ConfigError, match="attention must be one of int8, fp32"):
        AsicConfig.from_table(table)


def test_attention_pattern_needs_softmax_and_activations():
    """A MatMul by a constant (a float Linear) or without a softmax is no attention: nothing is rewritten."""
    from edgecomp.asic.attention import quantize_attention

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Softmax", ["h"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "w2"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "lin",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.ones((8, 8), np.float32), "w"),
            numpy_helper.from_array(np.ones((8, 8), np.float32), "w2"),
        ],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    out, n = quantize_attention(m)
    assert n == 0 and len(out.graph.node) == 3


def test_strip_attention_gives_back_the_float_graph():
    """strip_attention undoes quantize_attention (the fp32-attention model the accuracy comparison uses) and
    leaves other fake-quant alone."""
    from edgecomp import onnx_tools
    from edgecomp.asic.attention import quantize_attention, strip_attention

    m = _attention_graph(2, 20, 16)
    q, _ = quantize_attention(m)
    s = strip_attention(q)
    assert [n.op_type for n in s.graph.node] == [n.op_type for n in m.graph.node]
    f = _feeds(2, 20, 16, False, 1)[0]
    a, b = onnx_tools.run(onnx_tools.session(m), f)[0], onnx_tools.run(onnx_tools.session(s), f)[0]
    assert np.array_equal(a, b)


def test_cost_names_the_bounding_unit_and_the_activation_width_what_if(asic_cfg):
    """Every cost row says which unit bounds it; 16-bit activations (a cost-only what-if) halve the DMA bytes
    of the activation tensors and never make the model slower."""
    from edgecomp.asic.attention import quantize_attention
    from edgecomp.asic.build import trace
    from edgecomp.asic.estimate import estimate
    from edgecomp.asic.partition import partition

    m, _ = quantize_attention(_attention_graph(2, 50, 64))
    P = partition(m)
    shapes, specs = trace(P, _feeds(2, 50, 64, False, 1)[0])
    r32, r16 = estimate(P.graph, specs, shapes, asic_cfg), estimate(P.graph, specs, shapes, asic_cfg, act_bits=16)
    assert all(r["bound"] in ("dma", "mmu", "vcu") for r in r32["layers"])
    assert sum(r32["cycles_by_bound"].values()) == pytest.approx(r32["cycles"])
    assert 0 < r32["compute_floor_cycles"] <= r32["cycles"]  # free data movement can only make it faster
    assert r16["compute_floor_cycles"] == pytest.approx(r32["compute_floor_cycles"])  # compute does not change
    assert r16["dram_bytes"] == pytest.approx(r32["dram_bytes"] / 2) and r16["cycles"] <= r32["cycles"]
