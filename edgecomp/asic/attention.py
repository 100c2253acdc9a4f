"""Integer attention: fake-quantize the operands of the attention products so the MMU can run them.

edgecomp's quantized models keep the attention products fp32: ``S = MatMul(Q, Kᵀ)``, optional scale /
mask (``Mul`` / ``Div`` by a constant, ``Add``), ``P = Softmax(S, axis=-1)``, ``O = MatMul(P, V)``. The
accelerator has no fp32 matrix unit, so for an ``asic-sim`` build ``quantize_attention`` quantizes the four
operands dynamically:

======  ================  =====================================  ======================================
 value   shape             scale over                             codes
======  ================  =====================================  ======================================
 Q       [..., M, D]       the last axis (per token and head)     int8, [-127, 127]
 Kᵀ      [..., D, N]       axis -2 (per key token and head)       int8, [-127, 127]
 P       [..., M, N]       the last axis (per query row)          uint8, [0, 255] (P >= 0)
 V       [..., N, D]       axis -2 (per channel and head)         int8, [-127, 127]
======  ================  =====================================  ======================================

Each operand's scale is ``s = Clip(Div(ReduceMax(Abs(x), axes, keepdims=1), qmax), 1e-12)`` and its codes
``Clip(Round(Div(x, s)), lo, qmax)`` with ``lo = -qmax`` (signed) or 0 (unsigned) — the ops of edgecomp's
per-token fake-quant. Scales sit on the non-reduced axes (rows of the left operand, columns of the right
one), so a product is ``Mul(Mul(MatMul(qa, qb), s_b), s_a)``: an exact integer sum, then the two scales in the
simulator's order. ``partition`` turns each into one ``edgecomp.asic.MatMulQ`` node (``match_product``). The
rewritten graph is the model the artifact stores (``model.onnx``): onnxruntime on it computes these products
bit-identically to the accelerator (the weight GEMMs still differ by float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgecomp.tvm import int_fusion as F
from edgecomp.tvm.quant_ops import _attrs

QMAX_SIGNED = 127
QMAX_UNSIGNED = 255
EPS = 1e-12
_SCORE_OPS = ("Mul", "Div", "Add")  # scale and mask between QKᵀ and the softmax


@dataclass(frozen=True)
class ActQuant:
    """A matched quantization chain of ``x``: scales ``out`` over ``axis``, codes in [0 or -qmax, qmax]."""

    x: str
    out: str
    qmax: int
    unsigned: bool
    axis: int


def _is_activation(G, name: str) -> bool:
    return G.const(name) is None


def attention_pairs(model: onnx.ModelProto) -> list[tuple[int, int]]:
    """(QKᵀ MatMul index, PV MatMul index) of every attention in ``model`` (module docstring's pattern)."""
    G = F._Graph(model)
    pairs = []
    for sm in G.g.node:
        if sm.op_type != "Softmax" or int(_attrs(sm).get("axis", -1)) != -1:
            continue
        users = G.consumers.get(sm.output[0], [])
        if len(users) != 1 or sm.output[0] in G.outputs:
            continue
        pv = G.g.node[users[0]]
        if pv.op_type != "MatMul" or pv.input[0] != sm.output[0] or not _is_activation(G, pv.input[1]):
            continue
        v = sm.input[0]
        while True:
            i = G.producer.get(v)
            if i is None:
                break
            n = G.g.node[i]
            if n.op_type == "MatMul":
                if all(_is_activation(G, a) for a in n.input) and len(G.consumers.get(v, [])) == 1:
                    pairs.append((i, users[0]))
                break
            if n.op_type not in _SCORE_OPS or len(G.consumers.get(v, [])) != 1:
                break
            v = n.input[0]  # the scores flow through the first input (Mul(S, c), Add(S, mask))
    return pairs


def quantize_attention(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with every attention product quantized; and how many attentions.

    Each product ``MatMul(a, b)`` becomes ``Mul(Mul(MatMul(qa, qb), sb), sa)``: codes times codes (integer
    valued fp32, every partial sum an integer below 2^24, so exact in any summation order), then the column
    and row scales in the simulator's order, which makes onnxruntime's result bit-identical to the
    accelerator's for these products."""
    pairs = attention_pairs(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not pairs:
        return out, 0
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 17)
    nodes = list(out.graph.node)
    consts = {
        "qmax_s": float(QMAX_SIGNED),
        "qmax_u": float(QMAX_UNSIGNED),
        "neg_qmax_s": -float(QMAX_SIGNED),
        "zero": 0.0,
        "eps": EPS,
    }
    prefix = "edgecomp_asic_attn"
    inits = [numpy_helper.from_array(np.array(v, np.float32), f"{prefix}/{k}") for k, v in consts.items()]
    before: dict[int, list] = {}
    after: dict[int, list] = {}
    for qk_i, pv_i in pairs:
        for mi, unsigned_a in ((qk_i, False), (pv_i, True)):
            mm = nodes[mi]
            tag = mm.name or f"#{mi}"
            ca, sa = _chain(mm.input[0], f"{tag}/fq0", -1, unsigned_a, prefix, opset, before.setdefault(mi, []))
            cb, sb = _chain(mm.input[1], f"{tag}/fq1", -2, False, prefix, opset, before[mi])
            y, acc, col = mm.output[0], f"{tag}/acc", f"{tag}/acc_sb"
            mm.input[0], mm.input[1], mm.output[0] = ca, cb, acc
            after[mi] = [
                helper.make_node("Mul", [acc, sb], [col], name=col),
                helper.make_node("Mul", [col, sa], [y], name=f"{tag}/acc_sb_sa"),
            ]
    del out.graph.node[:]
    for i, n in enumerate(nodes):
        out.graph.node.extend(before.get(i, []))
        out.graph.node.append(n)
        out.graph.node.extend(after.get(i, []))
    out.graph.initializer.extend(inits)
    return out, len(pairs)


def _chain(x: str, tag: str, axis: int, unsigned: bool, prefix: str, opset: int, nodes: list) -> tuple[str, str]:
    """Append to ``nodes`` the quantization of ``x`` over ``axis``; return (codes, scale) value names."""
    qmax = f"{prefix}/qmax_u" if unsigned else f"{prefix}/qmax_s"
    lo = f"{prefix}/zero" if unsigned else f"{prefix}/neg_qmax_s"
    v = {k: f"{tag}/{k}" for k in ("abs", "amax", "sdiv", "s", "div", "rnd", "q", "axes")}
    nodes.append(helper.make_node("Abs", [x], [v["abs"]], name=v["abs"]))
    if opset >= 18:
        nodes.append(
            helper.make_node(
                "Constant", [], [v["axes"]], name=v["axes"], value=numpy_helper.from_array(np.array([axis], np.int64))
            )
        )
        nodes.append(helper.make_node("ReduceMax", [v["abs"], v["axes"]], [v["amax"]], name=v["amax"], keepdims=1))
    else:
        nodes.append(helper.make_node("ReduceMax", [v["abs"]], [v["amax"]], name=v["amax"], axes=[axis], keepdims=1))
    nodes += [
        helper.make_node("Div", [v["amax"], qmax], [v["sdiv"]], name=v["sdiv"]),
        helper.make_node("Clip", [v["sdiv"], f"{prefix}/eps"], [v["s"]], name=v["s"]),
        helper.make_node("Div", [x, v["s"]], [v["div"]], name=v["div"]),
        helper.make_node("Round", [v["div"]], [v["rnd"]], name=v["rnd"]),
        helper.make_node("Clip", [v["rnd"], lo, qmax], [v["q"]], name=v["q"]),
    ]
    return v["q"], v["s"]


def _codes(G, value: str, axis: int) -> ActQuant | None:
    """The quantization (``_chain``'s form, scales over ``axis``) whose codes are ``value``; ``out`` = its scale."""
    _, clip = G.node(value, "Clip")
    if clip is None or len(clip.input) < 3:
        return None
    _, rnd = G.node(clip.input[0], "Round")
    lo, hi = G.scalar(clip.input[1]), G.scalar(clip.input[2])
    if rnd is None or lo is None or hi is None or hi != round(hi) or not 1 <= hi <= 255:
        return None
    if lo not in (0.0, -hi) or (lo == -hi and hi > 127):
        return None
    _, div = G.node(rnd.input[0], "Div")
    if div is None:
        return None
    s_name = div.input[1]
    _, sclip = G.node(s_name, "Clip")
    if sclip is None or (len(sclip.input) > 2 and sclip.input[2]):
        return None
    _, sdiv = G.node(sclip.input[0], "Div")
    if sdiv is None or G.scalar(sdiv.input[1]) != hi or not (G.scalar(sclip.input[1]) or 0) > 0:
        return None
    _, rmax = G.node(sdiv.input[0], "ReduceMax")
    if rmax is None:
        return None
    attrs = _attrs(rmax)
    axes = list(attrs.get("axes", [])) or (list(G.const(rmax.input[1])) if len(rmax.input) > 1 else [])
    _, ab = G.node(rmax.input[0], "Abs")
    if axes != [axis] or int(attrs.get("keepdims", 1)) != 1 or ab is None or ab.input[0] != div.input[0]:
        return None
    return ActQuant(div.input[0], s_name, int(hi), lo == 0.0, axis)


@dataclass(frozen=True)
class Product:
    """A matched quantized attention product: ``out = Mul(Mul(MatMul(codes(a), codes(b)), s_b), s_a)``."""

    a: ActQuant
    b: ActQuant
    out: str
    nodes: tuple[int, int, int]  # MatMul, Mul(s_b), Mul(s_a)


def match_product(G, i: int) -> Product | None:
    """The quantized product (``quantize_attention``'s form) whose MatMul is node ``i``, or None."""
    mm = G.g.node[i]
    if mm.op_type != "MatMul" or mm.domain not in ("", "ai.onnx") or len(mm.input) != 2:
        return None
    a, b = _codes(G, mm.input[0], -1), _codes(G, mm.input[1], -2)
    users = G.consumers.get(mm.output[0], [])
    if a is None or b is None or b.unsigned or len(users) != 1 or mm.output[0] in G.outputs:
        return None
    m1 = G.g.node[users[0]]
    if m1.op_type != "Mul" or list(m1.input) != [mm.output[0], b.out]:
        return None
    users = G.consumers.get(m1.output[0], [])
    if len(users) != 1 or m1.output[0] in G.outputs:
        return None
    m2 = G.g.node[users[0]]
    if m2.op_type != "Mul" or list(m2.input) != [m1.output[0], a.out]:
        return None
    return Product(a, b, m2.output[0], (i, G.producer[m1.output[0]], users[0]))


def strip_attention(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph before ``quantize_attention``: every quantized product becomes ``MatMul(a, b)`` of its float
    inputs again (the fp32-attention model, for accuracy comparisons). Weight layers are left alone."""
    G = F._Graph(model)
    insert: dict[int, list] = {}
    removed: set[int] = set()
    for i in range(len(G.g.node)):
        p = match_product(G, i)
        if p is not None:
            removed.update(p.nodes)
            insert.setdefault(p.nodes[2], []).append(
                helper.make_node("MatMul", [p.a.x, p.b.x], [p.out], name=G.g.node[i].name)
            )
    return F.splice(model, insert, removed, [], "")
