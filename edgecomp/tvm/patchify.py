"""Patch-embedding convolutions -> a layout change and one GEMM (ONNX graph, before import).

A convolution whose stride equals its kernel, with no padding, dilation or groups (a ViT's patch embedding:
16x16 kernel, stride 16) reads every input pixel exactly once, so im2col is a pure reshape::

    X [N, Cin, H, W] -> [N, Cin, Ho, kh, Wo, kw] -> Transpose -> [N Ho Wo, Cin kh kw]
    Y = X' @ Wᵀ (+ b) -> [N, Ho, Wo, Cout] -> Transpose -> [N, Cout, Ho, Wo]

and the product runs through the register-tiled GEMM instead of the convolution schedule (vit-s16's
patch embedding: 0.8 ms as a convolution on 2 cores). Exact up to the summation order of the dot products.
A float weight initializer is reshaped and transposed once here; any other weight (a DequantizeLinear
output) gets the Reshape and Transpose in the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from edgecomp.tvm.quant_ops import _attrs


def _patch_conv(node, shapes: dict) -> tuple | None:
    """(N, Cin, Ho, kh, Wo, kw, Cout) when ``node`` is a patchifying Conv with static shapes, else None."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return None
    x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
    if x is None or w is None or len(x) != 4 or len(w) != 4:
        return None
    attrs = _attrs(node)
    kernel = tuple(attrs.get("kernel_shape", w[2:]))
    if (tuple(attrs.get("strides", (1, 1))) != kernel or any(attrs.get("pads", (0, 0, 0, 0)))
            or any(d != 1 for d in attrs.get("dilations", (1, 1))) or attrs.get("group", 1) != 1
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID")):
        return None
    (N, Cin, H, W), (kh, kw) = x, kernel
    if kernel == (1, 1) or H % kh or W % kw or w[1] != Cin:
        return None
    return N, Cin, H // kh, kh, W // kw, kw, w[0]


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    g = shape_inference.infer_shapes(model).graph
    out = {t.name: tuple(t.dims) for t in g.initializer}
    for v in list(g.input) + list(g.value_info):
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)
        if v.type.tensor_type.HasField("shape") and None not in dims:
            out[v.name] = dims
    return out


def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every patchifying Conv replaced (see the module docstring); ``model`` itself is unchanged."""
    if not any(n.op_type == "Conv" for n in model.graph.node):
        return model
    shapes = _static_shapes(model)
    inits = {t.name: t for t in model.graph.initializer}
    nodes, new_inits, changed = [], [], False
    for i, node in enumerate(model.graph.node):
        dims = _patch_conv(node, shapes)
        if dims is None:
            nodes.append(node)
            continue
        N, Cin, Ho, kh, Wo, kw, Cout = dims
        K, p = Cin * kh * kw, f"{node.name or f'conv{i}'}/patchify"

        def const(name, values, p=p):
            new_inits.append(numpy_helper.from_array(np.asarray(values, np.int64), f"{p}/{name}"))
            return f"{p}/{name}"

        x, w = node.input[0], node.input[1]
        nodes += [helper.make_node("Reshape", [x, const("s6", [N, Cin, Ho, kh, Wo, kw])], [f"{p}/x6"]),
                  helper.make_node("Transpose", [f"{p}/x6"], [f"{p}/xt"], perm=[0, 2, 4, 1, 3, 5]),
                  helper.make_node("Reshape", [f"{p}/xt", const("s2", [N * Ho * Wo, K])], [f"{p}/a"])]
        src = inits.get(w)
        if src is not None and src.data_type == TensorProto.FLOAT:
            weight = f"{p}/wt"
            new_inits.append(numpy_helper.from_array(
                np.ascontiguousarray(numpy_helper.to_array(src).reshape(Cout, K).T), weight))
        else:
            nodes += [helper.make_node("Reshape", [w, const("sw", [Cout, K])], [f"{p}/w2"]),
                      helper.make_node("Transpose", [f"{p}/w2"], [f"{p}/wt"], perm=[1, 0])]
            weight = f"{p}/wt"
        y = f"{p}/y"
        nodes.append(helper.make_node("MatMul", [f"{p}/a", weight], [y], name=f"{p}/MatMul"))
        if len(node.input) > 2 and node.input[2]:
            nodes.append(helper.make_node("Add", [y, node.input[2]], [f"{p}/yb"]))
            y = f"{p}/yb"
        nodes += [helper.make_node("Reshape", [y, const("s4", [N, Ho, Wo, Cout])], [f"{p}/y4"]),
                  helper.make_node("Transpose", [f"{p}/y4"], [node.output[0]], perm=[0, 3, 1, 2])]
        changed = True
    if not changed:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    used = {n for node in nodes for n in node.input} | {o.name for o in out.graph.output}
    gone = {t.name for t in out.graph.initializer if t.name not in used}  # the convolutions' own weights
    kept = [t for t in out.graph.initializer if t.name not in gone]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept + new_inits)
    for infos in (out.graph.input, out.graph.value_info):  # drop their stale declarations
        live = [v for v in infos if v.name not in gone]
        del infos[:]
        infos.extend(live)
    return out
