"""Hand schedules for CPU PrimFuncs that no tuning record covers.

``tvm.compile`` leaves CPU loops naive (a ViT block runs ~90x slower than torch), so every PrimFunc
that the shipped MetaSchedule database does not cover goes through these rules, tried in order:

1. ``Conv2d``: NCHW ``conv2d`` / grouped-depthwise ``conv2d`` (one reduction block over ``(c, kh, kw)``
   reading a padded input and a ``W[f, c, kh, kw]`` weight) with fused bias/clip/residual epilogues.
   Regular convolutions are rewritten in place into a GEMM ``W[f, (c,kh,kw)] x X[(c,kh,kw), p]`` over
   flattened output pixels ``p`` (an im2col copy, skipped for 1x1 stride-1 convolutions) and go through
   the GEMM tiler below. Depthwise convolutions get a direct kernel: vectorised along output columns
   (stride-2 inputs de-interleaved into even/odd columns first), or, for rows that are not a multiple
   of 8 (28, 7), across channels on a channel-last padded copy.
   Channels-last graphs (``channels_last``) go to ``conv_nhwc.Conv2dNHWC``; pointwise convolutions and
   matmuls whose weights were packed at build (``prepack``) to ``prepack.Packed``. Both reuse the tiler.
2. ``Matmul``: one multiply-accumulate reduction block ``C[s..., i, j] += A[.., i, k] * B[.., k, j]``
   (dense layers, batched attention matmuls) with elementwise producers and epilogue (bias, GELU,
   residual add) folded in.
   GEMM tiler (``_gemm``): a register tile of ``rows x jv`` vectors along J, epilogue fused into the
   accumulator write-back. Extents that are not a multiple of the tile (197 tokens, 49 pixels) are padded
   with ``pad_einsum`` (zero-filled input copies, cropping write-back) so no inner loop carries a
   predicate; GEMV-like products (few rows) use half-width vectors or a predicated tail instead of
   copying the weight. When several row tiles reuse a column tile, its B panel is packed into a
   contiguous buffer per parallel task (B rows 1536 or 49152 floats apart otherwise alias a few cache
   sets and the panel is re-read from memory for every row tile).
3. ``RowReduction``: softmax / LayerNorm / RMSNorm-style functions whose blocks all map or reduce the
   last axis of the same rows: parallel rows, vectorised maps (a row length that is not a multiple of the
   vector width gets a scalar tail loop) and lane-parallel (rfactor) reductions.
4. dlight's CPU ``GEMV`` and ``Reduction`` rules for the remaining reductions.
5. ``Injective``: everything else (reshape, transpose, concat, elementwise, other reductions):
   inline what can be inlined, parallelise leading loops and vectorise the innermost one; 2-D transposes
   are tiled.

Each rule returns a schedule or None; ``apply`` records which rule scheduled each function so the
build report can say what ran with which schedule.

Importing this module also registers float32 lowerings for LLVM targets that vectorise: ``exp``
(Cephes ``expf``, <1e-7 relative error), ``erf`` (rational polynomial, <5e-7 absolute) and
``pow(x, 2)`` as ``x * x``. The defaults scalarise into one libm call per element, which made softmax
and GELU/RMSNorm stages several times slower than the matmuls around them.
"""

from __future__ import annotations

import functools
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


# the lowerings these replace, for the dtypes they do not handle (captured before registering ours)
_DEFAULT_LOWERING = {
    op: tvm.ir.Op.get(op).get_attr("llvm.FLowerIntrinsic") or tvm.ir.Op.get(op).get_attr("default.FLowerIntrinsic")
    for op in ("tirx.erf", "tirx.exp", "tirx.pow")
}


def _default_lowering(op: str, call):
    fn = _DEFAULT_LOWERING.get(op)
    return fn(call) if fn is not None else call


def _f32_lanes(dtype: str) -> int | None:
    """Lanes of a float32 (vector) dtype string, or None for other types."""
    if dtype == "float32":
        return 1
    if dtype.startswith("float32x") and dtype[8:].isdigit():
        return int(dtype[8:])
    return None


# NOTE: TIR expressions are trees, so an expansion that mentions its argument k times copies it k times, and
# nested calls (sigmoid of sigmoid of ..., exp underneath, fused into one loop body) grew as k**depth:
# fuzzing found four nested sigmoid/tanh hanging the build (exp mentions its argument ~30 times; at depth 5 a
# 64-element loop took 25 s, depth 6 did not finish). Binding the argument with Let (``_let``, kept: it
# states the intent and costs nothing) is not enough: TVM's simplifier inlines side-effect-free Let values
# again. So an argument is expanded only when it is small
# and holds no other intrinsic call or expansion (a load, x - max, x * c: what softmax, GELU and RMSNorm
# give); otherwise the call keeps LLVM's intrinsic (slower per element, but the build stays linear in depth).
MAX_EXPANDED_ARG = 400  # characters of the argument's printed form (TIR exposes no node counter to Python)
_NESTED = ("T.Let", "T.call_", "T.exp", "T.erf", "T.tanh", "T.sigmoid", "T.pow", "T.log", "T.sqrt",
           "T.reinterpret", "T.shift_left")


def _small(expr) -> bool:
    """Whether ``expr`` is small enough to copy into an expansion (see the note above)."""
    text = str(expr)
    return len(text) <= MAX_EXPANDED_ARG and not any(token in text for token in _NESTED)


def _let(name: str, value, body_of):
    """``Let name = value in body_of(var)`` (the simplifier may substitute ``value`` back: see the note above)."""
    var = tirx.Var(name, str(value.ty))
    return tirx.Let(var, value, body_of(var))


def _lower_erf(call):
    x = call.args[0]
    dtype = str(x.ty)
    if _f32_lanes(dtype) is None or not _small(x):
        return _default_lowering("tirx.erf", call)

    def c(v):
        return tirx.const(v, "float32")

    def body(x):
        x2 = x * x
        p = c(_ERF_P[0])
        for a in _ERF_P[1:]:
            p = x2 * p + c(a)
        q = c(_ERF_Q[0])
        for b in _ERF_Q[1:]:
            q = x2 * q + c(b)
        return x * p / q

    return _let("erf_x", tirx.max(tirx.min(x, c(4.0)), c(-4.0)), body)


# float32 exp: Cephes ``expf`` (two-constant ln2 range reduction, degree-6 polynomial, ~1 ulp); LLVM
# would otherwise scalarise vector ``llvm.exp`` into one libm call per lane.
_EXP_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)


def _lower_exp(call):
    x = call.args[0]
    dtype = str(x.ty)
    lanes = _f32_lanes(dtype)
    if lanes is None or not _small(x):
        return _default_lowering("tirx.exp", call)
    itype = "int32" if lanes == 1 else f"int32x{lanes}"

    def c(v):
        return tirx.const(v, "float32")

    def poly(n, r):
        p = c(_EXP_P[0])
        for a in _EXP_P[1:]:
            p = p * r + c(a)
        p = p * (r * r) + r + c(1.0)
        two_n = tirx.reinterpret(dtype, tirx.shift_left(tirx.Cast(itype, n) + 127, 23))
        return p * two_n

    def reduce(x):
        return _let("exp_n", tirx.floor(x * c(1.44269504088896341) + c(0.5)),
                    lambda n: _let("exp_r", x - n * c(0.693359375) - n * c(-2.12194440e-4), lambda r: poly(n, r)))

    return _let("exp_x", tirx.max(tirx.min(x, c(88.3762626647949)), c(-88.3762626647949)), reduce)


def _lower_pow(call):
    """``pow(x, 2)`` (RMSNorm's square, usually with the exponent a runtime scalar parameter) as ``x * x``.

    Any other exponent keeps LLVM's ``llvm.pow``; a non-constant scalar exponent is tested at run time
    (one branch per vector, not per element).
    """
    x, y = call.args
    dtype = str(x.ty)
    if _f32_lanes(dtype) is None or not _small(x):
        return _default_lowering("tirx.pow", call)
    scalar = y.value if isinstance(y, tirx.Broadcast) else y
    if "x" in str(scalar.ty):
        return tirx.call_llvm_pure_intrin(dtype, "llvm.pow", x, y)
    if isinstance(scalar, tirx.FloatImm):
        return _let("pow_x", x, lambda v: v * v) if float(scalar.value) == 2.0 else \
            tirx.call_llvm_pure_intrin(dtype, "llvm.pow", x, y)
    return _let("pow_x", x, lambda v: tirx.if_then_else(scalar == tirx.const(2.0, str(scalar.ty)), v * v,
                                                          tirx.call_llvm_pure_intrin(dtype, "llvm.pow", v, y)))


tirx.op.register_intrin_lowering("tirx.erf", "llvm", f=_lower_erf, level=99)
tirx.op.register_intrin_lowering("tirx.pow", "llvm", f=_lower_pow, level=99)
tirx.op.register_intrin_lowering("tirx.exp", "llvm", f=_lower_exp, level=99)

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


def _j_last(sch: s_tir.Schedule, block, which: tuple[str, int], jvar) -> None:
    """Permute the dims of the buffer ``block`` accesses at ``which`` so the dims indexed by ``jvar``
    (the vectorised GEMM column) come last: packed B panels and accumulators must be contiguous in j."""
    stmt = sch.get(block)
    region = (stmt.reads if which[0] == "read" else stmt.writes)[which[1]].region
    jdims = [d for d, r in enumerate(region) if _uses(r.min, jvar)]
    if not jdims or jdims == list(range(len(region) - len(jdims), len(region))):
        return
    order = [d for d in range(len(region)) if d not in jdims] + jdims
    sch.transform_layout(
        block, which, tirx.IndexMap.from_func(lambda *v: tuple(v[d] for d in order), ndim=len(region))
    )


# ---------------------------------------------------------------------------------------------------
# shared GEMM tiler


# register tiles (rows, vectors per row) in order of preference; at most 28 accumulators + loads in 32 zmm
_TILES = (
    (6, 4), (7, 3), (8, 3), (6, 3), (8, 2), (5, 4), (4, 5), (4, 6), (4, 4), (7, 2), (6, 2), (5, 3), (4, 3),
    (8, 1), (7, 1), (5, 2), (4, 2), (6, 1), (3, 4), (3, 3), (2, 4), (1, 6), (1, 5), (1, 4), (2, 3), (1, 3),
    (3, 2), (2, 2), (1, 2), (5, 1), (4, 1), (3, 1), (2, 1), (1, 1),
)


def _gemm_tiles(I: int, J: int, lanes: int) -> tuple[int, int, int, bool]:
    """Register tile for an ``I x J`` output with vectors along J: (rows, vectors per row, lanes, pad J).

    The preferred tile whose padded work is within 10% of the least padded one wins. Padding J copies the
    whole B operand (and padding I the A operand), which only pays off when many rows (columns) reuse it;
    few-row products (GEMV-like) use half-width vectors or a predicated last tile instead.
    """
    pad_j = True
    if J % lanes and I < 16:
        pad_j = False
        if J % (lanes // 2) == 0:
            lanes //= 2
    cands = []
    for rank, (rows, jv) in enumerate(_TILES):
        if rows > max(I, 1) or (I >= 4 and rows < min(4, I)):
            continue
        jt = lanes * jv
        if jt > -(-J // lanes) * lanes:  # a tile wider than the (vector-rounded) row
            continue
        work = -(-I // rows) * rows * -(-J // jt) * jt
        if J % jt:
            work *= 1 + 8 / I if pad_j else 1.1  # the copy of B, or a predicated last tile
        if I % rows:
            work *= 1 + 8 / J  # the copy of A (the weights of a convolution)
        cands.append((work, rank, rows, jv))
    if not cands:
        return 1, 1, lanes, pad_j
    best = min(c[0] for c in cands)
    _, _, rows, jv = min((c for c in cands if c[0] <= best * 1.1), key=lambda c: c[1])
    return rows, jv, lanes, pad_j


def _gemm(
    sch: s_tir.Schedule, mm, epi, target: Target, inline_producers: bool = True, force_pack: bool = False,
    pack: bool | None = None, tile: tuple[int, int, int] | None = None,
) -> s_tir.Schedule:
    """Register-tile ``mm`` (loops ``(*outer, i, j, *k)``, trivial bindings, einsum accesses).

    ``epi`` is the single elementwise consumer of ``mm`` (or None); it is fused into the write-back.
    Producers of ``mm`` (blocks before it) are inlined when ``inline_producers``, else materialised.
    ``force_pack`` packs the B panels even when few row tiles reuse them (B not contiguous along j);
    ``pack=False`` never does (B is stored as panels already: ``prepack``). ``tile``: the register tile
    (rows, vectors per row, lanes) instead of ``_gemm_tiles``' choice.
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
    rows, jv, lanes, pad_j_ok = _gemm_tiles(I, J, lanes) if tile is None else (*tile, True)
    jt = lanes * jv
    pad_i, pad_j = I % rows != 0, J % jt != 0 and pad_j_ok
    padded = pad_i or pad_j
    if padded:
        sch.pad_einsum(mm, [1] * len(outer) + [rows if pad_i else 1, jt if pad_j else 1] + [1] * n_red)
    blocks = _blocks(sch)
    pos = [_name(sch, b) for b in blocks].index(stmt.name_hint)
    producers = [_name(sch, b) for b in blocks[:pos]]
    copy = blocks[pos + 1] if padded else None
    # Pack the B panel of each column tile into a contiguous buffer when several row tiles reuse it:
    # B rows are J floats apart, and strides like 1536 or 49152 floats map a whole panel onto a few
    # cache sets, so without packing it is re-read from memory for every row tile.
    n_out = len(outer)
    n_outer = math.prod(_extent(sch, lp) for lp in outer)
    i_tiles, j_tiles = -(-I // rows), -(-J // jt)
    k_ext = math.prod(_extent(sch, lp) for lp in sch.get_loops(mm)[len(sch.get_loops(mm)) - n_red :])
    if pack is None:
        pack = force_pack or (i_tiles >= 4 and n_outer * j_tiles >= 4 and k_ext * jt * bits // 8 >= 32768)
    packed = None
    if pack:
        jvar = sch.get(mm).iter_vars[len(outer) + 1].var
        ivar = sch.get(mm).iter_vars[len(outer)].var
        b_idx = [
            n
            for n, r in enumerate(sch.get(mm).reads)
            if any(_uses(x.min, jvar) for x in r.region)
            and not any(_uses(x.min, ivar) for x in r.region)
            and not r.source.same_as(sch.get(mm).writes[0].source)
        ]
        pack = len(b_idx) == 1
        if force_pack and not pack:
            raise ValueError("no B operand to pack")
        if pack:
            packed = sch.cache_read(mm, b_idx[0], "global")
            pbuf = sch.get(packed).writes[0].source
            p_idx = [r.source.same_as(pbuf) for r in sch.get(mm).reads].index(True)
            _j_last(sch, mm, ("read", p_idx), sch.get(mm).iter_vars[n_out + 1].var)
    for name in producers:
        blk = sch.get_sblock(name)
        if (padded and not name.endswith("_pad")) or (not padded and inline_producers):
            try:
                sch.compute_inline(blk)  # e.g. im2col folded into its padded copy or into the packing
                continue
            except RuntimeError:
                pass
        if pack and padded and name.endswith("_pad"):
            try:
                if sch.get(packed).reads[0].source.same_as(sch.get(blk).writes[0].source):
                    sch.compute_inline(blk)  # the packing copy does the padding
                    continue
            except RuntimeError:
                pass
    blocks = _blocks(sch)
    pos = [_name(sch, b) for b in blocks].index(stmt.name_hint)
    for producer in blocks[:pos]:
        if packed is None or not sch.get(producer).same_as(sch.get(packed)):
            _parallel_copy(sch, producer, lanes)
    loops = sch.get_loops(mm)
    *outer, i, j = loops[: len(loops) - n_red]
    ks = loops[len(loops) - n_red :]
    k = sch.fuse(*ks) if len(ks) > 1 else ks[0]
    jo, jti = sch.split(j, [None, jt])
    io, ii = sch.split(i, [None, rows])
    sch.reorder(*outer, jo, io, k, ii, jti)
    if pack:
        par = sch.fuse(*outer, jo)
        sch.parallel(par)
        sch.compute_at(packed, par, preserve_unit_loops=True)
        _vectorize_inner(sch, packed, lanes)
        tile = io
    else:
        par = sch.fuse(*outer, jo, io)
        sch.parallel(par)
        tile = par
    if padded:
        sch.set_scope(mm, 0, "local")
        _j_last(sch, mm, ("write", 0), sch.get(mm).iter_vars[n_out + 1].var)
        if epi is not None:
            sch.reverse_compute_inline(epi)
        sch.reverse_compute_at(copy, tile, preserve_unit_loops=True)
        wb = copy
    else:
        wb = sch.cache_write(mm, 0, "local")
        _j_last(sch, mm, ("write", 0), sch.get(mm).iter_vars[n_out + 1].var)
        sch.reverse_compute_at(wb, tile, preserve_unit_loops=True)
        if epi is not None:
            sch.reverse_compute_inline(epi)
    jto, jtv = sch.split(jti, [None, lanes])
    sch.unroll(ii)
    sch.unroll(jto)
    sch.vectorize(jtv)
    if _extent(sch, sch.get_loops(wb)[-1]) % lanes == 0:
        _vectorize_inner(sch, wb, lanes)  # (not when the write-back transposes the tile: j is not innermost)
    sch.decompose_reduction(mm, k)
    return sch


def _one_mac(func, target: Target, n_reduce: int | None = 1):
    """(schedule, blocks, mac block, iter kinds like "SSSSRRR") for an llvm PrimFunc whose only reduction
    block is a multiply-accumulate (``n_reduce`` reduction iters; None: any number), else None."""
    if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
        return None
    sch = s_tir.Schedule(func)
    blocks = _blocks(sch)
    reductions = [b for b in blocks if _is_reduction(sch, b)]
    if len(reductions) != 1 or not _is_mac(sch.get(reductions[0]), n_reduce):
        return None
    kinds = "".join("R" if int(iv.iter_type) == _REDUCE else "S" for iv in sch.get(reductions[0]).iter_vars)
    return sch, blocks, reductions[0], kinds


_NOT_INLINED = object()  # a producer or an epilogue block that could not be inlined


def _epilogue(sch: s_tir.Schedule, mac, target: Target, inline_producers: bool = False):
    """Inline the elementwise blocks after ``mac`` into the last of them and return that one (None when
    there are none); with ``inline_producers``, every block before ``mac`` first. A trailing padding block
    is scheduled as a stage of its own and is not part of the chain.
    ``_NOT_INLINED`` when a block cannot be inlined (leave the function to the generic rules). The blocks
    are listed afresh: a caller may already have inlined some of them."""
    blocks = _blocks(sch)
    position = [_name(sch, b) for b in blocks].index(_name(sch, mac))
    if inline_producers and not _inline_chain(sch, blocks[:position]):
        return _NOT_INLINED
    epilogue = blocks[position + 1 :]
    if epilogue and _is_pad(sch, epilogue[-1]):
        # FuseOps puts the next layer's zero padding after the epilogue when the padded tensor has several
        # consumers (a quantized conv's input also feeds its scale's reduction). A pad cannot be inlined
        # into the product's tile: it stays a stage of its own, scheduled here.
        _pad_stage(sch, epilogue.pop(), _vector_lanes(target))
    if not _inline_chain(sch, epilogue[:-1]):
        return _NOT_INLINED
    return epilogue[-1] if epilogue else None


def _is_pad(sch: s_tir.Schedule, block) -> bool:
    """Whether ``block`` pads one buffer into a larger one of the same rank (an ``if_then_else`` body)."""
    stmt = sch.get(block)
    if stmt.iter_vars and any(int(iv.iter_type) == _REDUCE for iv in stmt.iter_vars):
        return False
    if len(stmt.reads) != 1 or len(stmt.writes) != 1 or not isinstance(stmt.body, tirx.BufferStore):
        return False
    value = stmt.body.value
    if not (isinstance(value, tvm.ir.Call) and getattr(value.op, "name", "") == "prim.if_then_else"):
        return False
    src, dst = stmt.reads[0].source.shape, stmt.writes[0].source.shape
    if len(src) != len(dst) or not all(isinstance(d, tirx.IntImm) for d in (*src, *dst)):
        return False
    grown = [int(b) - int(a) for a, b in zip(src, dst, strict=True)]
    return all(g >= 0 for g in grown) and any(g > 0 for g in grown)


def _pad_stage(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Schedule a standalone padding block: outer loops parallel, fill and interior copy vectorised."""
    loops = sch.get_loops(block)
    if len(loops) > 2:
        sch.parallel(sch.fuse(*loops[:-2]))
    _pad_fill_then_copy(sch, block, lanes)


def _is_var(e, v) -> bool:
    return isinstance(e, tirx.Var) and e.same_as(v)


def _conv_parts(func, target: Target, weight_iters):
    """Match a conv2d PrimFunc: one multiply-accumulate block over 4 spatial and 3 reduction iters with static
    extents, reading data and a weight indexed by exactly ``weight_iters(block iter vars)`` (4 vars: the
    weight layout). Elementwise producers other than the data's padding stage are inlined, and the
    epilogue chain into its last block. Returns (schedule, conv block, data load, weight load, padding
    block or None, epilogue block or None), or None."""
    found = _one_mac(func, target, None)
    if found is None:
        return None
    sch, blocks, conv, kinds = found
    stmt = sch.get(conv)
    if kinds != "SSSSRRR" or len(sch.get_loops(conv)) != 7:
        return None
    if any(_extent(sch, lp) is None for lp in sch.get_loops(conv)):
        return None
    order = weight_iters([iv.var for iv in stmt.iter_vars])
    la, lb = _mac_loads(stmt)

    def is_weight(ld):
        idx = list(ld.indices)
        return len(idx) == 4 and all(_is_var(e, v) for e, v in zip(idx, order, strict=True))

    data, weight = (la, lb) if is_weight(lb) else (lb, la) if is_weight(la) else (None, None)
    if data is None or len(data.indices) != 4:
        return None
    position = [_name(sch, b) for b in blocks].index(stmt.name_hint)
    # the padding stage of the data input is kept for the schedule to place; anything else is inlined
    pad_block = None
    for producer in blocks[:position]:
        if any(w.source.same_as(data.source) for w in sch.get(producer).writes):
            pad_block = producer
            continue
        try:
            sch.compute_inline(producer)
        except RuntimeError:
            return None
    epi = _epilogue(sch, conv, target)
    if epi is _NOT_INLINED:
        return None
    return sch, conv, data, weight, pad_block, epi


# ---------------------------------------------------------------------------------------------------
# rules


class Matmul(ScheduleRule):
    """Register-tiled schedule for multiply-accumulate reductions (see module docstring)."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        found = _one_mac(func, target)
        if found is None:
            return None
        sch, _, mm, _ = found
        epi = _epilogue(sch, mm, target, inline_producers=True)
        if epi is _NOT_INLINED:
            return None
        loops = sch.get_loops(mm)
        if len(loops) < 3 or sch.get(loops[-1]).kind != tirx.ForKind.SERIAL:
            return None
        return _gemm(sch, mm, epi, target)


class Conv2d(ScheduleRule):
    """NCHW conv2d: regular convolutions as (im2col +) GEMM, depthwise as a direct vectorised kernel."""

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):
        # NCHW block iters (n, f, y, x, c, r, s); OIHW weight W[f, c, r, s]
        parts = _conv_parts(func, target, lambda v: (v[1], v[4], v[5], v[6]))
        if parts is None:
            return None
        sch, conv, data, weight, pad_block, epi = parts
        depthwise = _uses(data.indices[1], sch.get(conv).iter_vars[1].var)
        if depthwise:
            if Conv2d._prefer_cvec(sch, conv, target):
                return self._depthwise_cvec(sch, conv, pad_block, epi, target, weight)
            return self._depthwise(sch, conv, pad_block, epi, target, data.indices[3])
        return self._as_gemm(sch, conv, pad_block, epi, target, data, weight)

    @staticmethod
    def _as_gemm(sch, conv, pad_block, epi, target, data, weight):
        nn, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
        OC, OW, P = _extent(sch, ff), _extent(sch, xx), _extent(sch, yy) * _extent(sch, xx)
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
        used = [
            i
            for v in col_read.region
            for i in range(7)
            if isinstance(v.min, tirx.Var) and v.min.same_as(stmt.iter_vars[i].var)
        ]
        if len(used) != len(col_read.region) or 2 not in used or 3 not in used:
            raise ValueError("unexpected im2col buffer")
        py, px = used.index(2), used.index(3)

        def col_layout(*idx):
            rest = [e for d, e in enumerate(idx) if d not in (py, px)]
            return (*rest, idx[py] * OW + idx[px])

        sch.transform_layout(col, ("write", 0), tirx.IndexMap.from_func(col_layout, ndim=len(used)))
        cl = sch.get_loops(col)
        sch.reorder(*[lp for d, lp in enumerate(cl) if d not in (py, px)], cl[py], cl[px])
        IC = _extent(sch, rc)
        keep = [d for d, e in ((4, IC), (5, KH), (6, KW)) if e > 1] or [4]  # unit reduction iters are dropped
        flat = tirx.IndexMap.from_func(lambda *v: (v[0], v[1], v[2] * OW + v[3], *[v[d] for d in keep]), ndim=7)
        sch.transform_block_layout(conv, flat)
        sch.transform_layout(conv, ("write", 0), lambda n, f, y, x: (n, f, y * OW + x))
        sch.transform_block_layout(epi, lambda n, f, y, x: (n, f, y * OW + x))
        if pad_block is not None:
            sch.compute_inline(pad_block)
        # Few output pixels that are not a whole number of vectors (14x14 = 196) and a short reduction:
        # compute the transposed product instead, pixels as rows and output channels as vectors; the
        # packing of each weight panel transposes it, and the write-back transposes the tile into NCHW.
        # (With a long reduction the pixel-row operand, read across channels, no longer stays in cache.)
        lanes = _vector_lanes(target)
        K = math.prod(_extent(sch, lp) for lp in sch.get_loops(conv)[3:])
        swap = P % lanes != 0 and OC % lanes == 0 and K <= 128 and P < 256
        if swap:
            n_it = 3 + len(keep)
            sch.transform_block_layout(
                conv, tirx.IndexMap.from_func(lambda *v: (v[0], v[2], v[1], *v[3:]), ndim=n_it)
            )
        return _gemm(sch, conv, epi, target, inline_producers=direct, force_pack=swap)

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


class RowReduction(ScheduleRule):
    """Softmax / LayerNorm / RMSNorm-like functions: every block maps or reduces the last axis of the same rows.

    Rows run in parallel and every stage of a row is computed together (the row stays in L1).
    Reductions are split into ``lanes`` partial results (rfactor) so they vectorise; maps are vectorised.
    A row length that is not a multiple of the vector width gets a separate scalar tail loop (loop
    partition), so no vector loop carries a predicate.
    """

    def apply(self, func: tirx.PrimFunc, target: Target, _tunable: bool):  # noqa: C901
        if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
            return None
        sch = s_tir.Schedule(func)
        blocks = _blocks(sch)
        if len(blocks) < 2:
            return None
        last = blocks[-1]
        last_stmt = sch.get(last)
        if _is_reduction(sch, last) or len(last_stmt.iter_vars) < 2:
            return None
        row_ext = [_extent(sch, lp) for lp in sch.get_loops(last)[:-1]]
        J = _extent(sch, sch.get_loops(last)[-1])
        if J is None or any(e is None for e in row_ext):
            return None
        n_rows = len(row_ext)
        kinds = {}
        for blk in blocks:
            stmt = sch.get(blk)
            loops = sch.get_loops(blk)
            exts = [_extent(sch, lp) for lp in loops]
            types = [int(iv.iter_type) for iv in stmt.iter_vars]
            if len(loops) != len(types) or exts[:n_rows] != row_ext or any(t == _REDUCE for t in types[:n_rows]):
                return None
            rest = [t for e, t in zip(exts[n_rows:], types[n_rows:], strict=True) if e != 1]  # keepdims axes
            if not rest:
                kinds[_name(sch, blk)] = "row"
            elif len(rest) == 1 and exts[-1] == J:
                kinds[_name(sch, blk)] = "reduce" if rest[0] == _REDUCE else "map"
            else:
                return None
            if kinds[_name(sch, blk)] == "reduce" and stmt.init is None:
                return None
        if "reduce" not in kinds.values():
            return None
        lanes = _vector_lanes(target, sch.get(last).writes[0].source.dtype.bits)
        # per-row scalars (mean = sum / n) are folded into their consumers
        for blk in blocks[:-1]:
            if kinds[_name(sch, blk)] == "row":
                try:
                    sch.compute_inline(blk)
                except RuntimeError:
                    pass
        blocks = _blocks(sch)
        vec_reduce = J >= 2 * lanes
        rf_names = set()
        for blk in blocks:
            if kinds.get(_name(sch, blk)) != "reduce" or not vec_reduce:
                continue
            k = sch.get_loops(blk)[-1]
            _, ki = sch.split(k, [None, lanes])
            rf_names.add(_name(sch, sch.rfactor(ki, n_rows)))
        last_name = _name(sch, last)
        # Each stage keeps its own parallel row loop. (Computing all stages of a row together needs
        # compute_at, which regenerates the loops of an rfactor block without the predicate of a partial
        # last vector, or merge, whose bindings decompose_reduction then rejects.)
        names = [_name(sch, b) for b in _blocks(sch)]
        rf_ko = []
        for name in names:
            loops = sch.get_loops(sch.get_sblock(name))
            sch.parallel(sch.fuse(*loops[:n_rows]) if n_rows > 1 else loops[0])
            if name in rf_names:
                rf_ko.append((name, self._rfactor_loops(sch, sch.get_sblock(name))))
            elif kinds.get(name) == "reduce" and vec_reduce:
                sch.unroll(sch.get_loops(sch.get_sblock(name))[-1])  # the sum of the lanes partial results
            elif kinds.get(name) == "reduce":
                k = sch.get_loops(sch.get_sblock(name))[-1]
                sch.annotate(k, "pragma_auto_unroll_max_step", 8)
                sch.annotate(k, "pragma_unroll_explicit", 1)
        # decompose after every vectorize (an update block without init is not vectorisable), and
        # partition the maps last (it splits their blocks)
        for name, ko in rf_ko:
            # (with a partial last vector the predicated block cannot be decomposed; its init then stays
            # inside the loop, guarded by ko == 0, and loop_partition would duplicate that init)
            if J % lanes == 0:
                sch.decompose_reduction(sch.get_sblock(name), ko)
        for name in names:
            if kinds.get(name) == "map" or name == last_name:
                self._map_loop(sch, sch.get_loops(sch.get_sblock(name))[-1], J, lanes)
        return sch

    @staticmethod
    def _map_loop(sch, loop, J, lanes):
        main = J - J % lanes
        if main == 0:
            return
        if main != J:
            loop, _tail = sch.loop_partition(loop, [main, None])
        _, vi = sch.split(loop, [None, lanes])
        sch.vectorize(vi)

    @staticmethod
    def _rfactor_loops(sch, rf):
        """Order the rfactor block's loops (partial-sum loop ko, lane loop ki), vectorise ki; returns ko."""
        loops = sch.get_loops(rf)
        realize = sch.get(loops[-1]).body
        stmt = sch.get(rf)
        ko = ki = None
        for lp in loops[1:]:
            lvar = sch.get(lp).loop_var
            for iv, val in zip(stmt.iter_vars, realize.iter_values, strict=True):
                if _extent(sch, lp) > 1 and _uses(val, lvar):
                    if int(iv.iter_type) == _REDUCE:
                        ko = lp
                    else:
                        ki = lp
        order = [sch.get(lp).loop_var.name for lp in loops]
        if order.index(sch.get(ko).loop_var.name) > order.index(sch.get(ki).loop_var.name):
            sch.reorder(ko, ki)
        sch.vectorize(ki)
        return ko


# Below this many loop iterations an injective function runs on one thread: waking the pool and joining it
# costs more than the work (token merging's gathers and index arithmetic are a few hundred elements each).
PARALLEL_MIN_WORK = 16384


class Injective(ScheduleRule):
    """Fallback for anything left: inline intermediates, parallelise outer loops (when there is enough work),
    vectorise inner."""

    @staticmethod
    def _tile_transpose(sch: s_tir.Schedule, blk, lanes: int, tile: int = 16) -> bool:
        """Tile a 2-D transpose-like copy (the read is contiguous along a loop other than the innermost)."""
        loops = sch.get_loops(blk)
        stmt = sch.get(blk)
        if len(loops) < 2 or _is_reduction(sch, blk) or len(stmt.reads) != 1:
            return False
        exts = [_extent(sch, lp) for lp in loops]
        if any(e is None for e in exts):
            return False
        read = stmt.reads[0].region
        write = stmt.writes[0].region
        ivars = [iv.var for iv in stmt.iter_vars]
        if len(ivars) != len(loops):
            return False

        def unit_pos(region):
            last = region[-1].min
            for pos, v in enumerate(ivars):
                coeff = sym.detect_linear_equation(last, [v])
                if len(coeff) == 2 and isinstance(coeff[0], tirx.IntImm) and int(coeff[0]) == 1:
                    if any(_uses(r.min, v) for r in region[:-1]):
                        continue
                    return pos
            return None

        rpos, wpos = unit_pos(read), unit_pos(write)
        if rpos is None or wpos is None or rpos == wpos or wpos != len(loops) - 1:
            return False
        tile = next((t for t in (tile, 8, 4) if exts[rpos] % t == 0 and exts[wpos] % t == 0), None)
        if tile is None:
            return False
        ro, ri = sch.split(loops[rpos], [None, tile])
        wo, wi = sch.split(loops[wpos], [None, tile])
        others = [lp for d, lp in enumerate(loops) if d not in (rpos, wpos)]
        sch.reorder(*others, ro, wo, ri, wi)
        outer = sch.fuse(*others, ro)
        if math.prod(exts) >= PARALLEL_MIN_WORK:
            sch.parallel(outer)
        sch.reorder(wi, ri)
        sch.unroll(wi)
        sch.vectorize(ri)  # contiguous loads, one tile column of stores per lane
        return True

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
            if self._tile_transpose(sch, blk, lanes):
                continue
            spatial = [lp for lp in loops if sch.get(lp).kind == tirx.ForKind.SERIAL]
            stmt = sch.get(blk)
            n_spatial = 0
            for iv in stmt.iter_vars:
                if int(iv.iter_type) == _REDUCE:
                    break
                n_spatial += 1
            lead = spatial[: max(1, min(n_spatial, len(spatial) - 1))] if n_spatial else []
            exts = [_extent(sch, lp) for lp in loops]
            if lead and (None in exts or math.prod(exts) >= PARALLEL_MIN_WORK):
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


@functools.cache
def rules() -> dict:
    """The rules in the order they are tried, by the name the report gives them. (Built on first use:
    ``conv_nhwc`` and ``prepack`` schedule with this module's helpers, so they import this module.)"""
    from edgecomp.tvm.conv_nhwc import Conv2dNHWC
    from edgecomp.tvm.prepack import Packed

    return {
        "conv2d": Conv2d(),
        "conv2d_nhwc": Conv2dNHWC(),
        "packed": Packed(),
        "matmul": Matmul(),
        "rows": RowReduction(),
        "gemv": dl.cpu.GEMV(),
        "reduction": dl.cpu.Reduction(),
        "injective": Injective(),
    }


def apply(mod: tvm.IRModule, target: Target) -> tuple[tvm.IRModule, dict[str, str]]:
    """Schedule every unscheduled PrimFunc of ``mod`` with the first rule that applies.

    Returns the new module and ``{function name: rule name}`` ("none" when no rule applied,
    meaning the function runs with naive loops; the report lists it).
    """
    from edgecomp.tvm.rule_apply import apply_first

    return apply_first(mod, target, rules())
