"""ONNX -> Relax, with every unsupported operator named (op type and node) before TVM sees it.

Besides TVM's own converters, edgecomp's quantised-weight forms are imported (``quant_ops``):
``com.microsoft.MatMulNBits`` and ``DequantizeLinear`` on 4-bit initializers (rewritten before import
into ``edgecomp`` ops on the packed bytes) and 8-bit ``DequantizeLinear`` weights (laid out for the
GEMM/conv that consumes them); see ``quant_ops.rewrite``.
"""

from __future__ import annotations

import math

from edgecomp.errors import UnsupportedOpError
from edgecomp.specs import TensorSpec


def supported_ops() -> set[str]:
    from tvm.relax.frontend.onnx import onnx_frontend

    from edgecomp.tvm import quant_ops

    quant_ops.register()
    return set(onnx_frontend._get_convert_map())


def _unsupported(node, i: int, why: str):
    where = node.name or f"#{i}"
    domain = f"{node.domain}." if node.domain else ""
    return UnsupportedOpError(f"ONNX op {domain}{node.op_type} (node {where!r}) {why}",
                              hint="re-export without it (e.g. a lower opset or a decomposed form)")


def check_ops(model) -> None:
    """Raise UnsupportedOpError for the first node TVM's ONNX importer has no converter for
    (or, for the quantisation ops, whose attributes/inputs the converters do not handle)."""
    from edgecomp.tvm import quant_ops

    known = supported_ops()
    for i, node in enumerate(model.graph.node):
        if node.op_type not in known:
            raise _unsupported(node, i, "has no TVM lowering")
    bad = quant_ops.unsupported(model)
    if bad is not None:
        i, node, reason = bad
        raise _unsupported(node, i, f"has no TVM lowering for {reason}")


def to_relax(model, inputs: tuple[TensorSpec, ...], target=None, kernels: bool = True):
    """Return (IRModule with main(*inputs, *params), params list of numpy arrays in call order, fusion report).

    With a tvm ``target`` and ``kernels``, token-merge layers (``merge_fusion``) and then the quantized Linear
    layers the target's integer kernels can run (``int_fusion``) are fused first, and after import each
    attention's ``q kᵀ -> softmax -> · v`` on a CPU (``attention_fusion``); the report names them and why any
    others were not."""
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from edgecomp.tvm import (
        attention_fusion,
        channels_last,
        int_fusion,
        merge_fusion,
        patchify,
        prepack,
        quant_ops,
        reshape_sinking,
    )

    check_ops(model)  # (also registers the quantisation converters)
    report = int_fusion.Fused([], {})
    if target is not None and kernels:
        model, merges, merges_unfused = merge_fusion.fuse(model, target, inputs)  # (onnxruntime still runs it)
        model, report = int_fusion.fuse(model, target)
        report.merges, report.merges_unfused = merges, merges_unfused
    model = patchify.rewrite(model)
    model = quant_ops.rewrite(model)
    model = _pretranspose_gemm_weights(model)
    model = _inline_shape_constants(model)
    if target is not None and str(target.kind.name) == "cuda":  # CUDA C++ prints tensor names as identifiers
        model = _c_identifiers(model)
    with int_fusion.registered(target):
        mod = from_onnx(model, shape_dict={s.name: list(s.shape) for s in inputs},
                        dtype_dict={s.name: s.dtype for s in inputs}, keep_params_in_input=True)
    mod = reshape_sinking.sink(mod)  # (exact: elementwise ops commute with a reshape)
    if target is not None and kernels and str(target.kind.name) == "llvm":
        mod, attention = attention_fusion.fuse(mod, target)
        report.attention, report.attention_unfused = attention.fused, attention.unfused
    mod, params = relax.frontend.detach_params(mod)
    params = [p.numpy() for p in params.get("main", [])]
    if target is not None and kernels and str(target.kind.name) == "llvm":
        mod, params = channels_last.convert(mod, params)
        mod, params = prepack.rewrite(mod, params, target)
    return mod, params, report


def _pretranspose_gemm_weights(model):
    """``Gemm(transB=1)`` on a 2-D float initializer -> the same Gemm on the transposed initializer, ``transB=0``.

    The importer keeps initializers as runtime parameters (``keep_params_in_input``), so a transposed weight
    would be transposed again on every call: EfficientNet-Lite0's 1280x1000 classifier spent more time in
    that transpose than in any convolution. Transposing once here is exact. An initializer that other
    nodes also read gets a transposed copy under a new name.
    """
    import onnx
    from onnx import numpy_helper

    def trans_b(node):
        return next((a for a in node.attribute if a.name == "transB" and a.i == 1), None)

    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    readers: dict[str, int] = {}
    for node in out.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    changed = False
    for i, node in enumerate(out.graph.node):
        attr = trans_b(node) if node.op_type == "Gemm" and len(node.input) > 1 else None
        src = inits.get(node.input[1]) if attr is not None else None
        if src is None or src.data_type != onnx.TensorProto.FLOAT or len(src.dims) != 2:
            continue
        weight = numpy_helper.to_array(src).T.copy()
        if readers[src.name] == 1:
            src.CopyFrom(numpy_helper.from_array(weight, src.name))
        else:
            node.input[1] = f"{src.name}__transposed_{i}"
            out.graph.initializer.append(numpy_helper.from_array(weight, node.input[1]))
        attr.i = 0
        changed = True
    return out if changed else model


def c_identifier(name: str, taken: set[str]) -> str:
    """``name`` as a C identifier not in ``taken`` (non-word characters -> ``_``, a leading ``_`` before a digit,
    ``_1``, ``_2``... on a clash); the result is added to ``taken``."""
    import re

    base = re.sub(r"\W", "_", name)
    base = base if re.match(r"[A-Za-z_]", base) else f"_{base}"
    new, i = base, 0
    while new in taken:
        i += 1
        new = f"{base}_{i}"
    taken.add(new)
    return new


def _c_identifiers(model):
    """``model`` with every initializer and intermediate tensor name that is no C identifier renamed
    (``/blocks_0/attn/Constant_output_0`` -> ``_blocks_0_attn_Constant_output_0``); graph inputs and
    outputs keep their names (feeds and results are matched by them).

    The importer names TE placeholders, hence kernel arguments, after ONNX tensors; TVM's CUDA codegen
    prints them unchanged and nvcc rejects the source (LLVM codegen never prints them)."""
    import re

    import onnx

    g = model.graph
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names = {t.name for t in g.initializer} | {n for node in g.node for n in (*node.input, *node.output)}
    taken = set(names)
    mapping: dict[str, str] = {}
    for name in sorted(names - keep):
        if not name or re.fullmatch(r"[A-Za-z_]\w*", name):
            continue
        mapping[name] = c_identifier(name, taken)
    if not mapping:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for t in out.graph.initializer:
        t.name = mapping.get(t.name, t.name)
    for v in out.graph.value_info:
        v.name = mapping.get(v.name, v.name)
    for node in out.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    return out


def _is_param(t) -> bool:
    """Whether initializer ``t`` stays a runtime parameter: float tensors, and 8-bit integer tensors of more
    than one element (quantised weights, packed 4-bit weights, per-axis zero points). A one-element zero
    point becomes a constant (a 0-d one is folded into the arithmetic of TVM's dequantize lowering)."""
    from onnx import TensorProto

    if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16):
        return True
    return t.data_type in (TensorProto.INT8, TensorProto.UINT8) and math.prod(t.dims) > 1


def _inline_shape_constants(model):
    """Turn shape-like initializers (integer/bool shapes, axes, indices, scalar zero points) into Constant nodes.

    With ``keep_params_in_input=True`` TVM's importer makes every initializer a runtime parameter,
    so int64 shape tensors (e.g. SmolLM2's grouped-query key/value repeat) become runtime shape
    lookups and leave tensors of unknown shape that cannot be scheduled. Weights (``_is_param``) stay
    parameters: float tensors and int8/uint8 quantised weights, so the artifact's parameters keep their
    stored precision and FoldConstant cannot fold a dequantisation into a float constant.
    """
    import onnx
    from onnx import helper

    moved = [t for t in model.graph.initializer if not _is_param(t)]
    if not moved:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [t for t in out.graph.initializer if _is_param(t)]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    names = {t.name for t in moved}
    inputs = [i for i in out.graph.input if i.name not in names]
    del out.graph.input[:]
    out.graph.input.extend(inputs)
    consts = [helper.make_node("Constant", [], [t.name], value=t, name=f"edgecomp_const_{i}")
              for i, t in enumerate(moved)]
    nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(consts + nodes)
    return out
