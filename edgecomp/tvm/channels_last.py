"""Run a convolutional network channels-last (NHWC activations, HWIO weights) on CPUs.

ONNX convolutions are NCHW. A 1x1 convolution in NCHW is a GEMM whose vectors run along the output
pixels (49 for a 7x7 stage: three full vectors and one lane) and whose packed panel is the activation;
in NHWC it is ``X[p, c] @ W[c, f]``, vectors along the output channels (a multiple of 16 in every
EfficientNet-Lite0 layer) and a weight panel. A depthwise convolution in NHWC vectorises across channels
with no transposed copy of its input. onnxruntime reorders to a blocked channel layout (NCHWc) for the
same reasons.

``convert(mod, params)``:

1. Relax's ``ConvertLayout`` makes every ``conv2d`` NHWC/HWIO and carries the layout through the
   elementwise ops around it (bias, clip, residual adds), so the only activation transposes left are
   at the graph's input and where a layout-sensitive op (a reduction, a reshape) needs NCHW.
2. Bindings computed from parameters alone by layout ops (the weight ``permute_dims``, the bias
   ``reshape``) and the clip-bound NaN guards are evaluated once here, in numpy, and become parameters:
   the importer keeps initializers as runtime parameters, so they would otherwise run on every call.
   Only size-preserving ops are folded, so a 4-bit weight is never expanded into the parameters.

Exact: only data movement changes; every sum is over the same terms (the schedules pick the order).
"""

from __future__ import annotations

import numpy as np

LAYOUTS = {"relax.nn.conv2d": ["NHWC", "HWIO"]}


def convertible(mod) -> bool:
    """Whether main has NCHW convolutions, all of them on float weights passed as parameters, and no
    transposed convolution. A quantized network's weights are dequantized in the graph (``quant_ops`` lays
    them out for the NCHW kernels): it stays NCHW rather than transposing a dequantized weight on every call.
    TVM legalizes ``conv2d_transpose`` for NCHW only, so a decoder that has one would transpose its
    activations around it; depth-vit measured 1-9 % slower converted in three interleaved runs
    (``bench/results/ablation/depth-vit-channels-last.json``) and stays NCHW
    (``depth-vit-nchw-kept.json``)."""
    from tvm import relax

    main = mod["main"]
    params = set(main.params)
    found = []

    def visit(e):
        op = getattr(e.op, "name", "") if isinstance(e, relax.Call) else ""
        if op == "relax.nn.conv2d":
            found.append(str(e.attrs.data_layout) == "NCHW" and e.args[1] in params)
        elif op == "relax.nn.conv2d_transpose":
            found.append(False)

    relax.analysis.post_order_visit(main.body, visit)
    return bool(found) and all(found)


def convert(mod, params: list[np.ndarray]):
    """(mod, params) with main's convolutions channels-last and the parameter-only layout work folded."""
    from tvm import relax

    if not convertible(mod):
        return mod, params
    mod = relax.transform.ConvertLayout(LAYOUTS)(mod)
    return fold_parameter_layouts(mod, params)


def _eval_permute(call, args):
    axes = call.attrs.axes
    return np.ascontiguousarray(np.transpose(args[0], None if axes is None else [int(a) for a in axes]))


def _eval_reshape(call, args):
    shape = [int(d) for d in call.args[1].values]
    return np.ascontiguousarray(args[0].reshape(shape))


def _eval_isnan(call, args):
    return np.isnan(args[0])


def _eval_where(call, args):
    return np.where(args[0], args[1], args[2]).astype(args[1].dtype)


# size-preserving ops (a reshape, a transpose; the element-wise NaN guards ONNX Clip bounds get)
_FOLDABLE = {
    "relax.permute_dims": (_eval_permute, 1),
    "relax.reshape": (_eval_reshape, 1),
    "relax.isnan": (_eval_isnan, 1),
    "relax.where": (_eval_where, 3),
}


def fold_parameter_layouts(mod, params: list[np.ndarray]):
    """Evaluate main's bindings that depend only on parameters through ``_FOLDABLE`` ops and pass their
    values as parameters instead. Returns (mod, params) with main(*inputs, *params) as before; parameters
    no binding reads any more are dropped."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    from edgecomp.tvm import main_params

    main = mod["main"]
    weights = main_params.bound(mod, params)
    values = dict(weights)  # the parameters, then every folded binding
    folded: dict = {}
    for block in main.body.blocks:
        for b in block.bindings:
            call = b.value
            if not isinstance(b, relax.VarBinding) or not isinstance(call, relax.Call):
                continue
            rule = _FOLDABLE.get(getattr(call.op, "name", ""))
            if rule is None:
                continue
            evaluate, n_args = rule
            args = []
            for a in call.args[:n_args]:
                if isinstance(a, tvm.ir.Constant):
                    args.append(a.value.numpy())
                elif a in values:
                    args.append(values[a])
                else:
                    break
            else:
                values[b.var] = evaluate(call, args)
                folded[b.var] = values[b.var]
    if not folded:
        return mod, params

    @mutator
    class Substitute(PyExprMutator):
        def __init__(self, replace):
            super().__init__()
            self.replace = replace

        def visit_var_binding_(self, binding):
            if binding.var in self.replace:
                return  # its value is a parameter now
            super().visit_var_binding_(binding)

        def visit_dataflow_var_(self, var):
            return self.replace.get(var, var)

        def visit_var_(self, var):
            return self.replace.get(var, var)

    # one parameter per distinct value: every Clip's NaN-guarded bound is the same 0-d 0.0 or 6.0
    replace, by_value = {}, {}
    for v, a in folded.items():
        key = (str(a.dtype), a.shape, a.tobytes())
        if key not in by_value:
            by_value[key] = relax.Var(f"folded_{len(by_value)}", relax.TensorType(list(a.shape), str(a.dtype)))
        replace[v] = by_value[key]
    body = Substitute(replace).visit_expr(main.body)
    mod, params = main_params.rebuild(mod, body, weights, {replace[v]: a for v, a in folded.items()})
    return relax.transform.DeadCodeElimination(["main"])(mod), params


def converters() -> dict:
    """ONNX ``Clip`` as Relax ``maximum`` / ``minimum`` ops. TVM's converter emits TE functions (``call_tir``),
    which ``ConvertLayout`` cannot see through: every ReLU6 between two convolutions would transpose its
    input to NCHW and back. Same arithmetic (both lower to ``max`` / ``min``), same NaN-bound handling."""
    from tvm import relax
    from tvm.relax.frontend.onnx.onnx_frontend import Clip as TVMClip
    from tvm.relax.frontend.onnx.onnx_frontend import OnnxOpConverter

    class Clip(OnnxOpConverter):
        @classmethod
        def _bounded(cls, bb, x, lo, hi):
            if lo is not None:
                x = bb.emit(relax.op.maximum(x, lo))
            if hi is not None:
                x = bb.emit(relax.op.minimum(x, hi))
            return x

        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            dtype = inputs[0].ty.dtype
            lo, hi = attr.get("min"), attr.get("max")
            return cls._bounded(bb, inputs[0], None if lo is None else relax.const(float(lo), dtype),
                                None if hi is None else relax.const(float(hi), dtype))

        @classmethod
        def _impl_v11(cls, bb, inputs, attr, params):
            return cls._impl_v13(bb, inputs, attr, params)

        @classmethod
        def _impl_v13(cls, bb, inputs, attr, params):
            sanitize = TVMClip._sanitize_nan_clip_bound
            lo = None if inputs[1] is None else sanitize(bb, inputs[1], for_min=True)
            hi = None if inputs[2] is None else sanitize(bb, inputs[2], for_min=False)
            return cls._bounded(bb, inputs[0], lo, hi)

    return {"Clip": Clip}
