"""ONNX -> Relax, with every unsupported operator named (op type and node) before TVM sees it."""

from __future__ import annotations

from edgecomp.errors import UnsupportedOpError
from edgecomp.specs import TensorSpec


def supported_ops() -> set[str]:
    from tvm.relax.frontend.onnx import onnx_frontend

    return set(onnx_frontend._get_convert_map())


def check_ops(model) -> None:
    """Raise UnsupportedOpError for the first node TVM's ONNX importer has no converter for."""
    known = supported_ops()
    for i, node in enumerate(model.graph.node):
        if node.op_type not in known:
            where = node.name or f"#{i}"
            domain = f"{node.domain}." if node.domain else ""
            raise UnsupportedOpError(f"ONNX op {domain}{node.op_type} (node {where!r}) has no TVM lowering",
                                     hint="re-export without it (e.g. a lower opset or a decomposed form)")


def to_relax(model, inputs: tuple[TensorSpec, ...]):
    """Return (IRModule with main(*inputs, *params), params list of numpy arrays in call order)."""
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    check_ops(model)
    model = _inline_shape_constants(model)
    mod = from_onnx(model, shape_dict={s.name: list(s.shape) for s in inputs},
                    dtype_dict={s.name: s.dtype for s in inputs}, keep_params_in_input=True)
    mod, params = relax.frontend.detach_params(mod)
    return mod, [p.numpy() for p in params.get("main", [])]


def _inline_shape_constants(model):
    """Turn non-float initializers (shapes, axes, indices) into Constant nodes.

    With ``keep_params_in_input=True`` TVM's importer makes every initializer a runtime parameter,
    so int64 shape tensors (e.g. SmolLM2's grouped-query key/value repeat) become runtime shape
    lookups and leave tensors of unknown shape that cannot be scheduled. Weights stay parameters.
    """
    import onnx
    from onnx import helper

    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
    moved = [t for t in model.graph.initializer if t.data_type not in floats]
    if not moved:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keep = [t for t in out.graph.initializer if t.data_type in floats]
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
