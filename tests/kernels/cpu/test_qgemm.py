"""kernels/cpu/qgemm.py against numpy: quantize_rows bit for bit, the integer GEMM exactly.

With unit weight scales and no bias the GEMM's output is ``s[m] * (integer dot product)`` with one
rounding (the dot product is exact in float32 for these sizes), so any error in the nibble layout, the zero
points or the row sums shows up as an inequality, not as a tolerance question.
"""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from edgecomp._kernels.cpu import qgemm as Q  # noqa: E402
from edgecomp.targets import load_target  # noqa: E402

TARGET = load_target("x86").tvm_target(threads=2)
needs_vnni = pytest.mark.skipif(not Q.has_vnni(TARGET), reason="host CPU has no AVX-512 VNNI")

CASES = [  # M, K, N, G, wbits, qmax, asymmetric
    (5, 64, 16, 32, 4, 127, False),
    (13, 192, 64, 64, 4, 127, True),
    (9, 256, 96, 128, 4, 7, True),
    (3, 128, 32, 128, 8, 127, False),
    (1, 384, 48, 384, 8, 127, False),
]


def _run(p: Q.QGemm, x, values, scales, zero_points, bias):
    isa = Q.isa_for(TARGET)
    lib = tvm.compile(tvm.IRModule({"quantize_rows": Q.build_quantize_rows(p), "qgemm": Q.build_qgemm(p, isa)}),
                      target=TARGET)
    dev = tvm.cpu()
    t = lambda a: tvm.runtime.tensor(np.ascontiguousarray(a), dev)  # noqa: E731
    xq = t(np.zeros((p.Mp, p.K), np.int8))
    xs, rs = t(np.zeros(p.Mp, np.float32)), t(np.zeros((p.Mp, p.K // p.G), np.int32))
    y = t(np.zeros((p.M, p.N), np.float32))
    lib["quantize_rows"](t(x), xq, xs, rs)
    w, ws, z = Q.pack_weights(values, scales, p.G, p.wbits, isa, zero_points)
    lib["qgemm"](xq, xs, rs, t(w), t(ws), t(z), t(bias), y)
    return xq.numpy(), xs.numpy(), rs.numpy(), y.numpy()


@needs_vnni
@pytest.mark.parametrize("M,K,N,G,wbits,qmax,asym", CASES)
def test_quantize_rows_and_integer_gemm_are_exact(M, K, N, G, wbits, qmax, asym):
    rng = np.random.default_rng(M * K + N)
    p = Q.QGemm(M, K, N, G, wbits, qmax)
    x = rng.standard_normal((M, K)).astype(np.float32) * 4
    x[:, 0] = 0.5 * x[:, 1]  # exact ties (x / s = k + 1/2) are possible; round half to even must match numpy
    x[0] = 0.0  # an all-zero row: the scale floor
    if wbits == 4:
        values = rng.integers(0, 16, (N, K))
        zero_points = rng.integers(0, 16, (N, K // G)) if asym else None
        z = zero_points if asym else np.full((N, K // G), 8)
        w_int = values - np.repeat(z, G, axis=1)
    else:
        values = zero_points = None
        w_int = rng.integers(-128, 128, (N, K))
        values = w_int
    bias = np.zeros(N, np.float32)  # (a bias would be fused into one FMA: covered by the next test)
    xq, xs, rs, y = _run(p, x, values, np.ones((N, K // G), np.float32), zero_points, bias)

    s = np.maximum(np.abs(x).max(1) / np.float32(qmax), np.float32(1e-12)).astype(np.float32)
    q = np.clip(np.round(x / s[:, None]), -qmax, qmax)  # np.round: half to even, as ONNX Round
    np.testing.assert_array_equal(xs[:M], s)
    np.testing.assert_array_equal(xq[:M], q.astype(np.int8))
    np.testing.assert_array_equal(xq[M:], 0)
    np.testing.assert_array_equal(rs[:M], q.reshape(M, K // G, G).sum(-1))
    dots = q.astype(np.int64) @ w_int.T.astype(np.int64)
    assert np.abs(dots).max() < 2**24  # exactly representable: the comparison below is exact
    np.testing.assert_array_equal(y, s[:, None] * dots.astype(np.float32))


@needs_vnni
def test_scaled_gemm_matches_float64_reference():
    rng = np.random.default_rng(1)
    p = Q.QGemm(37, 256, 64, 64, 4, 127)
    x = rng.standard_normal((37, 256)).astype(np.float32)
    values, zero_points = rng.integers(0, 16, (64, 256)), rng.integers(4, 12, (64, 4))
    scales = (rng.random((64, 4)) * 0.05 + 1e-3).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    _, xs, _, y = _run(p, x, values, scales, zero_points, bias)
    q = np.clip(np.round(x / xs[:37, None]), -127, 127)
    w = (values - np.repeat(zero_points, 64, axis=1)) * np.repeat(scales.astype(np.float64), 64, axis=1)
    ref = (q * xs[:37, None].astype(np.float64)) @ w.T + bias
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@needs_vnni
def test_legality_names_the_reason():
    assert "N=10" in Q.legal(Q.QGemm(4, 64, 10, 64, 4, 127), TARGET)
    assert "K=" in Q.legal(Q.QGemm(4, 60, 16, 60, 4, 127), TARGET)
    plain_arm = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    assert "dot-product" in Q.legal(Q.QGemm(4, 64, 16, 64, 4, 127), plain_arm)
    arm = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]})
    assert Q.isa_for(arm).name == "neon-dotprod" and Q.legal(Q.QGemm(4, 64, 4, 64, 4, 127), arm) is None


@pytest.mark.parametrize("wbits", [4, 8])
def test_aarch64_build_uses_sdot(wbits):
    """Cross-compiles for aarch64 (+dotprod) and checks the inner product is the sdot instruction. Its
    numerics run under qemu in the arm64 artifact tests."""
    arm = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]})
    p = Q.QGemm(13, 192, 64, 64 if wbits == 4 else 192, wbits, 127)
    ex = tvm.compile(tvm.IRModule({"qgemm": Q.build_qgemm(p, Q.isa_for(arm))}), target=arm)
    asm = ex.mod.inspect_source("asm")
    # MR x NR = 4 x 4 vector accumulators per step: 2 sdot each per 8 inputs (int4), 1 per 4 (int8)
    assert asm.count("sdot") >= 16
