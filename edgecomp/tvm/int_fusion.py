"""Integer Linear layers: fuse per-token fake-quant + a quantized weight into integer kernels (before import).

edgecomp's quantize stage exports a W8A8 / W4A8 / W4A4 Linear as float ops onnxruntime runs as is::

    s = Clip(Div(ReduceMax(Abs(x), axes=[-1]), qmax), eps)        # per-token scale
    a = Mul(Clip(Round(Div(x, s)), -qmax, qmax), s)                # fake-quantized activations
    y = MatMulNBits(a, B, scales)                   (int4 weights)
      | MatMul(a, DequantizeLinear(W_int8, w_scale[, 0]))          (int8 weights, [K, N] or Transpose of [N, K])
    [y = Add(y, bias)]

``fuse`` finds that pattern in the ONNX graph, where weights are initializers and every value is visible,
and replaces it by ``edgecomp.QuantizeRows(x) -> (codes, s, row sums)`` (one per quantized tensor and group
size, shared by e.g. q/k/v) and ``edgecomp.QGemm(x, codes, s, row sums, w, ws, zp, bias)`` per layer, whose
weights are repacked into the kernel's layout (``kernels/cpu/qgemm.py``; int4 stays 4-bit). ``x`` is passed
for its shape only. The converters (``registered``) lower both to the registry's already-scheduled kernels. A layer
the kernel cannot take (``legal`` gives the reason) keeps the float path; ``fuse`` says which and why.
Activations quantized some other way (LogNP polishing, per-sample conv inputs) are not matched.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgecomp.tvm.quant_ops import DOMAIN, _attrs

QUANTIZE_ROWS = "QuantizeRows"
QGEMM = "QGemm"


@dataclass(frozen=True)
class FakeQuant:
    x: str  # the float input
    out: str  # the fake-quantized output (the Mul)
    qmax: int


@dataclass
class Fused:
    layers: list[str]  # fused MatMul / MatMulNBits node names
    skipped: dict[str, str]  # node name -> why it kept the float path
    merges: list[str] = field(default_factory=list)  # token-merge scopes run by the fused kernel (merge_fusion)
    merges_unfused: dict[str, str] = field(default_factory=dict)  # scope -> why its ops stayed separate
    attention: int = 0  # attention chains run by the fused kernel (attention_fusion)
    attention_unfused: dict[str, str] = field(default_factory=dict)  # softmax -> matmul binding -> why not


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.g = model.graph
        self.inits = {t.name: t for t in self.g.initializer}
        self.producer = {o: i for i, n in enumerate(self.g.node) for o in n.output}
        self.consumers: dict[str, list[int]] = {}
        for i, n in enumerate(self.g.node):
            for name in n.input:
                self.consumers.setdefault(name, []).append(i)
        self.outputs = {o.name for o in self.g.output}

    def node(self, name: str, op: str):
        i = self.producer.get(name)
        if i is None or self.g.node[i].op_type != op or self.g.node[i].domain not in ("", "ai.onnx"):
            return None, None
        return i, self.g.node[i]

    def const(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        i = self.producer.get(name)
        if i is not None and self.g.node[i].op_type == "Constant":
            return numpy_helper.to_array(self.g.node[i].attribute[0].t)
        return None

    def scalar(self, name: str) -> float | None:
        v = self.const(name) if name else None
        return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None


def _fake_quant(G: _Graph, mul_index: int) -> FakeQuant | None:
    """Match the per-token symmetric fake-quant ending at Mul node ``mul_index``."""
    mul = G.g.node[mul_index]
    if mul.op_type != "Mul" or len(mul.input) != 2:
        return None
    for q_name, s_name in (mul.input, mul.input[::-1]):
        _, clip = G.node(q_name, "Clip")
        if clip is None or len(clip.input) < 3:
            continue
        _, rnd = G.node(clip.input[0], "Round")
        lo, hi = G.scalar(clip.input[1]), G.scalar(clip.input[2])
        if rnd is None or lo is None or hi is None or lo != -hi or hi != round(hi) or not 1 <= hi <= 127:
            continue
        _, div = G.node(rnd.input[0], "Div")
        if div is None or div.input[1] != s_name:
            continue
        x = div.input[0]
        _, sclip = G.node(s_name, "Clip")
        if sclip is None or (len(sclip.input) > 2 and sclip.input[2]):
            continue
        _, sdiv = G.node(sclip.input[0], "Div")
        if sdiv is None or G.scalar(sdiv.input[1]) != hi or not (G.scalar(sclip.input[1]) or 0) > 0:
            continue
        _, rmax = G.node(sdiv.input[0], "ReduceMax")
        if rmax is None:
            continue
        attrs = _attrs(rmax)
        axes = list(attrs.get("axes", [])) or (list(G.const(rmax.input[1])) if len(rmax.input) > 1 else [])
        if axes != [-1] or int(attrs.get("keepdims", 1)) != 1:
            continue
        _, ab = G.node(rmax.input[0], "Abs")
        if ab is None or ab.input[0] != x:
            continue
        return FakeQuant(x, mul.output[0], int(hi))
    return None


@dataclass
class _Layer:
    stored: np.ndarray  # int [N, K]: int4 stored u in [0, 15] / int8 signed codes (kernels/cpu/qgemm.pack_weights)
    scales: np.ndarray  # f32 [N, K/G]
    zero_points: np.ndarray | None  # int [N, K/G] for asymmetric int4
    G: int
    wbits: int
    out: str  # the output the fused node writes
    bias: np.ndarray | None
    removed: tuple[int, ...]  # nodes the fused node replaces (matmul, dq / transpose, bias add)
    flat: bool = False  # the output is [M, N] (onnxruntime's Reshape -> Gemm form), not [..., N]


def _unpack_u4(packed: np.ndarray, N: int, K: int) -> np.ndarray:
    """MatMulNBits bytes (rows of ceil(K / 2), low nibble first) -> int32 [N, K] values 0..15."""
    import torch

    from edgecomp.quant.primitives import unpack_int4

    return unpack_int4(torch.from_numpy(packed.reshape(N, -1).astype(np.uint8)), K).numpy().astype(np.int32)


def _matmul_nbits(G: _Graph, i: int) -> _Layer | None | str:
    node = G.g.node[i]
    a = _attrs(node)
    K, N, block = int(a["K"]), int(a["N"]), int(a["block_size"])
    if int(a.get("bits", 4)) != 4 or K % block:
        return f"MatMulNBits bits={a.get('bits', 4)} K={K} block={block}"
    if len(node.input) > 4 and node.input[4]:
        return "MatMulNBits with g_idx"
    B, S = G.const(node.input[1]), G.const(node.input[2])
    Z = G.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    if Z is not None and Z.dtype != np.uint8:
        return "MatMulNBits with float zero points (a shipped grid): the integer kernel takes 4-bit ones"
    if B is None or S is None or (len(node.input) > 3 and node.input[3] and Z is None):
        return "MatMulNBits weights / uint8 zero points are not initializers"
    zp = None if Z is None else _unpack_u4(Z, N, K // block)
    bias = G.const(node.input[5]) if len(node.input) > 5 and node.input[5] else None
    return _Layer(_unpack_u4(B, N, K), S.reshape(N, K // block).astype(np.float32), zp, block, 4,
                  node.output[0], bias, (i,))


def _matmul_int8(G: _Graph, i: int, a_input: str) -> _Layer | None | str:
    """``MatMul(a, W)``, ``Gemm(a, W, bias)`` or onnxruntime's folded ``Gemm(Reshape(a, [M, K]), W, bias)`` (2-D),
    with W an int8 ``DequantizeLinear`` (``[K, N]`` per column, or ``[N, K]`` per row then transposed)."""
    node = G.g.node[i]
    removed, flat, bias, trans_b = [i], False, None, False
    if node.op_type in ("Reshape", "Gemm"):
        if node.op_type == "Reshape":
            shape = G.const(node.input[1])
            users = G.consumers.get(node.output[0], [])
            if shape is None or shape.size != 2 or len(users) != 1 or G.g.node[users[0]].op_type != "Gemm":
                return None
            removed.append(users[0])
            gemm = G.g.node[users[0]]
        else:  # a 2-D input: Gemm reads the quantized tensor itself
            gemm = node
        a = _attrs(gemm)
        if gemm.input[0] not in (node.output[0], a_input) or a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 \
                or a.get("beta", 1.0) != 1.0:
            return "Gemm with transA / alpha / beta"
        if len(gemm.input) > 2 and gemm.input[2]:
            bias = G.const(gemm.input[2])
            if bias is None or bias.ndim != 1:
                return "Gemm bias is not a 1-D initializer"
        node, flat, trans_b = gemm, True, bool(a.get("transB", 0))
    elif node.input[0] != a_input or len(node.input) != 2:
        return None
    b = node.input[1]
    it, tr = G.node(b, "Transpose")
    transposed = trans_b  # whether W (below) is stored [N, K]
    if tr is not None:
        if list(_attrs(tr).get("perm", [1, 0])) != [1, 0] or len(G.consumers.get(b, [])) != 1:
            return "MatMul weight transposed other than [1, 0]"
        removed.append(it)
        b, transposed = tr.input[0], not transposed
    idq, dq = G.node(b, "DequantizeLinear")
    if dq is None:
        return None  # a float MatMul (e.g. attention) that happens to read a quantized tensor
    W, s = G.const(dq.input[0]), G.const(dq.input[1])
    zp = G.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    if W is None or s is None or W.ndim != 2 or W.dtype != np.int8 or int(_attrs(dq).get("block_size", 0)):
        return "DequantizeLinear weight is not a 2-D int8 initializer"
    if zp is not None and np.any(zp != 0):
        return "int8 weight with a nonzero zero point"
    if len(G.consumers.get(b, [])) != 1:
        return "dequantized weight has other consumers"
    removed.append(idq)
    axis = int(_attrs(dq).get("axis", 1)) % 2
    codes = W if transposed else W.T  # [N, K]
    N, K = codes.shape
    n_axis = 0 if transposed else 1  # the axis of W that indexes output channels
    if s.size == 1:
        scales = np.full((N, 1), float(s.reshape(-1)[0]), np.float32)
    elif axis == n_axis and s.size == N:
        scales = s.reshape(N, 1).astype(np.float32)
    else:
        return "int8 weight not quantized per output channel"
    if bias is not None and bias.shape != (N,):
        return "Gemm bias is not [N]"
    return _Layer(codes.astype(np.int32), scales, None, K, 8, node.output[0], bias, tuple(removed), flat)


def _with_bias(G: _Graph, layer: _Layer, N: int) -> None:
    """Absorb a following ``Add(y, bias[N])`` into the layer."""
    users = G.consumers.get(layer.out, [])
    if layer.bias is not None or len(users) != 1 or layer.out in G.outputs:
        return
    add = G.g.node[users[0]]
    if add.op_type != "Add":
        return
    other = add.input[1] if add.input[0] == layer.out else add.input[0]
    b = G.const(other)
    if b is None or b.shape != (N,) or b.dtype != np.float32:
        return
    layer.bias, layer.out, layer.removed = b, add.output[0], (*layer.removed, users[0])


def fuse(model: onnx.ModelProto, target) -> tuple[onnx.ModelProto, Fused]:
    """Return (model with fused integer Linear layers, what was fused / skipped). ``target``: a tvm Target.
    The input model is not modified."""
    from edgecomp._kernels import kernel
    from edgecomp._kernels.cpu.qgemm import QGemm, isa_for, pack_weights

    G = _Graph(model)
    qgemm, isa = kernel("qgemm"), isa_for(target)
    report = Fused([], {})
    new_nodes: dict[int, list] = {}  # insert before node index -> nodes
    new_inits: list[TensorProto] = []
    removed: set[int] = set()
    for mi, node in enumerate(G.g.node):
        fq = _fake_quant(G, mi) if node.op_type == "Mul" else None
        if fq is None:
            continue
        rows: dict[int, list[str]] = {}  # group size -> QuantizeRows outputs
        for name, layer in weight_layers(G, fq):
            if isinstance(layer, str):
                report.skipped[name] = layer
                continue
            N, K = layer.stored.shape
            _with_bias(G, layer, N)
            why = qgemm.legal(QGemm(1, K, N, layer.G, layer.wbits, fq.qmax), target)
            if why:
                report.skipped[name] = why
                continue
            if layer.G not in rows:
                base = f"{fq.out}_rows{layer.G}"
                rows[layer.G] = [f"{base}_codes", f"{base}_scale", f"{base}_sums"]
                new_nodes.setdefault(mi + 1, []).append(helper.make_node(
                    QUANTIZE_ROWS, [fq.x], rows[layer.G], name=f"{base}_quantize", domain=DOMAIN,
                    K=K, G=layer.G, qmax=fq.qmax))
            w, ws, zp = pack_weights(layer.stored, layer.scales, layer.G, layer.wbits, isa, layer.zero_points)
            bias = layer.bias if layer.bias is not None else np.zeros(N, np.float32)
            prefix = f"{name}_qgemm"
            tensors = {f"{prefix}_w": w, f"{prefix}_ws": ws, f"{prefix}_zp": zp, f"{prefix}_bias": bias}
            new_inits += [numpy_helper.from_array(v, k) for k, v in tensors.items()]
            new_nodes.setdefault(max(layer.removed) + 1, []).append(helper.make_node(
                QGEMM, [fq.x, *rows[layer.G], *tensors], [layer.out], name=prefix, domain=DOMAIN,
                K=K, N=N, G=layer.G, wbits=layer.wbits, qmax=fq.qmax, flat=int(layer.flat)))
            removed.update(layer.removed)
            report.layers.append(name)
    if not report.layers:
        return model, report
    return splice(model, new_nodes, removed, new_inits, DOMAIN), report


def weight_layers(G, fq):
    """(name, layer) for every consumer of the fake-quant output ``fq.out`` that is a quantized Linear:
    ``layer`` is its matched weight form (``_matmul_nbits`` / ``_matmul_int8``), or a string saying why that
    weight cannot take the integer path. Consumers that are no weight layer are left out."""
    for ui in G.consumers.get(fq.out, []):
        user = G.g.node[ui]
        if user.op_type == "MatMulNBits" and user.domain == "com.microsoft" and user.input[0] == fq.out:
            layer = _matmul_nbits(G, ui)
        elif user.op_type in ("MatMul", "Reshape", "Gemm"):
            layer = _matmul_int8(G, ui, fq.out)
        else:
            continue
        if layer is not None:
            yield user.name or f"#{ui}", layer


def splice(model, insert: dict[int, list], removed: set[int], new_inits: list, domain: str):
    """A copy of ``model`` with the nodes ``insert[i]`` placed before node i (``insert[len(nodes)]`` at the end),
    the nodes at indices ``removed`` dropped, then every node whose outputs nothing reads (the matched fake-quant
    chains), every initializer (and initializer-backed graph input) nothing reads, plus ``new_inits``, and the
    opset of ``domain`` declared. ``model`` is not modified."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name for t in out.graph.initializer}
    nodes = []
    for i, n in enumerate(out.graph.node):
        nodes += insert.get(i, [])
        if i not in removed:
            nodes.append(n)
    nodes += insert.get(len(out.graph.node), [])
    del out.graph.node[:]
    out.graph.node.extend(_live(nodes, {o.name for o in out.graph.output}))
    used = {n for node in out.graph.node for n in node.input}
    kept = [t for t in out.graph.initializer if t.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + list(new_inits))
    inputs = [v for v in out.graph.input if v.name in used or v.name not in inits]
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    if not any(o.domain == domain for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(domain, 1))
    return out


def _live(nodes: list, graph_outputs: set[str]) -> list:
    """``nodes`` without those whose outputs nobody reads (the fused fake-quant chains), in order."""
    needed = set(graph_outputs)
    keep = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    return keep[::-1]


# ---------------------------------------------------------------------------------------------------
# Relax converters


def _rows(shape) -> int:
    return int(math.prod(shape[:-1]))


def add_kernel(bb, name: str, func, hint: str):
    """Add the registry kernel ``name``'s PrimFunc to the module being imported, marked scheduled (no rule or
    tuner touches it) and named by its kernel in the lower report."""
    func = func.without_attr("global_symbol").with_attr("tirx.is_scheduled", True).with_attr("edgecomp.kernel", name)
    return bb.add_func(func, hint)


@contextlib.contextmanager
def registered(target):
    """Within the block, TVM's ONNX importer also converts QuantizeRows / QGemm and TokenMerge (``merge_fusion``),
    building kernels for ``target``, and Clip into Relax ops (``channels_last``)."""
    from tvm.relax.frontend.onnx import onnx_frontend

    from edgecomp.tvm import channels_last, merge_fusion

    original = onnx_frontend._get_convert_map
    extra = {**channels_last.converters(), **converters(target), **merge_fusion.converters(target)}
    onnx_frontend._get_convert_map = lambda: {**original(), **extra}
    try:
        yield
    finally:
        onnx_frontend._get_convert_map = original


def converters(target) -> dict:
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

    from edgecomp._kernels import kernel
    from edgecomp._kernels.cpu.qgemm import QGemm
    from edgecomp.tvm.quant_ops import _static_shape

    class QuantizeRowsOp(OnnxOpConverter):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            x = inputs[0]
            shape = _static_shape(x)
            M, K = _rows(shape), shape[-1]
            p = QGemm(M, K, 16, int(attr["G"]), 8, int(attr["qmax"]))
            gv = add_kernel(bb, "quantize_rows", kernel("quantize_rows").build(p, target),
                            f"quantize_rows_{M}x{K}_g{p.G}")
            x2 = bb.emit(relax.op.reshape(x, (M, K)))
            out = [relax.TensorType((p.Mp, K), "int8"), relax.TensorType((p.Mp,), "float32"),
                   relax.TensorType((p.Mp, K // p.G), "int32")]
            return bb.emit(relax.call_tir(gv, [x2], out))

    class QGemmOp(OnnxOpConverter):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            x = inputs[0]
            shape = _static_shape(x)
            M = _rows(shape)
            p = QGemm(M, int(attr["K"]), int(attr["N"]), int(attr["G"]), int(attr["wbits"]), int(attr["qmax"]))
            gv = add_kernel(bb, "qgemm", kernel("qgemm").build(p, target),
                            f"qgemm_w{p.wbits}_{M}x{p.K}x{p.N}_g{p.G}")
            y = bb.emit(relax.call_tir(gv, list(inputs[1:]), relax.TensorType((M, p.N), "float32")))
            return y if int(attr.get("flat", 0)) else bb.emit(relax.op.reshape(y, (*shape[:-1], p.N)))

    return {QUANTIZE_ROWS: QuantizeRowsOp, QGEMM: QGemmOp}
