"""Store constant tensors that repeat along an axis once: shrink such initializers to size 1 on that axis.

Constant folding materialises broadcasts. BERT's token-type embedding is the clearest case: one row,
folded into a [1, L, D] initializer that a single Add consumes. That is L - 1 redundant copies, written
to model.onnx and to params.bin alike.

``shrink_uniform_initializers(model, feed) -> (model, report)`` keeps size 1 on every axis along which an
initializer holds identical values, as long as all of its consumers are numpy-broadcasting elementwise
ops (Add, Sub, Mul, Div) and each consumer's output shape stays the same. The other operand must then span
that axis, so broadcasting restores the same values and the result is bit-identical. The other operands'
shapes are measured: one onnxruntime run on ``feed`` exposes them as outputs. That covers contrib ops
(MatMulNBits, GatherBlockQuantized), which ONNX shape inference leaves unshaped. Graphs with symbolic
input dimensions are left alone: a shape measured on one feed says nothing about another. So are graphs
with control flow (If / Loop / Scan), whose bodies may read the same initializers.
"""

from __future__ import annotations

import numpy as np

BROADCAST_OPS = ("Add", "Sub", "Mul", "Div")  # elementwise, multidirectional (numpy) broadcasting
MIN_ELEMENTS = 1024  # smaller constants are not worth a pass


def uniform_axes(a: np.ndarray) -> list[int]:
    """Axes of ``a`` (size > 1) along which every slice equals the first one."""
    return [ax for ax in range(a.ndim)
            if a.shape[ax] > 1 and np.array_equal(a, np.broadcast_to(a.take([0], axis=ax), a.shape))]


def _aligned(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return (1,) * (rank - len(shape)) + tuple(shape)


def _keeps_output_shape(full: tuple[int, ...], shrunk: tuple[int, ...], other: tuple[int, ...]) -> bool:
    rank = max(len(full), len(other))
    try:
        return (np.broadcast_shapes(_aligned(shrunk, rank), _aligned(other, rank))
                == np.broadcast_shapes(_aligned(full, rank), _aligned(other, rank)))
    except ValueError:
        return False


def _static_inputs(model) -> bool:
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if not dims and not vi.type.tensor_type.HasField("shape"):
            return False
        if any(not d.HasField("dim_value") for d in dims):
            return False
    return True


def _measured_shapes(model, names: set[str], feed: dict) -> dict[str, tuple[int, ...]]:
    """Shapes of the node outputs ``names`` on ``feed``, from one onnxruntime run with them as outputs."""
    import onnx

    from edgecomp import onnx_tools

    if not names:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    order = sorted(names - present)
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in order)
    sess = onnx_tools.session(probe, optimize=False)
    wanted = [o.name for o in sess.get_outputs() if o.name in names]
    return {n: tuple(np.shape(v)) for n, v in zip(wanted, sess.run(wanted, feed), strict=True)}


def shrink_uniform_initializers(model, feed: dict) -> tuple[object, dict]:
    """``model`` with repeated initializers stored once (see module doc) and a report
    ``{"initializers": [{"name", "from", "to"}], "bytes_saved"}``. The model is changed in place."""
    from onnx import numpy_helper

    report: dict = {"initializers": [], "bytes_saved": 0}
    graph = model.graph
    if not _static_inputs(model) or any(a.type in (a.GRAPH, a.GRAPHS) for n in graph.node for a in n.attribute):
        return model, report  # control-flow bodies read outer initializers: their uses are not counted here
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    candidates = []
    for init in graph.initializer:
        uses = consumers.get(init.name, [])
        if init.name in outputs or not uses or any(
                n.op_type not in BROADCAST_OPS or len(n.input) != 2 or list(n.input).count(init.name) != 1
                for n in uses):
            continue
        if np.prod(init.dims, dtype=np.int64) < MIN_ELEMENTS:
            continue
        a = numpy_helper.to_array(init)
        axes = uniform_axes(a)
        if axes:
            candidates.append((init, a, axes, [n.input[1] if n.input[0] == init.name else n.input[0] for n in uses]))
    if not candidates:
        return model, report

    shrinking = {init.name for init, *_ in candidates}  # a pair of them would change each other's outputs
    candidates = [c for c in candidates if not shrinking & set(c[3])]
    known = {t.name: tuple(t.dims) for t in graph.initializer}
    known.update({vi.name: tuple(d.dim_value for d in vi.type.tensor_type.shape.dim) for vi in graph.input})
    others = {o for *_, names in candidates for o in names}
    known.update(_measured_shapes(model, others - set(known), feed))
    for init, a, axes, other_names in candidates:
        shape = list(a.shape)
        for ax in axes:
            trial = shape[:ax] + [1] + shape[ax + 1:]
            if all(_keeps_output_shape(a.shape, tuple(trial), known[o]) for o in other_names):
                shape = trial
        if tuple(shape) == a.shape:
            continue
        small = np.ascontiguousarray(a[tuple(slice(0, s) for s in shape)])
        init.CopyFrom(numpy_helper.from_array(small, init.name))
        report["initializers"].append({"name": init.name, "from": list(a.shape), "to": shape})
        report["bytes_saved"] += a.nbytes - small.nbytes
    return model, report
