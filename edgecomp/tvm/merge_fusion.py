"""Token-merging layers -> one fused kernel each (ONNX graph, before import).

The merge stage runs every layer's plan and merge inside a ``LayerMerge`` submodule (``edgecomp.merge.vit``),
so the exporter names those ops ``/merges_<method>.<layer>/...`` (about 35 of them for ToMe, interleaved with the
attention after onnxruntime's folding). ``fuse`` finds each such scope, checks that it is a closed region
with the interface of one merge::

    (x [1, N, C], k [1, H, N, D], size [1, N, 1]) -> (x' [1, N - r, C], size' [1, N - r, 1])

(``size`` may be an initializer: all ones before the first merge) and replaces it by one
``edgecomp.TokenMerge`` node, which ``converters`` lower to the kernel registry's ``token_merge``. Scopes it
cannot replace keep their ops and are reported with the reason (another method, a tracked source map, a
batch above 1, a kernel that is not legal for the target). The lowering check against onnxruntime covers
every replaced region: the kernel makes the graph's decisions, so the outputs agree to float rounding.
"""

from __future__ import annotations

import heapq
import re

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgecomp.tvm.quant_ops import DOMAIN, _attrs

TOKEN_MERGE = "TokenMerge"
SCOPE = re.compile(r"^(?:.*/)?merges_([a-z]+)\.(\d+)/")  # method, layer (``merges_<method>[layer]``)
FUSED_METHODS = ("tome",)


def _shapes(model: onnx.ModelProto, names: set[str], inputs) -> dict[str, tuple]:
    """Static shape of every float32 value in ``names`` (initializers included), from one onnxruntime run on
    zero feeds (``inputs``: TensorSpecs; shapes are static, so the values do not matter). ONNX shape inference
    is not enough: it stops at contrib ops such as MatMulNBits, which quantized models are made of."""
    from edgecomp import onnx_tools

    out = {t.name: tuple(t.dims) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    wanted = sorted(n for n in names - known - set(out) if n)
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in wanted)
    feeds = {s.name: np.zeros(s.shape, s.dtype) for s in inputs}
    values = onnx_tools.session(probe, optimize=False).run(None, feeds)
    for v, a in zip(probe.graph.output, values, strict=True):
        if getattr(a, "dtype", None) == np.float32:
            out[v.name] = tuple(a.shape)
    return out


def _region(model: onnx.ModelProto, members: list[int], shapes: dict, inits: set[str],
            readers: dict[str, set[int]]):
    """(x, k, heads_axis, size, x_out, size_out, r) of the scope's nodes ``members``, or a string saying why not.

    The region is found by its interface, not its op list: x is the one dynamic [1, N, C] input, k the one
    dynamic rank-4 input, reduced over its heads axis by a ReduceMean (1 for [1, H, N, D]; 2 when onnxruntime's
    folding moved the transpose into the reduction: [1, N, H, D]), size the other factor of the Mul that reads x
    (x * size). size' may be unread (the last merging layer). ``readers``: value -> indices of the nodes that
    read it (-1: a graph output)."""
    nodes = [model.graph.node[i] for i in members]
    inside = set(members)
    produced = {o for n in nodes for o in n.output}
    outputs = [o for n in nodes for o in n.output if readers.get(o, set()) - inside]
    dynamic = {v for n in nodes for v in n.input if v and v not in produced and v not in inits}
    xs = [v for v in dynamic if len(shapes.get(v, ())) == 3 and shapes[v][2] > 1]
    ks = [v for v in dynamic if len(shapes.get(v, ())) == 4]
    if len(xs) != 1 or len(ks) != 1 or not 1 <= len(outputs) <= 2:
        return (f"not one merge: {len(dynamic)} dynamic inputs (x-like {len(xs)}, keys-like {len(ks)}), "
                f"{len(outputs)} outputs read outside")
    (x,), (k,) = xs, ks
    B, N, C = shapes[x]
    if B != 1:
        return f"batch {B} (the kernel takes batch 1)"
    means = [n for n in nodes if k in n.input]
    mean = _attrs(means[0]) if len(means) == 1 and means[0].op_type == "ReduceMean" else {}
    axes = mean.get("axes")
    if axes is None or len(axes) != 1 or axes[0] not in (1, 2) or shapes[k][3 - axes[0]] != N \
            or mean.get("keepdims", 1) != 0:
        return "the keys are not averaged over heads by one ReduceMean"
    muls = [n for n in nodes if n.op_type == "Mul" and x in n.input and len(n.input) == 2]
    size = next((v for v in muls[0].input if v != x), None) if len(muls) == 1 else None
    if size is None or shapes.get(size) != (1, N, 1) or (size not in dynamic and size not in inits):
        return "no size input [1, N, 1] (x * size)"
    if dynamic - {x, k, size}:
        return f"unexpected inputs {sorted(dynamic - {x, k, size})}"
    found = {o: shapes.get(o) for o in outputs}
    x_out = next((o for o, sh in found.items() if sh and len(sh) == 3 and sh[0] == 1 and sh[2] == C), None)
    if x_out is None or not 0 < N - found[x_out][1] <= (N - 1) // 2:
        return f"outputs {list(found.values())} do not include x [1, N - r, {C}]"
    M = found[x_out][1]
    size_out = next((o for o in outputs if o != x_out), None)
    if size_out is not None and found[size_out] != (1, M, 1):
        return f"output {found[size_out]} is not size [1, {M}, 1]"
    return x, k, axes[0], size, x_out, size_out, N - M


def fuse(model: onnx.ModelProto, target, inputs) -> tuple[onnx.ModelProto, list[str], dict[str, str]]:
    """(model with every replaceable merge scope fused, fused scope names, scope -> why it was not). ``target``:
    a tvm Target; ``inputs``: the model's TensorSpecs. Runs before any edgecomp-only op is in the graph (the
    shapes come from onnxruntime). The input model is not modified."""
    from edgecomp._kernels import kernel
    from edgecomp._kernels.cpu.token_merge import TokenMerge

    scopes: dict[str, list[int]] = {}
    for i, node in enumerate(model.graph.node):
        m = SCOPE.match(node.name)
        if m:
            scopes.setdefault(m.group(0), []).append(i)
    if not scopes:
        return model, [], {}
    nodes = model.graph.node
    shapes = _shapes(model, {v for i in sum(scopes.values(), []) for v in (*nodes[i].input, *nodes[i].output)},
                     inputs)
    inits = {t.name for t in model.graph.initializer}
    readers: dict[str, set[int]] = {o.name: {-1} for o in model.graph.output}
    for i, node in enumerate(nodes):
        for v in node.input:
            readers.setdefault(v, set()).add(i)
    fused, skipped = [], {}
    replace: dict[int, onnx.NodeProto] = {}  # first member -> the fused node
    removed: set[int] = set()
    for scope, members in scopes.items():
        name = scope.strip("/")
        method = SCOPE.match(scope).group(1)
        if method not in FUSED_METHODS:
            skipped[name] = f"no fused kernel for method {method!r}"
            continue
        found = _region(model, members, shapes, inits, readers)
        if isinstance(found, str):
            skipped[name] = found
            continue
        x, k, heads_axis, size, x_out, size_out, r = found
        _, N, C = shapes[x]
        problem = TokenMerge(N, C, shapes[k][heads_axis], shapes[k][3], r, heads_axis=heads_axis)
        why = kernel("token_merge").legal(problem, target)
        if why:
            skipped[name] = why
            continue
        replace[members[0]] = helper.make_node(TOKEN_MERGE, [x, k, size], [x_out, size_out or f"{name}/size_unread"],
                                               name=f"{name}/TokenMerge", domain=DOMAIN, r=r, heads_axis=heads_axis)
        removed.update(members)
        fused.append(name)
    if not fused:
        return model, fused, skipped
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = [replace[i] if i in replace else n for i, n in enumerate(model.graph.node)
             if i in replace or i not in removed]
    del out.graph.node[:]
    out.graph.node.extend(_topological(nodes, {v.name for v in out.graph.input} |
                                       {t.name for t in out.graph.initializer}))
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out, fused, skipped


def _topological(nodes: list, available: set[str]) -> list:
    """``nodes`` in an order where every input is produced first, as close to the given order as possible (a
    fused node sits where its region's first op was; some of the region's inputs come later in the folded
    graph). Kahn's algorithm, always taking the earliest ready node."""
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    waiting = [0] * len(nodes)
    users: dict[int, list[int]] = {}
    for i, n in enumerate(nodes):
        deps = {producer[v] for v in n.input if v and v not in available and v in producer}
        waiting[i] = len(deps)
        for d in deps:
            users.setdefault(d, []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users.get(i, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise ValueError("merge fusion left a cycle in the graph")
    return order


def converters(target) -> dict:
    """TVM ONNX-importer converters for the fused node (see ``int_fusion.registered``)."""
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

    from edgecomp._kernels import kernel
    from edgecomp._kernels.cpu.token_merge import TokenMerge
    from edgecomp.tvm.int_fusion import add_kernel
    from edgecomp.tvm.quant_ops import _static_shape

    class TokenMergeOp(OnnxOpConverter):
        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            x, k, size = inputs
            (_, N, C), k_shape = _static_shape(x), _static_shape(k)
            axis = int(attr["heads_axis"])
            p = TokenMerge(N, C, k_shape[axis], k_shape[3], int(attr["r"]), heads_axis=axis)
            gv = add_kernel(bb, "token_merge", kernel("token_merge").build(p, target), f"token_merge_{N}x{C}_r{p.r}")
            M = N - p.r
            return bb.emit(relax.call_tir(gv, [x, k, size], [relax.TensorType((1, M, C), "float32"),
                                                            relax.TensorType((1, M, 1), "float32")]))

    return {TOKEN_MERGE: TokenMergeOp}
