"""Scaled dot-product attention in one kernel: ``softmax(Q Kᵀ · scale + bias) V`` (batch 1, float32, LLVM).

Replaces the graph's ``matmul(q, kᵀ) [* scale] [+ bias] -> softmax(axis=-1) -> matmul(p, v)``: three functions,
each its own parallel pass over the ``H x N x M`` score tensor (written to memory, read back twice by the
softmax's max / exp-sum / normalise stages, and once more by P·V). Here each task takes a block of ``R``
query rows of one head and keeps its scores in a ``R x M`` scratch that stays in L1:

1. scores: a register tile of ``R`` rows x ``JT`` vectors against a zero-padded copy of Kᵀ (``M`` rounded up to
   whole vectors), times ``scale``, plus the bias (a padded copy; padded key columns get ``-inf``-like
   ``PAD``); the running row maximum is kept per lane as the tile is written;
2. ``e = exp(s - max)`` in place (padded columns 0), its row sum per lane;
3. ``out = (e V) * (1 / Σ e)``: a register tile of ``R`` rows x ``DT`` vectors over the ``M`` keys. Dividing once
   at the end instead of normalising ``e`` first (flash-attention's order) moves results by float rounding only.

Layouts (the graph's own, so no copies around the call): ``q [1, H, N, D]``, ``kt [1, H, D, M]``,
``v [1, H, M, Dv]``, ``scale []`` (optional), ``bias [1, bh, bn, M]`` (optional, ``bh`` in {1, H}, ``bn`` in
{1, N}: a padding mask, ToMe's proportional-attention ``log s``, a causal mask) -> ``out [1, H, N, Dv]``.
A last row block with fewer than ``R`` rows recomputes row ``N - 1`` in its spare rows and does not store them.
"""

from __future__ import annotations

from dataclasses import dataclass

PAD = -3.0e38  # score of a padded key column (below any real score; exp gives 0 and the column is masked too)
R = 6  # query rows per register tile
TASKS = 16  # parallel tasks; each allocates its scratch once and takes a contiguous range of (head, row block)s


@dataclass(frozen=True)
class Attention:
    """``H`` heads, ``N`` queries of width ``D``, ``M`` keys, values of width ``Dv``; ``bias``: the (heads, rows)
    extents of the additive bias (1 = broadcast), None without one; ``lanes``: float32 lanes of a vector."""

    H: int
    N: int
    M: int
    D: int
    Dv: int
    scale: bool = False
    bias: tuple[int, int] | None = None
    lanes: int = 16


def legal(p: Attention, target) -> str | None:
    if str(target.kind.name) != "llvm":
        return f"the attention kernel is a CPU kernel, not for {target.kind.name}"
    if min(p.H, p.N, p.M, p.D, p.Dv) < 1:
        return "an empty attention"
    if p.lanes < 1 or p.Dv % p.lanes:
        return f"value width Dv={p.Dv} is not a multiple of {p.lanes} lanes"
    if p.bias is not None and (p.bias[0] not in (1, p.H) or p.bias[1] not in (1, p.N)):
        return f"bias extents {p.bias} do not broadcast to ({p.H}, {p.N})"
    return None


def _tile(n: int, widest: int) -> int:
    return next(t for t in range(min(widest, n), 0, -1) if n % t == 0)


def build_attention(p: Attention):
    from tvm.script import tirx as T

    H, N, M, D, Dv, V = p.H, p.N, p.M, p.D, p.Dv, p.lanes
    MP = -(-M // V) * V
    JV = MP // V  # score vectors per row
    JT = min(4, JV)  # score vectors per register tile (R x JT accumulators)
    JMAIN = JV // JT * JT
    DT = _tile(Dv // V, 4)  # output vectors per register tile of P·V
    NB = -(-N // R)
    ITEMS = H * NB
    NT = min(TASKS, ITEMS)
    IT = -(-ITEMS // NT)
    BH, BN = p.bias if p.bias is not None else (1, 1)
    has_bias, has_scale = p.bias is not None, p.scale
    KROWS = H * D
    KT_TASK = -(-KROWS // TASKS)
    MV = M // V * V  # key columns copied as whole vectors
    BROWS = BH * BN  # bias rows
    B_TASKS = min(TASKS, BROWS)
    B_TASK = -(-BROWS // B_TASKS)

    def vec(start):
        return T.ramp(start, 1, V)

    @T.macro
    def score_tile(q, ktp, scale, bp, acc, s, mx, h, n0, j0, width):
        """Scores of R rows x ``width`` vectors from key column ``j0``: scaled, biased, stored in ``s``, and the
        running row maximum per lane in ``mx``."""
        for r in T.unroll(R):
            for jv in T.unroll(width):
                acc[r, vec(jv * V)] = T.broadcast(T.float32(0), V)
        for d in range(D):
            for r in T.unroll(R):
                for jv in T.unroll(width):
                    acc[r, vec(jv * V)] = acc[r, vec(jv * V)] + T.broadcast(
                        q[0, h, T.min(n0 + r, N - 1), d], V) * ktp[h, d, vec(j0 + jv * V)]
        for r in T.unroll(R):
            for jv in T.unroll(width):
                sv = (acc[r, vec(jv * V)] * T.broadcast(scale[()], V) if has_scale else acc[r, vec(jv * V)]) + bp[
                    T.min(h, BH - 1), T.min(n0 + r, N - 1) % BN, vec(j0 + jv * V)]
                s[r, vec(j0 + jv * V)] = sv
                mx[r, vec(0)] = T.max(mx[r, vec(0)], sv)

    @T.prim_func(s_tir=True)
    def attention(q: T.Buffer((1, H, N, D), "float32"), kt: T.Buffer((1, H, D, M), "float32"),
                  v: T.Buffer((1, H, M, Dv), "float32"), scale: T.Buffer((), "float32"),
                  bias: T.Buffer((1, BH, BN, M), "float32"), out: T.Buffer((1, H, N, Dv), "float32")):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            ktp = T.alloc_buffer((H, D, MP), "float32")  # Kᵀ, key columns zero-padded to whole vectors
            bp = T.alloc_buffer((BH, BN, MP), "float32")  # the bias (or 0), PAD in the padded columns
            for task in T.parallel(TASKS):
                for row in range(task * KT_TASK, T.min(KROWS, task * KT_TASK + KT_TASK)):
                    for jv in range(MV // V):
                        ktp[row // D, row % D, vec(jv * V)] = kt[0, row // D, row % D, vec(jv * V)]
                    for j in range(MV, MP):
                        ktp[row // D, row % D, j] = T.if_then_else(j < M, kt[0, row // D, row % D, T.min(j, M - 1)],
                                                                  T.float32(0))
            # (a causal mask is N x M values, the same for every layer: copied in whole vectors, rows in parallel)
            for task in T.parallel(B_TASKS):
                for row in range(task * B_TASK, T.min(BROWS, task * B_TASK + B_TASK)):
                    for jv in range(MV // V):
                        bp[row // BN, row % BN, vec(jv * V)] = bias[0, row // BN, row % BN, vec(jv * V)] \
                            if has_bias else T.broadcast(T.float32(0), V)
                    for j in range(MV, MP):
                        bp[row // BN, row % BN, j] = T.if_then_else(
                            j < M, bias[0, row // BN, row % BN, T.min(j, M - 1)] if has_bias else T.float32(0),
                            T.float32(PAD))
            for task in T.parallel(NT):
                s = T.alloc_buffer((R, MP), "float32", scope="local")
                acc = T.alloc_buffer((R, JT * V), "float32", scope="local")
                o = T.alloc_buffer((R, DT * V), "float32", scope="local")
                mx = T.alloc_buffer((R, V), "float32", scope="local")
                sm = T.alloc_buffer((R, V), "float32", scope="local")
                rs = T.alloc_buffer((R,), "float32", scope="local")
                for it in range(task * IT, T.min(ITEMS, task * IT + IT)):
                    h = it // NB
                    n0 = it % NB * R
                    # 1. scores, R rows x JT vectors at a time, then the last JV % JT vectors one at a time
                    for r in T.unroll(R):
                        mx[r, vec(0)] = T.broadcast(T.float32(PAD), V)
                    for jb in range(JMAIN // JT):
                        score_tile(q, ktp, scale, bp, acc, s, mx, h, n0, jb * JT * V, JT)
                    for jv in range(JMAIN, JV):
                        score_tile(q, ktp, scale, bp, acc, s, mx, h, n0, jv * V, 1)
                    # 2. e = exp(s - max) in place, its sum per lane (padded columns contribute 0)
                    for r in range(R):
                        rs[r] = mx[r, 0]
                        for lane in range(1, V):
                            rs[r] = T.max(rs[r], mx[r, lane])
                        sm[r, vec(0)] = T.broadcast(T.float32(0), V)
                        for jv in range(JV):
                            e = T.Select(vec(jv * V) < T.broadcast(M, V),
                                         T.exp(s[r, vec(jv * V)] - T.broadcast(rs[r], V)),
                                         T.broadcast(T.float32(0), V))
                            s[r, vec(jv * V)] = e
                            sm[r, vec(0)] = sm[r, vec(0)] + e
                        rs[r] = sm[r, 0]
                        for lane in range(1, V):
                            rs[r] = rs[r] + sm[r, lane]
                        rs[r] = T.float32(1) / rs[r]
                    # 3. out = (e V) / Σ e, R rows x DT vectors at a time
                    for db in range(Dv // V // DT):
                        for r in T.unroll(R):
                            for dv in T.unroll(DT):
                                o[r, vec(dv * V)] = T.broadcast(T.float32(0), V)
                        for j in range(M):
                            for r in T.unroll(R):
                                for dv in T.unroll(DT):
                                    o[r, vec(dv * V)] = o[r, vec(dv * V)] + T.broadcast(s[r, j], V) * v[
                                        0, h, j, vec((db * DT + dv) * V)]
                        for r in T.unroll(R):
                            if n0 + r < N:
                                for dv in T.unroll(DT):
                                    out[0, h, n0 + r, vec((db * DT + dv) * V)] = o[r, vec(dv * V)] * T.broadcast(
                                        rs[r], V)

    return attention
