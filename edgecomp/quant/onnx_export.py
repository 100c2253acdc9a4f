"""Finish an exported quantized ONNX graph: int4 placeholders -> ``com.microsoft.DequantizeLinear``.

torch has no int4 buffers, so ``QuantConv2d`` exports its packed nibbles as a uint8 initializer behind
an ``edgecomp.Int4Weight`` node. ONNX INT4/UINT4 raw data uses the same packing (two per byte, low
nibble first, row-major), so the rewrite only retypes the bytes: nothing is widened.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

MS_DOMAIN = "com.microsoft"


def finalize(model):
    """Rewrite placeholders in place and drop opset imports no node uses; returns ``model``."""
    graph = model.graph
    _hoist_integer_constants(graph)
    inits = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        nodes.append(node)
        if node.domain == "edgecomp" and node.op_type == "Int4Weight":
            nodes += _rewrite_int4_weight(node, inits, graph)  # its Reshape right after: order stays topological
    if len(nodes) != len(graph.node):
        del graph.node[:]
        graph.node.extend(nodes)
    used = {n.domain for n in graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used]
    if MS_DOMAIN in used and all(o.domain != MS_DOMAIN for o in keep):
        keep.append(helper.make_opsetid(MS_DOMAIN, 1))
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def _hoist_integer_constants(graph) -> None:
    """Constant nodes holding int8/uint8 tensors (the exporter's form of non-buffer weight tensors) become
    initializers, so importers treat them as weights (runtime parameters) rather than code constants."""
    keep = []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.data_type in (TensorProto.UINT8, TensorProto.INT8) and len(value.dims) > 0:
            t = TensorProto()
            t.CopyFrom(value)
            t.name = node.output[0]
            graph.initializer.append(t)
        else:
            keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def _rewrite_int4_weight(node, inits, graph) -> list:
    """Retype in place; returns the nodes to follow it: a Reshape when the weight is dequantized as ``rows``
    ([O * G, K / G]: one scale per output channel and group) and viewed back as ``shape``, else none."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    shape, signed = list(attrs["shape"]), bool(attrs["signed"])
    rows = list(attrs.get("rows", shape))
    dtype = TensorProto.INT4 if signed else TensorProto.UINT4
    packed = inits[node.input[0]]
    _retype(packed, dtype, rows)
    if len(node.input) > 2:  # per-row zero points, same int4 type as the codes
        _retype(inits[node.input[2]], dtype, [rows[0]])
    node.domain, node.op_type = MS_DOMAIN, "DequantizeLinear"
    del node.attribute[:]
    node.attribute.extend([helper.make_attribute("axis", 0)])
    if rows == shape:
        return []
    out = node.output[0]
    node.output[0] = f"{out}_rows"
    shape_name = f"{out}_shape"
    graph.initializer.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), shape_name))
    return [helper.make_node("Reshape", [node.output[0], shape_name], [out], name=f"{out}_view")]


def _retype(tensor, dtype: int, dims: list[int]) -> None:
    raw = numpy_helper.to_array(tensor).tobytes()
    tensor.ClearField("int32_data")
    tensor.data_type = dtype
    del tensor.dims[:]
    tensor.dims.extend(dims)
    tensor.raw_data = raw
