"""Hand schedules for CPU PrimFuncs that no tuning record covers.

``tvm.compile`` leaves CPU loops naive (a ViT block runs ~90x slower than torch), so every PrimFunc
that the shipped MetaSchedule database does not cover goes through these rules, tried in order:

1. ``Conv2d``: NCHW ``conv2d`` / grouped-depthwise ``conv2d`` (one reduction block over
   ``(c, kh, kw)`` reading a padded input and a ``W[f, c, kh, kw]`` weight) with fused bias/clip/residual
   epilogues. Regular convolutions are rewritten in place into a GEMM ``W[f, (c,kh,kw)] x X[(c,kh,kw), p]``
   over flattened output pixels ``p`` (im2col, skipped for 1x1 stride-1 convolutions) and tiled by the
   shared GEMM tiler; depthwise convolutions get a direct kernel vectorised along output columns.
2. ``Matmul``: one multiply-accumulate reduction block ``C[s..., i, j] += A[.., i, k] * B[.., k, j]``
   (dense layers, batched attention matmuls) with optional elementwise producers and an elementwise
   epilogue (bias, GELU, residual add).
   Both go through ``_gemm``: register tile of ``rows x jv`` vectors, parallel over tiles, epilogue fused
   into the accumulator write-back. Extents that are not a multiple of the tile (197 tokens, 49 pixels)
   are padded with ``pad_einsum`` (zero-filled copies of the inputs, cropping write-back), so the inner
   loop never carries a predicate.
3. ``RowReduction``: softmax / LayerNorm / RMSNorm / mean-style functions whose blocks all reduce or map
   over the innermost axis of the same rows: parallel over rows, every stage of a row computed together,
   vectorised maps and lane-parallel (rfactor) reductions.
4. dlight's CPU ``GEMV`` and ``Reduction`` rules for the remaining reductions.
5. ``Injective``: everything else (reshape, transpose, concat, elementwise, other reductions):
   inline what can be inlined, parallelise leading loops and vectorise the innermost one; 2-D transposes
   are tiled.

Each rule returns a schedule or None; ``apply`` records which rule scheduled each function so the
build report can say what ran with which schedule.

Importing this module also registers a vectorisable float32 ``erf`` lowering for LLVM targets (the
default lowers to a scalar libm ``erff`` call per element, which made GELU epilogues 5x slower than
the matmul they follow). Its error is below 5e-7 absolute.
"""

from __future__ import annotations

import math

import tvm
from tvm import s_tir, sym, tirx
from tvm.s_tir import dlight as dl
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target
from tvm.target.codegen import llvm_get_vector_width

_REDUCE = 2  # IterVar.iter_type for a commutative reduction

# ---------------------------------------------------------------------------------------------------
# float32 erf as a rational polynomial (the Eigen/TVM ``fast_erf`` coefficients), so that it vectorises.

_ERF_P = (
    -2.7261423674040941e-10,
    2.7706814620387377e-08,
    -2.101023937939317e-06,
    -5.6925062381196767e-05,
    -0.00073499063728377223,
    -0.0029545999132096767,
    -0.016096033155918121,
)
_ERF_Q = (
    -1.4566071513399947e-05,
    -0.00021337404905352741,
    -0.001682827016338706,
    -0.0073733292520046234,
    -0.014264739118516445,
)


def _lower_erf(call):
    x = call.args[0]
    dtype = str(x.ty)
    if dtype != "float32":
        return tirx.call_pure_extern(dtype, "erf", x)

    def c(v):
        return tirx.const(v, "float32")

    x = tirx.max(tirx.min(x, c(4.0)), c(-4.0))
    x2 = x * x
    p = c(_ERF_P[0])
    for a in _ERF_P[1:]:
        p = x2 * p + c(a)
    q = c(_ERF_Q[0])
    for b in _ERF_Q[1:]:
        q = x2 * q + c(b)
    return x * p / q


tirx.op.register_intrin_lowering("tirx.erf", "llvm", f=_lower_erf, level=99)

# ---------------------------------------------------------------------------------------------------
# helpers


def _vector_lanes(target: Target, bits: int = 32) -> int:
    width = llvm_get_vector_width(target)
    return max((width if width > 0 else 128) // bits, 4)


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    ext = sch.get(loop).extent
    return int(ext) if isinstance(ext, tirx.IntImm) else None


def _blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _name(sch: s_tir.Schedule, block) -> str:
    return sch.get(block).name_hint


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(int(iv.iter_type) == _REDUCE for iv in sch.get(block).iter_vars)


def _n_reduce(block_stmt) -> int:
    return sum(int(iv.iter_type) == _REDUCE for iv in block_stmt.iter_vars)


def _strip_cast(e):
    while isinstance(e, tirx.Cast):
        e = e.value
    return e


def _is_mac(block_stmt, n_reduce: int | None = 1) -> bool:
    """True for ``C[...] = C[...] + A[...] * B[...]`` (possibly with casts) with ``n_reduce`` reduction iters."""
    body = block_stmt.body
    if not isinstance(body, tirx.BufferStore) or not isinstance(body.value, tirx.Add):
        return False
    if block_stmt.init is None or (n_reduce is not None and _n_reduce(block_stmt) != n_reduce):
        return False
    a, b = body.value.a, body.value.b
    if not (isinstance(a, tvm.ir.TensorLoad) and a.source.same_as(body.buffer) and isinstance(b, tirx.Mul)):
        return False
    return isinstance(_strip_cast(b.a), tvm.ir.TensorLoad) and isinstance(_strip_cast(b.b), tvm.ir.TensorLoad)


def _mac_loads(block_stmt):
    mul = block_stmt.body.value.b
    return _strip_cast(mul.a), _strip_cast(mul.b)


def _uses(expr, var) -> bool:
    return any(v.same_as(var) for v in tirx.analysis.undefined_vars(expr))


def _divisor(n: int, candidates) -> int:
    for c in candidates:
        if c <= n and n % c == 0:
            return c
    return 1


def _inline_chain(sch: s_tir.Schedule, blocks: list) -> bool:
    for blk in blocks:
        try:
            sch.compute_inline(blk)
        except RuntimeError:
            return False
    return True


def _vectorize_inner(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Vectorise the innermost loop of ``block`` (split by ``lanes`` when longer)."""
    inner = sch.get_loops(block)[-1]
    ext = _extent(sch, inner)
    if ext is None or ext < 2:
        return
    if ext > lanes:
        if ext % lanes:
            return
        _, inner = sch.split(inner, [None, lanes])
    sch.vectorize(inner)


def _parallel_copy(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Schedule a standalone copy/pad block: parallel outer loops, vectorised inner loop."""
    loops = sch.get_loops(block)
    if len(loops) >= 2:
        sch.parallel(sch.fuse(*loops[:-1]))
    elif loops:
        sch.parallel(loops[0])
        return
    _vectorize_inner(sch, block, lanes)


def _pad_fill_then_copy(sch: s_tir.Schedule, pad_block, lanes: int) -> None:
    """Split a zero-padding block into a constant fill and a branch-free interior copy, both vectorised."""
    loops = sch.get_loops(pad_block)
    first = next((lp for lp in loops if sch.get(lp).kind == tirx.ForKind.SERIAL), None)
    try:
        fill = sch.decompose_padding(pad_block, first)
    except RuntimeError:
        _vectorize_inner(sch, pad_block, lanes)
        return
    for blk in (fill, pad_block):
        inner = sch.get_loops(blk)[-1]
        ext = _extent(sch, inner)
        if ext is None or ext < 2:
            continue
        if ext > lanes:
            if ext % lanes and ext % 8:
                continue
            _, inner = sch.split(inner, [None, lanes if ext % lanes == 0 else 8])
        sch.vectorize(inner)


# ---------------------------------------------------------------------------------------------------
# shared GEMM tiler


def _gemm_tiles(I: int, J: int, lanes: int) -> tuple[int, int]:
    """(rows, vectors per row) of the register tile for an ``I x J`` output (vectors along J)."""
    nv = -(-J // lanes)
    if J % lanes == 0 and (nv % 4 == 0 or nv % 3 == 0 or nv % 2 == 0):
        jv = _divisor(nv, (4, 3, 2))
    elif J % lanes == 0 and nv <= 6:
        jv = nv
    else:
        padded = {v: -(-nv // v) * v for v in range(1, 5)}
        best = min(padded.values())
        jv = max(v for v, p in padded.items() if p <= best * 1.1)
    max_rows = 6 if jv >= 4 else 8
    if jv >= 5:
        max_rows = 4
    if I <= max_rows:
        return I, jv
    rows = _divisor(I, range(max_rows, 3, -1))
    if rows < 4:
        rows = max_rows
    return rows, jv


def _gemm(sch: s_tir.Schedule, mm, epi, target: Target, inline_producers: bool = True) -> s_tir.Schedule:
    """Register-tile ``mm`` (loops ``(*outer, i, j, *k)``, trivial bindings, einsum accesses).

    ``epi`` is the single elementwise consumer of ``mm`` (or None); it is fused into the write-back.
    Producers of ``mm`` (blocks before it) are inlined when ``inline_producers``, else materialised.
    """
    stmt = sch.get(mm)
    bits = stmt.writes[0].source.dtype.bits
    lanes = _vector_lanes(target, bits)
    n_red = _n_reduce(stmt)
    loops = sch.get_loops(mm)
    *outer, i, j = loops[: len(loops) - n_red]
    I, J = _extent(sch, i), _extent(sch, j)
    if I is None or J is None:
        raise ValueError("dynamic gemm extents")
    rows, jv = _gemm_tiles(I, J, lanes)
    jt = lanes * jv
    pad_i, pad_j = I % rows != 0, J % jt != 0
    padded = pad_i or pad_j
    copy = None
    if padded:
        sch.pad_einsum(mm, [1] * len(outer) + [rows if pad_i else 1, jt if pad_j else 1] + [1] * n_red)
        blocks = _blocks(sch)
        pos = [_name(sch, b) for b in blocks].index(stmt.name_hint)
        copy = blocks[pos + 1]
        for producer in blocks[:pos]:
            if not _name(sch, producer).endswith("_pad"):
                try:
                    sch.compute_inline(producer)  # e.g. im2col folded into its padded copy
                except RuntimeError:
                    pass
        blocks = _blocks(sch)
        pos = [_name(sch, b) for b in blocks].index(stmt.name_hint)
        for producer in blocks[:pos]:
            _parallel_copy(sch, producer, lanes)
    else:
        blocks = _blocks(sch)
        pos = [_name(sch, b) for b in blocks].index(stmt.name_hint)
        for producer in blocks[:pos]:
            if inline_producers:
                sch.compute_inline(producer)
            else:
                _parallel_copy(sch, producer, lanes)
    loops = sch.get_loops(mm)
    *outer, i, j = loops[: len(loops) - n_red]
    ks = loops[len(loops) - n_red :]
    k = sch.fuse(*ks) if len(ks) > 1 else ks[0]
    jo, jti = sch.split(j, [None, jt])
    io, ii = sch.split(i, [None, rows])
    sch.reorder(*outer, jo, io, k, ii, jti)
    par = sch.fuse(*outer, jo, io)
    sch.parallel(par)
    if padded:
        sch.set_scope(mm, 0, "local")
        if epi is not None:
            sch.reverse_compute_inline(epi)
        sch.reverse_compute_at(copy, par, preserve_unit_loops=True)
        wb = copy
    else:
        wb = sch.cache_write(mm, 0, "local")
        sch.reverse_compute_at(wb, par, preserve_unit_loops=True)
        if epi is not None:
            sch.reverse_compute_inline(epi)
    jto, jtv = sch.split(jti, [None, lanes])
    sch.unroll(ii)
    sch.unroll(jto)
    sch.vectorize(jtv)
    _vectorize_inner(sch, wb, lanes)
    sch.decompose_reduction(mm, k)
    return sch


# ---------------------------------------------------------------------------------------------------
# rules


class Matmul(ScheduleRule):
    """Register-tiled schedule for multiply-accumulate reductions (see module docstring)."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        blocks = _blocks(sch)
        reductions = [b for b in blocks if _is_reduction(sch, b)]
        if len(reductions) != 1 or not _is_mac(sch.get(reductions[0])):
            return None
        mm = reductions[0]
        position = [_name(sch, b) for b in blocks].index(_name(sch, mm))
        if not _inline_chain(sch, blocks[:position]):
            return None  # a producer we cannot fold in: leave it to the generic rules
        epilogue = blocks[position + 1 :]
        if not _inline_chain(sch, epilogue[:-1]):
            return None
        loops = sch.get_loops(mm)
        if len(loops) < 3 or sch.get(loops[-1]).kind != tirx.ForKind.SERIAL:
            return None
        return _gemm(sch, mm, epilogue[-1] if epilogue else None, target)


class Conv2d(ScheduleRule):
    """NCHW conv2d: regular convolutions as (im2col +) GEMM, depthwise as a direct vectorised kernel."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        blocks = _blocks(sch)
        reductions = [b for b in blocks if _is_reduction(sch, b)]
        if len(reductions) != 1 or not _is_mac(sch.get(reductions[0]), None):
            return None
        conv = reductions[0]
        stmt = sch.get(conv)
        kinds = "".join("R" if int(iv.iter_type) == _REDUCE else "S" for iv in stmt.iter_vars)
        if kinds != "SSSSRRR" or len(sch.get_loops(conv)) != 7:
            return None
        vn, vf, vy, vx, vc, vr, vs = (iv.var for iv in stmt.iter_vars)
        la, lb = _mac_loads(stmt)

        def is_weight(ld):
            idx = list(ld.indices)
            return len(idx) == 4 and all(isinstance(e, tirx.Var) and e.same_as(v) for e, v in zip(idx, (vf, vc, vr, vs)))

        if is_weight(lb):
            data = la
        elif is_weight(la):
            data = lb
        else:
            return None
        if len(data.indices) != 4 or any(_extent(sch, lp) is None for lp in sch.get_loops(conv)):
            return None
        depthwise = _uses(data.indices[1], vf)
        position = [_name(sch, b) for b in blocks].index(stmt.name_hint)
        # producers: the padding stage of the data input is kept (inlined into im2col or computed per
        # channel), anything else elementwise is inlined into its consumer
        pad_block = None
        for producer in blocks[:position]:
            writes_data = any(w.source.same_as(data.source) for w in sch.get(producer).writes)
            if writes_data:
                pad_block = producer
                continue
            try:
                sch.compute_inline(producer)
            except RuntimeError:
                return None
        epilogue = blocks[position + 1 :]
        if not _inline_chain(sch, epilogue[:-1]):
            return None
        epi = epilogue[-1] if epilogue else None
        if depthwise:
            import os
            if os.environ.get("DWC") == "1" or (
                os.environ.get("DWC") != "0" and Conv2d._prefer_cvec(sch, conv, target)
            ):
                return self._depthwise_cvec(sch, conv, pad_block, epi, target, lb if data is la else la)
            return self._depthwise(sch, conv, pad_block, epi, target, data.indices[3])
        weight = lb if data is la else la
        return self._as_gemm(sch, conv, pad_block, epi, target, data, weight)

    @staticmethod
    def _as_gemm(sch, conv, pad_block, epi, target, data, weight):
        nn, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
        OH, OW = _extent(sch, yy), _extent(sch, xx)
        KH, KW = _extent(sch, ry), _extent(sch, rx)
        y_idx, x_idx = data.indices[2], data.indices[3]
        stmt = sch.get(conv)
        vy, vx, vr, vs = (stmt.iter_vars[i].var for i in (2, 3, 5, 6))
        analyzer = sym.Analyzer()
        direct = (
            KH == 1
            and KW == 1
            and analyzer.can_prove(y_idx - vy - vr == 0)
            and analyzer.can_prove(x_idx - vx - vs == 0)
        )
        if pad_block is not None:
            pst = sch.get(pad_block)
            if direct and isinstance(pst.body, tirx.BufferStore) and isinstance(pst.body.value, tvm.ir.TensorLoad):
                sch.compute_inline(pad_block)  # a pure copy: read the input directly
                pad_block = None
            elif not direct:
                pass
            else:
                direct = False
        if epi is None:
            # the conv writes the function output: give it an intermediate whose layout we may change
            epi = sch.cache_write(conv, 0, "global")
        # X[n, c, y*s + r, x*s + t] -> im2col buffer Xc[n, c, r, t, p], p = y*OW + x
        out_buf = sch.get(conv).writes[0].source
        d_idx = [
            i
            for i, r in enumerate(sch.get(conv).reads)
            if not r.source.same_as(weight.source) and not r.source.same_as(out_buf)
        ][0]
        col = sch.reindex(conv, ("read", d_idx))
        # the reindexed buffer is indexed by the block iters it uses, in block order (n, y, x, c[, r, s])
        col_read = [r for r in sch.get(conv).reads if r.source.same_as(sch.get(col).writes[0].source)][0]
        used = [int(i) for v in col_read.region for i in range(7) if isinstance(v.min, tirx.Var) and v.min.same_as(stmt.iter_vars[i].var)]
        if len(used) != len(col_read.region) or 2 not in used or 3 not in used:
            raise ValueError("unexpected im2col buffer")
        py, px = used.index(2), used.index(3)

        def col_layout(*idx):
            rest = [e for d, e in enumerate(idx) if d not in (py, px)]
            return (*rest, idx[py] * OW + idx[px])

        sch.transform_layout(col, ("write", 0), tirx.IndexMap.from_func(col_layout, ndim=len(used)))
        IC = _extent(sch, rc)
        keep = [d for d, e in ((4, IC), (5, KH), (6, KW)) if e > 1] or [4]  # unit reduction iters are dropped
        flat = tirx.IndexMap.from_func(lambda *v: (v[0], v[1], v[2] * OW + v[3], *[v[d] for d in keep]), ndim=7)
        sch.transform_block_layout(conv, flat)
        sch.transform_layout(conv, ("write", 0), lambda n, f, y, x: (n, f, y * OW + x))
        sch.transform_block_layout(epi, lambda n, f, y, x: (n, f, y * OW + x))
        if pad_block is not None:
            sch.compute_inline(pad_block)
        return _gemm(sch, conv, epi, target, inline_producers=direct)

    @staticmethod
    def _prefer_cvec(sch, conv, target) -> bool:
        lanes = _vector_lanes(target)
        loops = sch.get_loops(conv)
        C, OW = _extent(sch, loops[1]), _extent(sch, loops[3])
        return C % lanes == 0 and OW % 8 != 0 and not 8 <= OW <= lanes

    @staticmethod
    def _depthwise_cvec(sch, conv, pad_block, epi, target, weight):
        """Depthwise conv vectorised across channels (channel-last padded copy of the input)."""
        lanes = _vector_lanes(target)
        nn, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
        C, OW = _extent(sch, ff), _extent(sch, xx)
        jv = _divisor(C // lanes, (2, 1))
        rows = _divisor(OW, (7, 8, 6, 5, 4, 3, 2))
        if pad_block is None:
            raise ValueError("depthwise without padding stage")
        sch.transform_layout(pad_block, ("write", 0), lambda n, c, h, w: (n, h, w, c))
        pl = sch.get_loops(pad_block)
        sch.reorder(pl[0], pl[2], pl[3], pl[1])
        sch.parallel(sch.fuse(pl[0], pl[2]))
        w_idx = [i for i, r in enumerate(sch.get(conv).reads) if r.source.same_as(weight.source)][0]
        wt = sch.cache_read(conv, w_idx, "global")
        sch.transform_layout(wt, ("write", 0), lambda f, c, r, s: (c, r, s, f))
        wl = sch.get_loops(wt)
        sch.reorder(*wl[1:], wl[0])
        fo, fi = sch.split(ff, [None, lanes * jv])
        xo, xi = sch.split(xx, [None, rows])
        sch.reorder(nn, fo, yy, xo, rc, ry, rx, xi, fi)
        par = sch.fuse(nn, fo, yy)
        sch.parallel(par)
        acc = sch.cache_write(conv, 0, "local")
        sch.transform_layout(conv, ("write", 0), lambda n, f, y, x: (n, y, x, f))
        sch.reverse_compute_at(acc, xo, preserve_unit_loops=True)
        if epi is not None:
            sch.reverse_compute_inline(epi)
        fio, fii = sch.split(fi, [None, lanes])
        sch.unroll(ry)
        sch.unroll(rx)
        sch.unroll(xi)
        sch.unroll(fio)
        sch.vectorize(fii)
        sch.decompose_reduction(conv, rc)
        return sch

    @staticmethod
    def _x_stride(stmt, x_index) -> int:
        """Stride of the output column iter in the data column index ``x * s + kx * d``."""
        coeffs = sym.detect_linear_equation(x_index, [stmt.iter_vars[3].var])
        return int(coeffs[0]) if len(coeffs) == 2 and isinstance(coeffs[0], tirx.IntImm) else 1

    @staticmethod
    def _depthwise(sch, conv, pad_block, epi, target, data_x_index):
        lanes = _vector_lanes(target)
        nn, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
        OH, OW = _extent(sch, yy), _extent(sch, xx)
        if OW % lanes == 0:
            vec = lanes
        elif OW % 8 == 0:
            vec = 8
        elif OW <= lanes:
            vec = OW
        else:
            vec = lanes  # predicated tail
        yr = _divisor(OH, (8, 7, 6, 4, 2, 1))
        xo, xi = sch.split(xx, [None, vec])
        yo, yi = sch.split(yy, [None, yr])
        sch.reorder(nn, ff, yo, xo, rc, ry, rx, yi, xi)
        par = sch.fuse(nn, ff)
        sch.parallel(par)
        if pad_block is not None:
            stride = Conv2d._x_stride(sch.get(conv), data_x_index)
            if stride > 1:
                # de-interleave the padded input columns so that strided windows become contiguous:
                # pad[n, c, h, w] -> pad[n, c, h, w % s, w // s]
                sch.transform_layout(
                    pad_block, ("write", 0), lambda n, c, h, w: (n, c, h, w % stride, w // stride), pad_value=0.0
                )
            sch.compute_at(pad_block, par, preserve_unit_loops=True)
            _pad_fill_then_copy(sch, pad_block, lanes)
        acc = sch.cache_write(conv, 0, "local")
        sch.reverse_compute_at(acc, xo, preserve_unit_loops=True)
        if epi is not None:
            sch.reverse_compute_inline(epi)
        sch.unroll(ry)
        sch.unroll(rx)
        sch.unroll(yi)
        sch.vectorize(xi)
        _vectorize_inner(sch, acc, lanes)
        sch.decompose_reduction(conv, rc)
        return sch


class Injective(ScheduleRule):
    """Fallback for anything left: inline intermediates, parallelise outer loops, vectorise inner."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        blocks = _blocks(sch)
        for blk in blocks[:-1]:
            try:
                sch.compute_inline(blk)
            except RuntimeError:
                pass
        lanes = _vector_lanes(target)
        for blk in _blocks(sch):
            loops = sch.get_loops(blk)
            if not loops:
                continue
            spatial = [lp for lp in loops if sch.get(lp).kind == tirx.ForKind.SERIAL]
            stmt = sch.get(blk)
            n_spatial = 0
            for iv in stmt.iter_vars:
                if int(iv.iter_type) == _REDUCE:
                    break
                n_spatial += 1
            lead = spatial[: max(1, min(n_spatial, len(spatial) - 1))] if n_spatial else []
            if lead:
                sch.parallel(sch.fuse(*lead) if len(lead) > 1 else lead[0])
            if not _is_reduction(sch, blk) and len(loops) > len(lead):
                inner = sch.get_loops(blk)[-1]
                ext = _extent(sch, inner)
                if ext is not None and ext >= 2:
                    if ext > lanes and ext % lanes == 0:
                        _, inner = sch.split(inner, [None, lanes])
                    if ext <= lanes or ext % lanes == 0:
                        sch.vectorize(inner)
        return sch


RULES = {
    "conv2d": Conv2d(),
    "matmul": Matmul(),
    "gemv": dl.cpu.GEMV(),
    "reduction": dl.cpu.Reduction(),
    "injective": Injective(),
}


def apply(mod: tvm.IRModule, target: Target) -> tuple[tvm.IRModule, dict[str, str]]:
    """Schedule every unscheduled PrimFunc of ``mod`` with the first rule that applies.

    Returns the new module and ``{function name: rule name}`` ("none" when no rule applied,
    meaning the function runs with naive loops; the report lists it).
    """
    used: dict[str, str] = {}
    updates = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if "tirx.is_scheduled" in func.attrs and int(func.attrs["tirx.is_scheduled"]) == 1:
            used[gv.name_hint] = "tuned"
            continue
        used[gv.name_hint] = "none"
        for name, rule in RULES.items():
            try:
                with target:
                    sch = rule.apply(func, target, False)
            except (RuntimeError, ValueError, AssertionError, AttributeError, IndexError, TypeError):
                sch = None  # the rule's own analysis rejected this function: try the next rule
            if sch is not None:
                if isinstance(sch, list):
                    sch = sch[0]
                updates[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
                used[gv.name_hint] = name
                break
    for gv, func in updates.items():
        mod[gv] = func
    return mod, used
