"""Hand schedules for channels-last convolutions (``channels_last`` makes every CPU conv2d NHWC / HWIO).

The PrimFunc holds one reduction block ``out[n, y, x, f] += pad[n, y*s + r, x*s + t, c] * W[r, t, c, f]``
(topi's ``conv2d_nhwc``; depthwise: ``pad[.., f + c] * W[r, t, c, f]`` with one ``c``), the padding stage
that writes ``pad``, and the elementwise epilogue FuseOps put after it (bias, clip, residual add).

- Regular convolutions are GEMMs over the output pixels ``p = y*OW + x``:
  ``out[p, f] += X[p, (r, t, c)] W[(r, t, c), f]``, vectors along the output channels ``f`` and the weight
  as the packed panel (``prepack`` stores most pointwise weights packed already). A 1x1 stride-1
  convolution reads its input directly. A short reduction (EfficientNet's stem: 3 channels, 3x3, stride 2)
  runs as a GEMM over each output row reading through the padding predicate; longer ones go through an
  im2col copy that also does the padding.
- Depthwise convolutions run directly: a register tile of ``rows`` output columns x ``jv`` channel
  vectors, the kernel window unrolled, one parallel task per (output row, channel block), reading the
  input through the padding predicate (no padded copy: these layers are memory-bound).
"""

from __future__ import annotations

from tvm import sym, tirx
from tvm.s_tir.dlight.base import ScheduleRule
from tvm.target import Target

from edgecomp.tvm.cpu_schedule import (
    _conv_parts,
    _divisor,
    _extent,
    _gemm,
    _gemm_tiles,
    _is_var,
    _uses,
    _vector_lanes,
    _vectorize_inner,
)


class Conv2dNHWC(ScheduleRule):
    """NHWC / HWIO conv2d with a fused elementwise epilogue (module docstring)."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        # NHWC block iters (n, y, x, f, r, s, c); HWIO weight W[r, s, c, f]
        parts = _conv_parts(func, target, lambda v: (v[4], v[5], v[6], v[3]))
        if parts is None:
            return None
        sch, conv, data, weight, pad_block, epi = parts
        vn, vy, vx, vf, _, _, vc = (iv.var for iv in sch.get(conv).iter_vars)
        out = sch.get(conv).writes[0].region
        if not all(_is_var(r.min, v) for r, v in zip(out, (vn, vy, vx, vf), strict=True)):
            return None
        depthwise = _uses(data.indices[3], vf)
        if not depthwise and not _is_var(data.indices[3], vc):
            return None
        if depthwise:
            return _depthwise(sch, conv, pad_block, epi, target)
        return _as_gemm(sch, conv, pad_block, epi, target, data, weight)


def _as_gemm(sch, conv, pad_block, epi, target, data, weight):
    nn, yy, xx, ff, ry, rx, rc = sch.get_loops(conv)
    OW, KH, KW = _extent(sch, xx), _extent(sch, ry), _extent(sch, rx)
    stmt = sch.get(conv)
    vy, vx, vr, vs = (stmt.iter_vars[i].var for i in (1, 2, 4, 5))
    analyzer = sym.Analyzer()
    direct = (KH == 1 and KW == 1 and analyzer.can_prove(data.indices[1] - vy - vr == 0)
              and analyzer.can_prove(data.indices[2] - vx - vs == 0))
    if pad_block is not None and direct:
        try:
            sch.compute_inline(pad_block)  # a 1x1 convolution pads nothing: read the input directly
            pad_block = None
        except RuntimeError:
            direct = False
    if epi is None:
        epi = sch.cache_write(conv, 0, "global")  # the conv writes the function output: an intermediate
    if not direct and _direct_tiles(sch, conv, target):
        # a short reduction (EfficientNet's stem: 3x3x3) as a GEMM over each output row, reading through
        # the padding predicate: an im2col copy would cost more than the arithmetic
        if pad_block is not None:
            sch.compute_inline(pad_block)
        return _gemm(sch, conv, epi, target)
    keep = [d for d, e in ((4, KH), (5, KW), (6, _extent(sch, rc))) if e > 1] or [6]
    # im2col: X[n, y*s + r, x*s + t, c] -> Xc[n, y*OW + x, r, t, c] (the block iters it uses, in block order).
    # A 1x1 convolution's copy is inlined again unless _gemm pads the rows (then it is the padded copy):
    # either way the GEMM reads its A operand through plain (einsum) indices, which pad_einsum requires.
    out_buf = sch.get(conv).writes[0].source
    d_idx = [i for i, r in enumerate(sch.get(conv).reads)
             if not r.source.same_as(weight.source) and not r.source.same_as(out_buf)][0]
    col = sch.reindex(conv, ("read", d_idx))
    n_col = len(sch.get(col).writes[0].region)
    if n_col != 3 + len(keep):
        raise ValueError("unexpected im2col buffer")
    sch.transform_layout(col, ("write", 0),
                         tirx.IndexMap.from_func(lambda n, y, x, *k: (n, y * OW + x, *k), ndim=n_col))
    if pad_block is not None:
        sch.compute_inline(pad_block)
    flat = tirx.IndexMap.from_func(lambda *v: (v[0], v[1] * OW + v[2], v[3], *[v[d] for d in keep]), ndim=7)
    sch.transform_block_layout(conv, flat)
    sch.transform_layout(conv, ("write", 0), lambda n, y, x, f: (n, y * OW + x, f))
    sch.transform_block_layout(epi, lambda n, y, x, f: (n, y * OW + x, f))
    return _gemm(sch, conv, epi, target, inline_producers=direct)


def _direct_tiles(sch, conv, target) -> bool:
    """Whether a row-by-row GEMM (rows: output columns, vectors: output channels) needs no padding and its
    reduction is short enough for the A operand's broadcasts to stay in L1."""
    _, _, xx, ff, ry, rx, rc = sch.get_loops(conv)
    OW, F = _extent(sch, xx), _extent(sch, ff)
    K = _extent(sch, ry) * _extent(sch, rx) * _extent(sch, rc)
    rows, jv, lanes, _ = _gemm_tiles(OW, F, _vector_lanes(target))
    return K <= 64 and OW % rows == 0 and F % (jv * lanes) == 0


def _depthwise(sch, conv, pad_block, epi, target):
    lanes = _vector_lanes(target)
    nn, yy, xx, ff, ry, rx, rc = sch.get_loops(conv)
    C, OW = _extent(sch, ff), _extent(sch, xx)
    if C % lanes:
        return None
    jv = _divisor(C // lanes, (2, 1))
    rows = _divisor(OW, (7, 8, 6, 5, 4, 3, 2))
    if pad_block is not None:
        # reading through the padding predicate (one scalar condition per channel vector) beats a padded
        # copy: these layers are memory-bound (112x112x96 floats in, a quarter of them out)
        sch.compute_inline(pad_block)
    fo, fi = sch.split(ff, [None, lanes * jv])
    xo, xi = sch.split(xx, [None, rows])
    sch.reorder(nn, yy, fo, xo, rc, ry, rx, xi, fi)
    par = sch.fuse(nn, yy, fo)
    sch.parallel(par)
    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, xo, preserve_unit_loops=True)
    if epi is not None:
        sch.reverse_compute_inline(epi)
    fio, fii = sch.split(fi, [None, lanes])
    sch.unroll(ry)
    sch.unroll(rx)
    sch.unroll(xi)
    sch.unroll(fio)
    sch.vectorize(fii)
    _vectorize_inner(sch, acc, lanes)
    sch.decompose_reduction(conv, rc)
    return sch
