"""Integer GEMM for dynamically quantized activations x int8 / int4 weights (W8A8, W4A8, W4A4): x86 AVX-512
VNNI (``vpdpbusd``) and aarch64 dot product (``sdot``).

Replaces ``y = fakequant(x) @ dequant(W)^T + b`` where ``fakequant`` is edgecomp's symmetric per-token
quantizer (``s = max(max|x| / qmax, 1e-12)``, ``q = clip(round_half_even(x / s), -qmax, qmax)``) and W is
int8 per output channel (one group ``G = K``) or int4 per group of ``G`` inputs (``G | K``; zero point 8 when
symmetric, one per group and channel when asymmetric): ``w = (u - z) * scale``.

Two kernels:

* ``quantize_rows``: x f32 ``[M, K]`` -> codes ``q`` i8 ``[Mp, K]`` (``Mp`` = M rounded up to the row tile;
  padding rows are 0), scales ``s`` f32 ``[Mp]`` and per-group row sums of the codes ``R[m, g]`` i32
  ``[Mp, K/G]``. Bit-identical to the ONNX graph's ``Div`` / ``Round`` / ``Clip``.
* ``qgemm``: the register-tiled GEMM. The dot instruction multiplies bytes and adds groups of 4 into
  the V int32 lanes of one vector (V = 16 for 512-bit ``vpdpbusd``, 4 for 128-bit ``sdot``). ``vpdpbusd``
  takes one unsigned operand: the weights (``u`` in [0, 15] for int4; ``u = w + 128`` with zero point 128
  for int8), the activation codes being the signed one. ``sdot`` is signed x signed: int8 weights stay
  signed (zero point 0). Weights are stored as the instruction reads them:

  - int8: ``w[N/V, K/4, V, 4]`` (V output channels x 4 consecutive inputs per 4V-byte vector);
  - int4: ``w[N/V, K/8, 4V]`` u8 holding two such vectors, inputs ``k..k+3`` in the low nibbles and
    ``k+4..k+7`` in the high nibbles, so the weights keep their 4-bit size and unpacking is one AND and one
    shift per 4V values, shared by the row tile.

  Per group g, ``sum_k q w_int = acc_g - z[g, n] R[m, g]`` exactly in int32 (``acc_g = sum_k q u``), so
  ``y[m, n] = s[m] sum_g ws[g, n] (acc_g - z[g, n] R[m, g]) + b[n]``: the integer part is exact, only the
  float fold per group and the final scale round (no large offsets cancel in float).

Schedule (written into the loops, no tuner): parallel over column tiles of ``V NR`` channels (and, when
there are few of those, over two halves of the rows), then row tiles of MR rows; MR x NR int32 vector
accumulators per group, folded into MR x NR float accumulators once per group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LANES = 16  # float / int32 lanes the row kernels (quantize_rows) work in
_EPS = 1e-12  # edgecomp.quant.activations._EPS: the floor of a per-token scale


@dataclass(frozen=True)
class DotISA:
    """A 4-way int8 dot-product instruction: ``acc[V] += sum_4 a[4V] * b[4V]`` per int32 lane."""

    name: str
    feature: str  # LLVM target feature that provides it
    intrinsic: str
    lanes: int  # V: int32 lanes per vector
    unsigned_weights: bool  # the weight operand is unsigned (vpdpbusd); else both are signed (sdot)


ISAS = (
    DotISA("avx512-vnni", "avx512vnni", "llvm.x86.avx512.vpdpbusd.512", 16, True),
    DotISA("neon-dotprod", "dotprod", "llvm.aarch64.neon.sdot.v4i32.v16i8", 4, False),
)


@dataclass(frozen=True)
class QGemm:
    """One quantized Linear: x [M, K] (M = all leading dims) times W [N, K]; int groups of G inputs."""

    M: int
    K: int
    N: int
    G: int  # weight group along K (G = K for per-channel int8)
    wbits: int  # 8 or 4
    qmax: int  # activation code range [-qmax, qmax] (127 for A8, 7 for A4)

    @property
    def MR(self) -> int:
        return 4 if self.M >= 4 else self.M

    @property
    def Mp(self) -> int:
        return -(-self.M // self.MR) * self.MR

    def NR(self, isa: DotISA) -> int:
        """Vectors of output channels per register tile: 4, fewer when N does not divide."""
        for nr in (4, 2, 1):
            if self.N % (isa.lanes * nr) == 0:
                return nr
        return 1


def isa_for(target) -> DotISA | None:
    """The dot-product instruction ``target`` has (a tvm.target.Target), or None."""
    from tvm.target import codegen

    if str(target.kind.name) != "llvm":
        return None
    return next((i for i in ISAS if codegen.target_has_features(i.feature, target)), None)


def has_vnni(target) -> bool:
    isa = isa_for(target)
    return isa is not None and isa.name == "avx512-vnni"


def legal(p: QGemm, target) -> str | None:
    isa = isa_for(target)
    if isa is None:
        return "the target CPU has no int8 dot-product instruction (AVX-512 VNNI / Arm dotprod)"
    if p.wbits not in (4, 8):
        return f"{p.wbits}-bit weights"
    if p.qmax > 127:
        return f"activation range +-{p.qmax} does not fit int8"
    if p.N % isa.lanes:
        return f"N={p.N} is not a multiple of {isa.lanes}"
    if p.K % LANES or p.K % p.G or p.G % (8 if p.wbits == 4 else 4):
        return f"K={p.K}, group {p.G} do not tile by {LANES} / {8 if p.wbits == 4 else 4}"
    return None


# ---------------------------------------------------------------------------------------------------
# weight layout (numpy, at build time)


def pack_weights(values: np.ndarray, scales: np.ndarray, G: int, wbits: int, isa: DotISA,
                 zero_points: np.ndarray | None = None):
    """Weights int [N, K] (int4: stored ``u`` in [0, 15]; int8: signed codes), scales f32 [N, K/G] and, for
    asymmetric int4, zero points int [N, K/G] -> ``(w in the kernel's layout for ``isa``, ws f32 [K/G, N],
    z u8 [K/G, N])`` with ``w_int = u - z``."""
    N, K = values.shape
    V = isa.lanes
    u = values.astype(np.int32)
    if wbits == 8:
        offset = 128 if isa.unsigned_weights else 0
        u, z = u + offset, np.full((N, K // G), offset, np.int64)
    else:
        z = np.full((N, K // G), 8, np.int64) if zero_points is None else zero_points.reshape(N, K // G)
    lo, hi = (0, 15) if wbits == 4 else ((0, 255) if isa.unsigned_weights else (-128, 127))
    assert u.min() >= lo and u.max() <= hi, "weights out of range"
    u = u.astype(np.int8 if lo < 0 else np.uint8).view(np.uint8)  # the bytes; the kernel reinterprets
    if wbits == 4:
        v = u.reshape(N // V, V, K // 8, 2, 4).transpose(0, 2, 3, 1, 4)
        w = (v[:, :, 0] | (v[:, :, 1] << 4)).reshape(N // V, K // 8, 4 * V)
    else:
        w = u.reshape(N // V, V, K // 4, 4).transpose(0, 2, 1, 3)
    ws = scales.reshape(N, K // G).T.astype(np.float32)
    return np.ascontiguousarray(w), np.ascontiguousarray(ws), np.ascontiguousarray(np.asarray(z).T.astype(np.uint8))


# ---------------------------------------------------------------------------------------------------
# kernels


def build_quantize_rows(p: QGemm):
    from tvm.script import tirx as T

    M, K, G, Mp, qmax = p.M, p.K, p.G, p.Mp, float(p.qmax)
    KG, V = K // G, LANES
    TASKS = min(8, Mp)
    RT = -(-Mp // TASKS)  # rows per task

    # horizontal max / sum of the V lanes as one balanced expression: a loop through a scratch scalar is a chain
    # of V dependent store-load-adds per row and group, which was most of this kernel's time
    def tree(op, buf):
        terms = [buf[i] for i in range(V)]
        while len(terms) > 1:
            terms = [op(terms[i], terms[i + 1]) for i in range(0, len(terms), 2)]
        return terms[0]

    @T.prim_func(s_tir=True)
    def quantize_rows(x: T.Buffer((M, K), "float32"), xq: T.Buffer((Mp, K), "int8"),
                      xs: T.Buffer((Mp,), "float32"), rs: T.Buffer((Mp, KG), "int32")):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            # rows in TASKS chunks: scratch declared in a parallel body is allocated once per iteration
            for task in T.parallel(TASKS):
                vmax = T.alloc_buffer((V,), "float32", scope="local")
                amax = T.alloc_buffer((1,), "float32", scope="local")
                vsum = T.alloc_buffer((V,), "int32", scope="local")
                for m in range(task * RT, T.min(Mp, task * RT + RT)):
                    if m < M:
                        vmax[T.ramp(0, 1, V)] = T.broadcast(T.float32(0), V)
                        for k in range(K // V):
                            vmax[T.ramp(0, 1, V)] = T.max(vmax[T.ramp(0, 1, V)], T.fabs(x[m, T.ramp(k * V, 1, V)]))
                        amax[0] = tree(T.max, vmax)
                        # exactly the graph's Clip(Div(ReduceMax(Abs(x)), qmax), eps), then Div and Round (half even)
                        s = T.max(amax[0] / T.float32(qmax), T.float32(_EPS))
                        xs[m] = s
                        for k in T.vectorized(K):
                            xq[m, k] = T.Cast("int8", T.max(T.min(T.nearbyint(x[m, k] / s), T.float32(qmax)),
                                                            T.float32(-qmax)))
                        for g in range(KG):
                            vsum[T.ramp(0, 1, V)] = T.broadcast(T.int32(0), V)
                            for k in range(G // V):
                                vsum[T.ramp(0, 1, V)] = vsum[T.ramp(0, 1, V)] + T.Cast(
                                    "int32x16", xq[m, T.ramp(g * G + k * V, 1, V)])
                            rs[m, g] = tree(lambda a, b: a + b, vsum)
                    else:
                        xs[m] = T.float32(0)
                        for k in T.vectorized(K):
                            xq[m, k] = T.int8(0)
                        for g in range(KG):
                            rs[m, g] = 0

    return quantize_rows


def build_qgemm(p: QGemm, isa: DotISA):
    """The GEMM for ``isa``; ``b`` is the layer's bias (zeros when it has none)."""
    from tvm.script import tirx as T

    M, K, N, G, Mp, MR, V = p.M, p.K, p.N, p.G, p.Mp, p.MR, isa.lanes
    NR, KG, B = p.NR(isa), K // G, 4 * isa.lanes  # B: bytes per vector
    NT, MT = N // (V * NR), Mp // MR
    MS = 2 if NT < 8 and MT >= 2 else 1  # split rows too when there are few column tiles
    MTS = -(-MT // MS)
    intrinsic = T.llvm_lookup_intrinsic_id(isa.intrinsic)
    w_shape = (N // V, K // 8, B) if p.wbits == 4 else (N // V, K // 4, V, 4)
    i32v, f32v, i8v, u8v = f"int32x{V}", f"float32x{V}", f"int8x{B}", f"uint8x{B}"

    def q4(xq, m, k):  # 4 activation codes broadcast to all V lanes
        return T.reinterpret(i8v, T.broadcast(T.reinterpret("int32", xq.vload([m, k], "int8x4")), V))

    def dot(acc, u, q):  # acc[V] += 4-wide dots of the weight bytes u with the activation codes q
        return T.call_llvm_pure_intrin(i32v, intrinsic, acc, u, q)

    @T.prim_func(s_tir=True)
    def qgemm(xq: T.Buffer((Mp, K), "int8"), xs: T.Buffer((Mp,), "float32"), rs: T.Buffer((Mp, KG), "int32"),
              w: T.Buffer(w_shape, "uint8"), ws: T.Buffer((KG, N), "float32"), z: T.Buffer((KG, N), "uint8"),
              b: T.Buffer((N,), "float32"), y: T.Buffer((M, N), "float32")):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            for task in T.parallel(NT * MS):
                nt = task // MS
                acc = T.alloc_buffer((MR, NR * V), "int32", scope="local")
                yf = T.alloc_buffer((MR, NR * V), "float32", scope="local")
                lo = T.alloc_buffer((NR * B,), "int8", scope="local")
                hi = T.alloc_buffer((NR * B,), "int8", scope="local")
                for mi in range(MTS):
                    mt = (task % MS) * MTS + mi
                    if mt < MT:
                        for r in T.unroll(MR):
                            for v in T.unroll(NR):
                                yf[r, T.ramp(v * V, 1, V)] = T.broadcast(T.float32(0), V)
                        for g in range(KG):
                            for r in T.unroll(MR):
                                for v in T.unroll(NR):
                                    acc[r, T.ramp(v * V, 1, V)] = T.broadcast(T.int32(0), V)
                            if p.wbits == 4:
                                for k8 in range(G // 8):
                                    for v in T.unroll(NR):
                                        packed = w[nt * NR + v, g * (G // 8) + k8, T.ramp(0, 1, B)]
                                        lo[T.ramp(v * B, 1, B)] = T.reinterpret(
                                            i8v, T.bitwise_and(packed, T.broadcast(T.uint8(15), B)))
                                        hi[T.ramp(v * B, 1, B)] = T.reinterpret(
                                            i8v, T.shift_right(packed, T.broadcast(T.uint8(4), B)))
                                    for r in T.unroll(MR):
                                        for v in T.unroll(NR):
                                            acc[r, T.ramp(v * V, 1, V)] = dot(
                                                acc[r, T.ramp(v * V, 1, V)], lo[T.ramp(v * B, 1, B)],
                                                q4(xq, mt * MR + r, g * G + k8 * 8))
                                            acc[r, T.ramp(v * V, 1, V)] = dot(
                                                acc[r, T.ramp(v * V, 1, V)], hi[T.ramp(v * B, 1, B)],
                                                q4(xq, mt * MR + r, g * G + k8 * 8 + 4))
                            else:
                                for k4 in range(G // 4):
                                    for r in T.unroll(MR):
                                        for v in T.unroll(NR):
                                            acc[r, T.ramp(v * V, 1, V)] = dot(
                                                acc[r, T.ramp(v * V, 1, V)],
                                                T.reinterpret(i8v, w.vload(
                                                    [nt * NR + v, g * (G // 4) + k4, 0, 0], u8v)),
                                                q4(xq, mt * MR + r, g * G + k4 * 4))
                            for r in T.unroll(MR):
                                for v in T.unroll(NR):
                                    yf[r, T.ramp(v * V, 1, V)] = yf[r, T.ramp(v * V, 1, V)] + ws[
                                        g, T.ramp((nt * NR + v) * V, 1, V)] * T.Cast(
                                        f32v, acc[r, T.ramp(v * V, 1, V)]
                                        - T.Cast(i32v, z[g, T.ramp((nt * NR + v) * V, 1, V)])
                                        * T.broadcast(rs[mt * MR + r, g], V))
                        for r in T.unroll(MR):
                            if mt * MR + r < M:
                                for v in T.unroll(NR):
                                    y[mt * MR + r, T.ramp((nt * NR + v) * V, 1, V)] = T.broadcast(
                                        xs[mt * MR + r], V) * yf[r, T.ramp(v * V, 1, V)] + b[
                                        T.ramp((nt * NR + v) * V, 1, V)]

    return qgemm
