"""ToMe bipartite matching and the size-weighted merge in one kernel (batch 1, any LLVM target).

Replaces one layer's ``matching.bipartite_plan(k.mean(1), r)`` followed by ``matching.merge_wavg`` (about 35
ONNX ops: ReduceMean, ReduceL2, MatMul, ReduceMax, ArgMax, TopK, CumSum, GatherElements, ScatterElements ...,
each its own TVM function with its own parallel launch and buffers). Same decisions, and the same float
operations in the same order where an order matters (the scatter-add of sources follows TopK's order); the
divisions (mean over heads, normalisation, the merge's 1 / Σs) are multiplies by a reciprocal, which moves
results by float rounding only:

1. metric ``m = mean_h k[h]`` (sum, then / H), rows L2-normalised;
2. ``A`` = even tokens, ``B`` = odd tokens; ``S = Â B̂ᵀ``; rows of protected A tokens get ``NEVER``;
   ``S - TIE * j`` (ties go to the lower index), then per A token the best B token (first maximum);
3. the r A tokens with the highest ``best - TIE * i`` are sources (selection, ties to the lower index);
4. kept tokens keep their order (stream compaction); ``xo = (Σ s x) / Σ s`` over each kept token and the
   sources merged into it, ``so = Σ s``.

Layout: ``x [1, N, C]``, ``k [1, H, N, D]`` (or ``[1, N, H, D]``: ``heads_axis``), ``size [1, N, 1]`` ->
``xo [1, N - r, C]``, ``so [1, N - r, 1]`` (the ONNX shapes, so no reshapes around the call). Work: the
score GEMM (``N/2 x N/2 x D``, vectorised along B tokens against a transposed copy of B̂) and the merge rows
are parallel over tokens; selection and compaction (O(r N/2) and O(N) scalar steps) run on one thread.
"""

from __future__ import annotations

from dataclasses import dataclass

# edgecomp.merge.matching's constants (the ONNX graph this kernel replaces computes with them; a test checks
# they are equal; not imported, so that the kernel registry does not load torch)
NEVER = -1.0e4
TIE = 1.0e-6
_J_TILE = 16  # B tokens per vector of a score row (the row is padded with zeros to whole vectors)
TASKS = 8  # parallel tasks of the token loops: each allocates its scratch once, not once per token


@dataclass(frozen=True)
class TokenMerge:
    """One merging layer: N tokens of width C, keys of H heads x D, r merged away, ``protected`` first tokens
    (the class token) never merged."""

    N: int
    C: int
    H: int
    D: int
    r: int
    protected: int = 1
    heads_axis: int = 1  # k is [1, H, N, D] (1) or [1, N, H, D] (2)


def legal(p: TokenMerge, target) -> str | None:
    if str(target.kind.name) != "llvm":
        return f"the token-merge kernel is a CPU kernel, not for {target.kind.name}"
    if p.heads_axis not in (1, 2):
        return f"heads axis {p.heads_axis} of the keys is not 1 or 2"
    if not 0 < p.r <= (p.N - p.protected) // 2:
        return f"r={p.r} out of range for {p.N} tokens"
    if min(p.C, p.H, p.D) < 1 or p.C % _J_TILE:
        return f"token width C={p.C} is not a multiple of {_J_TILE}"
    return None


def build_token_merge(p: TokenMerge):
    from tvm.script import tirx as T

    N, C, H, D, r = p.N, p.C, p.H, p.D, p.r
    NA, NB, M = (N + 1) // 2, N // 2, N - r
    NBp = -(-NB // _J_TILE) * _J_TILE
    rows_protected, cols_protected = (p.protected + 1) // 2, p.protected // 2
    hnd = p.heads_axis == 1
    k_shape = (1, H, N, D) if hnd else (1, N, H, D)
    V, JV = _J_TILE, NBp // _J_TILE
    DV = next(v for v in (16, 8, 4, 2, 1) if D % v == 0)  # lanes of the metric's sum of squares
    NT, IT, MT = -(-N // TASKS), -(-NA // TASKS), -(-M // TASKS)  # tokens / A tokens / outputs per task

    @T.prim_func(s_tir=True)
    def token_merge(x: T.Buffer((1, N, C), "float32"), k: T.Buffer(k_shape, "float32"),
                    size: T.Buffer((1, N, 1), "float32"), xo: T.Buffer((1, M, C), "float32"),
                    so: T.Buffer((1, M, 1), "float32")):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            mn = T.alloc_buffer((N, D), "float32")  # normalised metric
            bt = T.alloc_buffer((D, NBp), "float32")  # B̂ᵀ, zero-padded to whole vector blocks
            best = T.alloc_buffer((NA,), "float32")
            best_j = T.alloc_buffer((NA,), "int32")
            is_src = T.alloc_buffer((N,), "int32")
            src = T.alloc_buffer((r,), "int32")
            dst = T.alloc_buffer((r,), "int32")
            pos = T.alloc_buffer((N,), "int32")
            keep = T.alloc_buffer((M,), "int32")
            # 1. metric rows (sums of squares in DV lanes: a scalar running sum is a chain of dependent adds)
            for task in T.parallel(TASKS):
                sq = T.alloc_buffer((DV,), "float32", scope="local")
                for n in range(task * NT, T.min(N, task * NT + NT)):
                    for d in T.vectorized(D):
                        mn[n, d] = k[0, 0, n, d] if hnd else k[0, n, 0, d]
                    for h in range(1, H):
                        for d in T.vectorized(D):
                            mn[n, d] = mn[n, d] + (k[0, h, n, d] if hnd else k[0, n, h, d])
                    sq[T.ramp(0, 1, DV)] = T.broadcast(T.float32(0), DV)
                    for dv in range(D // DV):
                        mv = mn[n, T.ramp(dv * DV, 1, DV)] * T.broadcast(T.float32(1.0 / H), DV)
                        mn[n, T.ramp(dv * DV, 1, DV)] = mv
                        sq[T.ramp(0, 1, DV)] = sq[T.ramp(0, 1, DV)] + mv * mv
                    for lane in range(1, DV):
                        sq[0] = sq[0] + sq[lane]
                    sq[0] = T.float32(1) / T.sqrt(sq[0])
                    for d in T.vectorized(D):
                        mn[n, d] = mn[n, d] * sq[0]
            for j in range(NB):
                for d in range(D):
                    bt[d, j] = mn[2 * j + 1, d]
            for d in range(D):
                for j in range(NB, NBp):
                    bt[d, j] = T.float32(0)
            # 2. best B token of every A token: a row of scores in JV vectors, the running maximum and its index
            # per lane (strictly greater: the first maximum stays), then the lowest index among the best lanes
            for task in T.parallel(TASKS):
                acc = T.alloc_buffer((NBp,), "float32", scope="local")
                vmax = T.alloc_buffer((V,), "float32", scope="local")
                vidx = T.alloc_buffer((V,), "int32", scope="local")
                bv = T.alloc_buffer((1,), "float32", scope="local")
                bj = T.alloc_buffer((1,), "int32", scope="local")
                for i in range(task * IT, T.min(NA, task * IT + IT)):
                    for jv in T.unroll(JV):
                        acc[T.ramp(jv * V, 1, V)] = T.broadcast(T.float32(0), V)
                    for d in range(D):
                        for jv in T.unroll(JV):
                            acc[T.ramp(jv * V, 1, V)] = acc[T.ramp(jv * V, 1, V)] + T.broadcast(
                                mn[2 * i, d], V) * bt[d, T.ramp(jv * V, 1, V)]
                    vmax[T.ramp(0, 1, V)] = T.broadcast(T.float32(-3.0e38), V)
                    vidx[T.ramp(0, 1, V)] = T.broadcast(0, V)
                    for jv in T.unroll(JV):
                        j = T.ramp(jv * V, 1, V)
                        never = T.Select(T.broadcast(i < rows_protected, V) or j < T.broadcast(cols_protected, V),
                                         T.broadcast(T.float32(NEVER), V), T.broadcast(T.float32(0), V))
                        v = T.Select(j < T.broadcast(NB, V),
                                     (acc[j] + never) - T.broadcast(T.float32(TIE), V) * T.Cast(f"float32x{V}", j),
                                     T.broadcast(T.float32(-3.0e38), V))
                        better = v > vmax[T.ramp(0, 1, V)]
                        vidx[T.ramp(0, 1, V)] = T.Select(better, j, vidx[T.ramp(0, 1, V)])
                        vmax[T.ramp(0, 1, V)] = T.Select(better, v, vmax[T.ramp(0, 1, V)])
                    bv[0] = vmax[0]
                    bj[0] = vidx[0]
                    for lane in range(1, V):
                        if vmax[lane] > bv[0] or (vmax[lane] == bv[0] and vidx[lane] < bj[0]):
                            bv[0] = vmax[lane]
                            bj[0] = vidx[lane]
                    best[i] = bv[0] - T.float32(TIE) * T.Cast("float32", i)
                    best_j[i] = bj[0]
            # 3. sources (in TopK's order) and their destinations' original indices; 4. compaction
            for n in range(N):
                is_src[n] = 0
            for t in range(r):
                bv = T.alloc_buffer((1,), "float32", scope="local")
                bi = T.alloc_buffer((1,), "int32", scope="local")
                bv[0] = T.float32(-3.4e38)
                bi[0] = 0
                for i in range(NA):
                    if is_src[2 * i] == 0 and best[i] > bv[0]:
                        bv[0] = best[i]
                        bi[0] = i
                is_src[2 * bi[0]] = 1
                src[t] = 2 * bi[0]
                dst[t] = 2 * best_j[bi[0]] + 1
            cnt = T.alloc_buffer((1,), "int32", scope="local")
            cnt[0] = 0
            for n in range(N):
                if is_src[n] == 0:
                    pos[n] = cnt[0]
                    keep[cnt[0]] = n
                    cnt[0] = cnt[0] + 1
            # 5. size-weighted merge, one pass per output row: its kept token, plus the sources merged into it in
            # TopK's order (the order of the graph's scatter-add), times 1 / (the summed sizes)
            for t in range(r):
                dst[t] = pos[dst[t]]
            for task in T.parallel(TASKS):
                mine = T.alloc_buffer((r,), "int32", scope="local")
                cnt = T.alloc_buffer((1,), "int32", scope="local")
                tot = T.alloc_buffer((1,), "float32", scope="local")
                row = T.alloc_buffer((V,), "float32", scope="local")
                for m in range(task * MT, T.min(M, task * MT + MT)):
                    cnt[0] = 0
                    tot[0] = size[0, keep[m], 0]
                    for t in range(r):
                        if dst[t] == m:
                            mine[cnt[0]] = src[t]
                            cnt[0] = cnt[0] + 1
                            tot[0] = tot[0] + size[0, src[t], 0]
                    so[0, m, 0] = tot[0]
                    for cv in range(C // V):
                        row[T.ramp(0, 1, V)] = x[0, keep[m], T.ramp(cv * V, 1, V)] * T.broadcast(
                            size[0, keep[m], 0], V)
                        for u in range(cnt[0]):
                            row[T.ramp(0, 1, V)] = row[T.ramp(0, 1, V)] + x[0, mine[u], T.ramp(cv * V, 1, V)] * (
                                T.broadcast(size[0, mine[u], 0], V))
                        xo[0, m, T.ramp(cv * V, 1, V)] = row[T.ramp(0, 1, V)] * T.broadcast(
                            T.float32(1) / tot[0], V)

    return token_merge
