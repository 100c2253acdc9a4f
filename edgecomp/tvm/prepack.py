"""Pointwise (1x1) channels-last convolutions with their weights packed into GEMM panels at build.

The GEMM tiler (``cpu_schedule._gemm``) copies each ``K x jt`` column panel of its B operand into a
contiguous buffer before the register tiles stream through it; for a convolution B is the weight, the same
on every call. In EfficientNet-Lite0's 7x7 and 14x14 stages the weights are most of the memory traffic
(49 output pixels per weight), so the copy costs as much as the arithmetic it feeds. ``rewrite`` stores
such a weight already packed, ``Wp[f // jt, c, f % jt] = W[0, 0, c, f]``, and replaces the ``conv2d`` by
the same sum read from ``Wp``; ``PackedPointwise`` schedules it as a GEMM that reads the panels in place.

Only convolutions whose register tile divides the problem are rewritten (``jt`` divides the output
channels, the tile's rows divide the pixels), so the GEMM needs no padded copies. The products and their
order of summation over ``c`` are those of the unpacked schedule.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

from edgecomp.tvm.cpu_schedule import (
    _NO_EPILOGUE,
    _TILES,
    _epilogue,
    _extent,
    _gemm,
    _inline_chain,
    _name,
    _one_mac,
    _vector_lanes,
)

MIN_ACCUMULATORS = 12  # below this a register tile does not hide the FMA latency: keep the unpacked path


def tile(pixels: int, channels: int, target) -> tuple[int, int, int] | None:
    """The register tile (rows, vectors per row, lanes) for a ``pixels x channels`` packed GEMM: the first of
    the tiler's preferred tiles that divides both extents exactly (no padded copies), with full-width
    vectors, else half-width ones (24 or 40 output channels: 3 or 5 8-lane vectors), else None."""
    full = _vector_lanes(target)
    for lanes in (full, full // 2) if full >= 16 else (full,):
        for rows, jv in _TILES:
            if rows * jv >= MIN_ACCUMULATORS and pixels % rows == 0 and channels % (jv * lanes) == 0:
                return rows, jv, lanes
    return None


def _pointwise(call, params: dict):
    """(C, F) when ``call`` is a float32 1x1 stride-1 unpadded NHWC/HWIO conv2d on a parameter weight."""
    a = call.attrs
    if (str(a.data_layout), str(a.kernel_layout), str(a.out_layout)) != ("NHWC", "HWIO", "NHWC"):
        return None
    if int(a.groups) != 1 or any(int(v) != 1 for v in (*a.strides, *a.dilation)) or any(int(p) for p in a.padding):
        return None
    w = call.args[1]
    if w not in params or params[w].dtype != np.float32 or params[w].shape[:2] != (1, 1):
        return None
    return params[w].shape[2], params[w].shape[3]


def rewrite(mod, params: list[np.ndarray], target):
    """(mod, params) with every eligible pointwise conv2d of main reading a build-time packed weight."""
    from tvm import relax, te
    from tvm.relax.expr_functor import PyExprMutator, mutator

    from edgecomp.tvm.quant_ops import _static_shape

    main = mod["main"]
    n_in = int(main.attrs["num_input"])
    values = dict(zip(main.params[n_in:], params, strict=True))
    uses: dict = {}

    def count(e):
        if isinstance(e, relax.Var) and e in values:
            uses[e] = uses.get(e, 0) + 1

    relax.analysis.post_order_visit(main.body, count)
    packed: dict = {}  # new parameter var -> packed array

    @mutator
    class Pack(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", "") != "relax.nn.conv2d" or uses.get(call.args[1], 0) != 1:
                return call
            shape = _pointwise(call, values)
            x_shape = _static_shape(call.args[0])
            if shape is None or x_shape is None:
                return call
            C, F = shape
            N, H, W, _ = x_shape
            rt = tile(H * W, F, target)  # the schedule's GEMM rows are one image's pixels
            if rt is None:
                return call
            jt = rt[1] * rt[2]
            wp = relax.Var(f"packed_{len(packed)}", relax.TensorType([F // jt, C, jt], "float32"))
            packed[wp] = np.ascontiguousarray(values[call.args[1]].reshape(C, F // jt, jt).transpose(1, 0, 2))

            def compute(x, w):
                c = te.reduce_axis((0, C), "c")
                return te.compute((N, H, W, F), lambda n, y, v, f: te.sum(x[n, y, v, c] * w[f // jt, c, f % jt],
                                                                            axis=c), name="conv2d_nhwc_packed")

            return self.builder_.call_te(compute, call.args[0], wp, primfunc_name_hint="conv2d_packed")

    pack = Pack(mod)
    body = pack.visit_expr(main.body)
    if not packed:
        return mod, params
    used = set(relax.analysis.free_vars(body))
    kept = [(p, a) for p, a in values.items() if p in used] + list(packed.items())
    fn = relax.Function([*main.params[:n_in], *(p for p, _ in kept)], body, main.ret_ty, main.is_pure, main.attrs)
    new_mod = pack.builder_.get()
    new_mod["main"] = fn
    return new_mod, [a for _, a in kept]


class PackedPointwise(ScheduleRule):
    """``out[n, y, x, f] += X[n, y, x, c] * Wp[f // jt, c, f % jt]`` (+ elementwise epilogue) as a GEMM with
    outer loops over the weight panels: rows = output pixels, vectors along ``f % jt``, B read in place."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        found = _one_mac(func, target)
        if found is None:
            return None
        sch, blocks, conv, kinds = found
        stmt = sch.get(conv)
        if kinds != "SSSSR" or not stmt.name_hint.startswith("conv2d_nhwc_packed"):
            return None
        wp = [r.source for r in stmt.reads if len(r.source.shape) == 3]
        if len(wp) != 1:
            return None
        jt = int(wp[0].shape[2])
        loops = sch.get_loops(conv)
        OW = _extent(sch, loops[2])
        rt = tile(_extent(sch, loops[1]) * OW, jt, target)
        if rt is None or rt[1] * rt[2] != jt:
            return None
        position = [_name(sch, b) for b in blocks].index(stmt.name_hint)
        if not _inline_chain(sch, blocks[:position]):
            return None
        epi = _epilogue(sch, blocks, conv)
        if epi is _NO_EPILOGUE:
            return None
        epi = epi if epi is not None else sch.cache_write(conv, 0, "global")
        to_panels = tirx.IndexMap.from_func(lambda n, y, x, f: (n, f // jt, y * OW + x, f % jt), ndim=4)
        sch.transform_block_layout(conv, tirx.IndexMap.from_func(
            lambda n, y, x, f, c: (n, f // jt, y * OW + x, f % jt, c), ndim=5))
        sch.transform_layout(conv, ("write", 0), to_panels)
        sch.transform_block_layout(epi, to_panels)
        return _gemm(sch, conv, epi, target, inline_producers=True, pack=False, tile=rt)
