"""GEMMs on a weight parameter, with the weight packed into the tiler's column panels at build.

The GEMM tiler (``cpu_schedule._gemm``) copies each ``K x jt`` column panel of its B operand into a
contiguous buffer before the register tiles stream through it. When B is a weight it is the same on every
call, and in a network it is cold in cache: EfficientNet-Lite0's 7x7 stage reads 49 output pixels per weight,
vit-s16 streams 88 MB of weights a call. With the weights cold, an isolated 7x7x192 -> 1152 GEMM takes 0.176
ms packing per call and 0.140 ms reading prepacked panels; a 197x384 -> 1536 one 1.27 and 1.13 ms
(``bench/kernel_profile.py gemm-pack``).

``rewrite`` stores such a weight already packed, ``Wp[n // jt, k, n % jt] = W[k, n]``, and replaces

- a channels-last pointwise ``conv2d`` (1x1, stride 1, HWIO weight ``W[0, 0, c, f]``) when a register tile
  of the tiler's preferred shapes divides pixels and channels exactly (``tile``), and
- a ``matmul`` of ``x[..., M, K]`` (M >= 16 rows) by a 2-D weight ``W[K, N]`` when the tiler's own tile
  for ``M x N`` has a column width dividing N (rows are padded by the tiler as usual),

by the same sum read from ``Wp``; ``Packed`` schedules it as a GEMM over the panels that reads them in
place. The products and their order of summation over ``k`` are those of the unpacked schedule.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

from edgecomp.tvm.cpu_schedule import (
    _NOT_INLINED,
    _TILES,
    _epilogue,
    _gemm,
    _gemm_tiles,
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


MIN_MATMUL_ROWS = 16  # fewer rows (GEMV-like) keep the tiler's half-width / predicated path


def matmul_tile(rows: int, cols: int, target) -> tuple[int, int, int] | None:
    """The tiler's own register tile for a ``rows x cols`` matmul when its column width divides ``cols``."""
    r, jv, lanes, _ = _gemm_tiles(rows, cols, _vector_lanes(target))
    return (r, jv, lanes) if rows >= MIN_MATMUL_ROWS and cols % (jv * lanes) == 0 else None


def _matmul(call, params: dict):
    """(K, N) when ``call`` is a float32 ``matmul`` of a static activation by a 2-D parameter weight."""
    w = call.args[1]
    if w not in params or params[w].dtype != np.float32 or params[w].ndim != 2:
        return None
    return params[w].shape


def _packed_te(x_shape, K: int, N: int, jt: int, name: str, ow: int | None):
    """The sum over panels, then the panels back in the op's layout. ``x_shape = (..., M, K)`` for a matmul
    (``ow`` None): ``P[..., n // jt, m, n % jt] = sum_k x[..., m, k] * Wp[n // jt, k, n % jt]``. For a
    pointwise conv ``x_shape = (N, H, W, K)`` and ``ow = W``: rows are pixels ``p = y * W + x``.
    The sum has plain (einsum) indices, which the tiler's row padding requires."""
    from tvm import te

    def compute(x, w):
        k = te.reduce_axis((0, K), "k")
        if ow is None:
            *b, M = x_shape[:-1]
            panels = te.compute((*b, N // jt, M, jt), lambda *i: te.sum(
                x[(*i[:-3], i[-2], k)] * w[i[-3], k, i[-1]], axis=k), name=name)
            return te.compute((*b, M, N), lambda *i: panels[(*i[:-2], i[-1] // jt, i[-2], i[-1] % jt)],
                              name=f"{name}_unpanel")
        n_img, H, W = x_shape[:3]
        panels = te.compute((n_img, N // jt, H * W, jt), lambda n, fo, p, fi: te.sum(
            x[n, p // ow, p % ow, k] * w[fo, k, fi], axis=k), name=name)
        return te.compute((n_img, H, W, N), lambda n, y, v, f: panels[n, f // jt, y * ow + v, f % jt],
                          name=f"{name}_unpanel")

    return compute


def rewrite(mod, params: list[np.ndarray], target):
    """(mod, params) with every eligible pointwise conv2d and matmul of main (module docstring) reading a
    build-time packed weight; their unpacked weights leave the parameters."""
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    from edgecomp.tvm import main_params
    from edgecomp.tvm.quant_ops import _static_shape

    main = mod["main"]
    values = main_params.bound(mod, params)
    uses: dict = {}

    def count(e):
        if isinstance(e, relax.Var) and e in values:
            uses[e] = uses.get(e, 0) + 1

    relax.analysis.post_order_visit(main.body, count)
    packed: dict = {}  # new parameter var -> packed array

    def plan(call):
        """(x shape as the packed sum sees it, K, N, jt, TE name) or None."""
        op = getattr(call.op, "name", "")
        if op not in ("relax.nn.conv2d", "relax.matmul") or uses.get(call.args[1], 0) != 1:
            return None
        x_shape = _static_shape(call.args[0])
        out_dtype = getattr(call.attrs, "out_dtype", None)
        if out_dtype is not None and str(out_dtype) not in ("void", "float32"):
            return None
        if x_shape is None or str(call.args[0].ty.dtype) != "float32":
            return None
        if op == "relax.nn.conv2d":
            shape = _pointwise(call, values)
            rt = None if shape is None else tile(x_shape[1] * x_shape[2], shape[1], target)  # one image's pixels
            name = "conv2d_nhwc_packed"
        else:
            shape = _matmul(call, values)
            ok = shape is not None and len(x_shape) >= 2 and x_shape[-1] == shape[0]
            rt = matmul_tile(x_shape[-2], shape[1], target) if ok else None
            name = "matmul_packed"
        return None if rt is None else (x_shape, *shape, rt[1] * rt[2], name)

    @mutator
    class Pack(PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            found = plan(call)
            if found is None:
                return call
            x_shape, K, N, jt, name = found
            wp = relax.Var(f"packed_{len(packed)}", relax.TensorType([N // jt, K, jt], "float32"))
            packed[wp] = np.ascontiguousarray(values[call.args[1]].reshape(K, N // jt, jt).transpose(1, 0, 2))
            ow = x_shape[2] if name.startswith("conv2d") else None
            return self.builder_.call_te(_packed_te(x_shape, K, N, jt, name, ow), call.args[0], wp,
                                         primfunc_name_hint=name.replace("_nhwc", ""))

    pack = Pack(mod)
    body = pack.visit_expr(main.body)
    if not packed:
        return mod, params
    return main_params.rebuild(pack.builder_.get(), body, values, packed)  # (the module holds the new sums)


class Packed(ScheduleRule):
    """The packed sum of ``_packed_te`` (+ its unpanel stage and the elementwise epilogue) as a GEMM with
    outer loops over the weight panels, B read in place: loops ``(..., n // jt, rows, n % jt, k)``, rows a
    pointwise conv's output pixels or a matmul's M."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        found = _one_mac(func, target)
        if found is None:
            return None
        sch, _, mm, kinds = found
        stmt = sch.get(mm)
        conv = stmt.name_hint == "conv2d_nhwc_packed"
        if not (conv or stmt.name_hint == "matmul_packed") or not kinds.endswith("SSSR"):
            return None
        panels = stmt.writes[0].source.shape
        jt, rows, N = int(panels[-1]), int(panels[-2]), int(panels[-3]) * int(panels[-1])
        rt = tile(rows, N, target) if conv else matmul_tile(rows, N, target)
        if rt is None or rt[1] * rt[2] != jt:
            return None
        epi = _epilogue(sch, mm, target, inline_producers=True)  # the unpanel stage, the op's epilogue inlined
        if epi is _NOT_INLINED or epi is None:
            return None
        if conv:  # (n, y, x, f) -> (n, f // jt, y * OW + x, f % jt)
            OW = int(sch.get(epi).writes[0].source.shape[2])
            sch.transform_block_layout(epi, lambda n, y, x, f: (n, f // jt, y * OW + x, f % jt))
        else:  # (..., m, n) -> (..., n // jt, m, n % jt)
            nd = len(sch.get_loops(epi))
            sch.transform_block_layout(epi, tirx.IndexMap.from_func(
                lambda *i: (*i[:-2], i[-1] // jt, i[-2], i[-1] % jt), ndim=nd))
        return _gemm(sch, mm, epi, target, inline_producers=True, pack=False, tile=rt)
