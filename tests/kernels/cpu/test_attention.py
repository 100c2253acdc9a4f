"""kernels/cpu/attention.py against softmax(q kᵀ · scale + bias) v in float64 numpy.

The kernel divides by Σ e once after P·V instead of normalising P first, so it agrees with the reference to
float32 rounding: 2e-6 relative to the largest output. Cases cover row blocks that do not fill the register
tile (N % 6), key counts that are not whole vectors (padded columns must get no weight), every bias
broadcast (per key, per head, per row: a causal mask), a mask of -inf-like values, value widths of one and
several vector tiles, and narrower vectors (aarch64's 4 lanes).
"""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from edgecomp._kernels import kernel  # noqa: E402
from edgecomp._kernels.cpu import attention as A  # noqa: E402
from edgecomp.targets import load_target  # noqa: E402
from edgecomp.tvm import cpu_schedule  # noqa: E402,F401  (vectorised exp, as in a build)

TARGET = load_target("x86").tvm_target(threads=2)


def _run(p: A.Attention, q, kt, v, scale, bias):
    lib = tvm.compile(tvm.IRModule({"attention": A.build_attention(p)}), target=TARGET)
    t = lambda a: tvm.runtime.tensor(np.require(a, np.float32, "C"), tvm.cpu())  # noqa: E731  (keeps 0-d)
    out = t(np.zeros((1, p.H, p.N, p.Dv), np.float32))
    lib["attention"](t(q), t(kt), t(v), t(np.array(scale)), t(bias), out)
    return out.numpy()


def _reference(q, kt, v, scale, bias):
    s = (q.astype(np.float64) @ kt) * scale + bias
    e = np.exp(s - s.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)) @ v


@pytest.mark.parametrize("H,N,M,D,Dv,bias,lanes", [
    (6, 197, 197, 64, 64, None, 16),  # vit-s16
    (3, 50, 50, 64, 64, (1, 1), 16),  # vit-fmnist, ToMe's log-size bias
    (4, 41, 41, 16, 32, (1, 1), 16),  # M and N not multiples of the vector or the row tile
    (2, 13, 29, 8, 48, (2, 1), 16),  # per-head bias; Dv of 3 vectors
    (2, 17, 17, 8, 16, (1, 17), 16),  # per-row bias: a causal mask
    (12, 128, 128, 32, 32, (1, 1), 4),  # minilm, 4-lane vectors
    (1, 1, 5, 3, 4, None, 4),  # one query
])
def test_attention_matches_reference(H, N, M, D, Dv, bias, lanes):
    rng = np.random.default_rng(N * M + D)
    q = rng.standard_normal((1, H, N, D)).astype(np.float32)
    kt = rng.standard_normal((1, H, D, M)).astype(np.float32)
    v = rng.standard_normal((1, H, M, Dv)).astype(np.float32)
    scale = 1.0 / np.sqrt(D)
    if bias is None:
        b = np.zeros((1, 1, 1, M), np.float32)
    elif bias[1] == N and N == M:
        b = np.where(np.tril(np.ones((N, M), bool)), 0, np.finfo(np.float32).min).astype(np.float32)[None, None]
    else:
        b = rng.standard_normal((1, *bias, M)).astype(np.float32)
        b[..., M // 3] = np.finfo(np.float32).min  # a masked key
    p = A.Attention(H, N, M, D, Dv, scale=True, bias=bias, lanes=lanes)
    assert kernel("attention").legal(p, TARGET) is None
    got = _run(p, q, kt, v, scale, b)
    want = _reference(q, kt, v, scale, b)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_attention_without_scale_ignores_the_scale_argument():
    rng = np.random.default_rng(0)
    H, N, M, D, Dv = 2, 9, 9, 8, 16
    q, kt, v = (rng.standard_normal(s).astype(np.float32) for s in ((1, H, N, D), (1, H, D, M), (1, H, M, Dv)))
    p = A.Attention(H, N, M, D, Dv, scale=False, lanes=16)
    got = _run(p, q, kt, v, 123.0, np.zeros((1, 1, 1, M), np.float32))
    np.testing.assert_allclose(got, _reference(q, kt, v, 1.0, 0.0), rtol=0, atol=2e-6)


@pytest.mark.parametrize("p,why", [
    (A.Attention(2, 8, 8, 8, 24, lanes=16), "Dv=24"),
    (A.Attention(2, 8, 8, 8, 16, bias=(3, 1), lanes=16), "do not broadcast"),
])
def test_attention_legality_names_the_reason(p, why):
    assert why in kernel("attention").legal(p, TARGET)
    assert "CPU kernel" in kernel("attention").legal(A.Attention(1, 1, 1, 1, 16), tvm.target.Target("cuda"))
