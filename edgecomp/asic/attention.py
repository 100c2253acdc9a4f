"""Integer attention: fake-quantize the operands of the attention products so the MMU can run them.

edgecomp's quantized models keep the attention products fp32: ``S = MatMul(Q, Kᵀ)``, optional scale /
mask (``Mul`` / ``Div`` by a constant, ``Add``), ``P = Softmax(S, axis=-1)``, ``O = MatMul(P, V)``. The
accelerator has no fp32 matrix unit, so for an ``asic-sim`` build ``quantize_attention`` inserts dynamic
fake-quant chains (the same ops as edgecomp's per-token activation fake-quant) on the four operands:

======  ================  =====================================  ======================================
 value   shape             scale over                             codes
======  ================  =====================================  ======================================
 Q       [..., M, D]       the last axis (per token and head)     int8, [-127, 127]
 Kᵀ      [..., D, N]       axis -2 (per key token and head)       int8, [-127, 127]
 P       [..., M, N]       the last axis (per query row)          uint8, [0, 255] (P >= 0)
 V       [..., N, D]       axis -2 (per channel and head)         int8, [-127, 127]
======  ================  =====================================  ======================================

Each chain is ``s = Clip(Div(ReduceMax(Abs(x), axes, keepdims=1), qmax), 1e-12)``,
``Mul(Clip(Round(Div(x, s)), lo, qmax), s)`` with ``lo = -qmax`` (signed) or 0 (unsigned). Scales sit on the
non-reduced axes of each product (rows of the left operand, columns of the right one), so both products are
exact integer sums times ``s_row * s_col``: ``partition`` turns each into one ``edgecomp.asic.MatMulQ`` node
(``match_matmuls``). The rewritten graph is the model the artifact stores (``model.onnx``): onnxruntime on it
and the simulator compute the same quantized attention, to float rounding.
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
    """A matched fake-quant chain: ``out`` = fake-quantized ``x``, scales over ``axis``, codes in [lo, qmax]."""

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
    """A copy of ``model`` with fake-quant chains on Q, Kᵀ, P and V of every attention; and how many."""
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
    insert: dict[int, list] = {}
    for qk_i, pv_i in pairs:
        for mi, slot, axis, unsigned in (
            (qk_i, 0, -1, False),
            (qk_i, 1, -2, False),
            (pv_i, 0, -1, True),
            (pv_i, 1, -2, False),
        ):
            mm = nodes[mi]
            tag = f"{mm.name or f'#{mi}'}/fq{slot}"
            chain, y = _chain(mm.input[slot], tag, axis, unsigned, prefix, opset)
            insert.setdefault(mi, []).extend(chain)
            mm.input[slot] = y
    del out.graph.node[:]
    for i, n in enumerate(nodes):
        out.graph.node.extend(insert.get(i, []))
        out.graph.node.append(n)
    out.graph.initializer.extend(inits)
    return out, len(pairs)


def _chain(x: str, tag: str, axis: int, unsigned: bool, prefix: str, opset: int) -> tuple[list, str]:
    qmax = f"{prefix}/qmax_u" if unsigned else f"{prefix}/qmax_s"
    lo = f"{prefix}/zero" if unsigned else f"{prefix}/neg_qmax_s"
    v = {k: f"{tag}/{k}" for k in ("abs", "amax", "sdiv", "s", "div", "rnd", "q", "y", "axes")}
    nodes = [helper.make_node("Abs", [x], [v["abs"]], name=v["abs"])]
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
        helper.make_node("Mul", [v["q"], v["s"]], [v["y"]], name=v["y"]),
    ]
    return nodes, v["y"]


def match(G, value: str, axis: int) -> ActQuant | None:
    """The fake-quant chain (``_chain``'s form, scales over ``axis``) that produces ``value``, or None."""
    _, mul = G.node(value, "Mul")
    if mul is None or len(mul.input) != 2:
        return None
    for q_name, s_name in (mul.input, mul.input[::-1]):
        _, clip = G.node(q_name, "Clip")
        if clip is None or len(clip.input) < 3:
            continue
        _, rnd = G.node(clip.input[0], "Round")
        lo, hi = G.scalar(clip.input[1]), G.scalar(clip.input[2])
        if rnd is None or lo is None or hi is None or hi != round(hi) or not 1 <= hi <= 255:
            continue
        if lo not in (0.0, -hi) or (lo == -hi and hi > 127):
            continue
        _, div = G.node(rnd.input[0], "Div")
        _, sclip = G.node(s_name, "Clip")
        if div is None or div.input[1] != s_name or sclip is None or (len(sclip.input) > 2 and sclip.input[2]):
            continue
        _, sdiv = G.node(sclip.input[0], "Div")
        if sdiv is None or G.scalar(sdiv.input[1]) != hi or not (G.scalar(sclip.input[1]) or 0) > 0:
            continue
        _, rmax = G.node(sdiv.input[0], "ReduceMax")
        if rmax is None:
            continue
        attrs = _attrs(rmax)
        axes = list(attrs.get("axes", [])) or (list(G.const(rmax.input[1])) if len(rmax.input) > 1 else [])
        _, ab = G.node(rmax.input[0], "Abs")
        if axes != [axis] or int(attrs.get("keepdims", 1)) != 1 or ab is None or ab.input[0] != div.input[0]:
            continue
        return ActQuant(div.input[0], value, int(hi), lo == 0.0, axis)
    return None


def strip_attention(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph before ``quantize_attention``: every MatMul whose two inputs are its chains reads their float
    inputs again (the fp32-attention model, for accuracy comparisons). Weight layers are left alone."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    G = F._Graph(out)
    for node in out.graph.node:
        if node.op_type == "MatMul" and len(node.input) == 2:
            a, b = match(G, node.input[0], -1), match(G, node.input[1], -2)
            if a is not None and b is not None:
                node.input[0], node.input[1] = a.x, b.x
    return F.splice(out, {}, set(), [], "")
