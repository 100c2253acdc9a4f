"""Partition a quantized ONNX graph: integer Linear layers go to the accelerator, the rest stays on the host.

A partition is edgecomp's per-token fake-quant feeding an int4 ``MatMulNBits`` or an int8
``DequantizeLinear -> MatMul / Gemm`` weight (+ bias), the pattern ``edgecomp.tvm.int_fusion`` matches for
the CPU kernels; its matchers are reused so the two backends accept exactly the same layers. The match runs
on the ONNX graph, where weights are initializers. ``partition(model)`` returns the host graph, in which each
partition is one ``edgecomp.asic.Gemm`` node (input: the float activation, output: the layer's output), and
the ``GemmLayer`` records holding the integer weights. Everything else is a host op; ``host_ops`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from edgecomp.tvm import int_fusion as F

DOMAIN = "edgecomp.asic"
OP = "Gemm"
OP_MATMUL = "MatMulQ"


@dataclass(frozen=True)
class GemmLayer:
    """One accelerator partition: y = s * sum_g ws[:, g] * (q @ (u - z)[:, g-block]ᵀ) + b.

    codes: int32 [N, K] stored weights (int4: u in 0..15; int8: signed w); scales: f32 [N, K/G];
    zeros: int32 [N, K/G] (int4; symmetric int4 has z = 8) or None (int8, z = 0); bias: f32 [N] or None.
    x: the float activation value read; out: the value written; qmax: activation codes in [-qmax, qmax].
    flat: the output is [M, N] (onnxruntime's Reshape -> Gemm form) rather than [..., N].
    """

    name: str
    x: str
    out: str
    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray | None
    bias: np.ndarray | None
    G: int
    wbits: int
    qmax: int
    flat: bool

    @property
    def N(self) -> int:
        return int(self.codes.shape[0])

    @property
    def K(self) -> int:
        return int(self.codes.shape[1])

    @property
    def abits(self) -> int:
        return 8 if self.qmax > 7 else 4

    def integer_zeros(self) -> np.ndarray:
        """z [N, K/G] as int32 (zeros for int8 weights, 8 for symmetric int4)."""
        if self.zeros is not None:
            return self.zeros.astype(np.int32)
        z = 8 if self.wbits == 4 else 0
        return np.full(self.scales.shape, z, np.int32)


@dataclass(frozen=True)
class MatMulLayer:
    """One activation x activation partition (an attention product, ``edgecomp.asic.attention``):
    ``y = (qa @ qb) * sb[col] * sa[row]`` for a [..., M, K] (``a``) and b [..., K, N] (``b``), same leading dims.

    qa: a quantized per row (last axis) to [-qmax_a, qmax_a], or [0, qmax_a] when ``unsigned_a``; qb: b quantized
    per column (axis -2) to [-qmax_b, qmax_b]. ``out``: the value written ([..., M, N])."""

    name: str
    a: str
    b: str
    out: str
    qmax_a: int
    unsigned_a: bool
    qmax_b: int


@dataclass(frozen=True)
class Partitioned:
    graph: onnx.ModelProto  # host graph with one edgecomp.asic.Gemm / MatMulQ node per partition
    layers: tuple[GemmLayer, ...]
    skipped: dict  # node name -> why a quantized-looking layer stays on the host
    matmuls: tuple[MatMulLayer, ...] = ()


def partition(model: onnx.ModelProto) -> Partitioned:
    """Match every accelerator partition of ``model`` (not modified)."""
    G = F._Graph(model)
    layers: list[GemmLayer] = []
    skipped: dict[str, str] = {}
    removed: set[int] = set()
    insert: dict[int, list] = {}
    for mi, node in enumerate(G.g.node):
        fq = F._fake_quant(G, mi) if node.op_type == "Mul" else None
        if fq is None and node.op_type == "Div":
            fq = _lognp_decoded(G, mi)
        if fq is None:
            continue
        for name, layer in F.weight_layers(G, fq):
            if isinstance(layer, str):
                skipped[name] = layer
                continue
            N, K = layer.stored.shape
            F._with_bias(G, layer, N)
            layers.append(GemmLayer(name, fq.x, layer.out, layer.stored.astype(np.int32),
                                    layer.scales.astype(np.float32),
                                    None if layer.zero_points is None else layer.zero_points.astype(np.int32),
                                    None if layer.bias is None else np.asarray(layer.bias, np.float32),
                                    int(layer.G), int(layer.wbits), int(fq.qmax), bool(layer.flat)))
            removed.update(layer.removed)
            insert.setdefault(max(layer.removed) + 1, []).append(
                helper.make_node(OP, [fq.x], [layer.out], name=name, domain=DOMAIN))
    matmuls = []
    for mi in range(len(G.g.node)):
        mm = _act_matmul(G, mi)
        if mm is not None:
            layer, nodes = mm
            matmuls.append(layer)
            removed.update(nodes)
            insert.setdefault(max(nodes) + 1, []).append(
                helper.make_node(OP_MATMUL, [layer.a, layer.b], [layer.out], name=layer.name, domain=DOMAIN))
    out = F.splice(model, insert, removed, [], DOMAIN)
    return Partitioned(out, tuple(layers), skipped, tuple(matmuls))


def _act_matmul(G, i: int) -> tuple[MatMulLayer, tuple[int, ...]] | None:
    """A quantized product of two activations at MatMul node ``i`` (``edgecomp.asic.attention``'s form: codes x
    codes, then the column and row scales), with the nodes it replaces."""
    from edgecomp.asic.attention import match_product

    p = match_product(G, i)
    if p is None:
        return None
    name = G.g.node[i].name or f"#{i}"
    return MatMulLayer(name, p.a.x, p.b.x, p.out, p.a.qmax, p.a.unsigned, p.b.qmax), p.nodes


def _lognp_decoded(G, div_index: int):
    """The end of a LogNP fake-quant (``edgecomp.quant.activations.lognp_fake_quant``): ``Div(Mul(Mul(Sign(q),
    Clip(Round(.), 0, 127)), gmax), 127)``, i.e. int8 table values times one per-token float. The decode stays a
    VCU op (log2 / exp2); the partition re-quantizes its output per token with qmax 127, which gives back the
    table values (``|a| / (max|a| / 127)`` is within a few ulp of them), so the GEMM is int8 x weight codes."""
    div = G.g.node[div_index]
    if len(div.input) != 2 or G.scalar(div.input[1]) != 127.0:
        return None
    _, mul = G.node(div.input[0], "Mul")
    if mul is None:
        return None
    for side in mul.input:
        _, inner = G.node(side, "Mul")
        if inner is None:
            continue
        ops = {G.g.node[G.producer[v]].op_type for v in inner.input if v in G.producer}
        clip = next((G.g.node[G.producer[v]] for v in inner.input
                     if v in G.producer and G.g.node[G.producer[v]].op_type == "Clip"), None)
        if ops == {"Sign", "Clip"} and clip is not None and len(clip.input) == 3 \
                and G.scalar(clip.input[1]) == 0.0 and G.scalar(clip.input[2]) == 127.0:
            return F.FakeQuant(div.output[0], div.output[0], 127)
    return None


def is_partition(node) -> bool:
    return node.domain == DOMAIN and node.op_type in (OP, OP_MATMUL)


def is_matmul(node) -> bool:
    """An activation x activation partition (two inputs: a, b)."""
    return node.domain == DOMAIN and node.op_type == OP_MATMUL
