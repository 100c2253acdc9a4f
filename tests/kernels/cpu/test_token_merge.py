"""kernels/cpu/token_merge.py against edgecomp.merge.matching (bipartite_plan + merge_wavg, torch).

The kernel must make the graph's discrete decisions (which tokens merge, into which destination, in which
order), so merged sizes are compared exactly and features to float rounding (the kernel multiplies by 1 / Σs
where the graph divides). Cases cover both key layouts, sizes above 1, the largest r, exact ties (identical
tokens) and a class token that would be the best source if it were not protected.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

tvm = pytest.importorskip("tvm")

from edgecomp._kernels import kernel  # noqa: E402
from edgecomp._kernels.cpu import token_merge as TM  # noqa: E402
from edgecomp.merge import matching  # noqa: E402
from edgecomp.targets import load_target  # noqa: E402

TARGET = load_target("x86").tvm_target(threads=2)


def _run(p: TM.TokenMerge, x, k, size):
    lib = tvm.compile(tvm.IRModule({"token_merge": TM.build_token_merge(p)}), target=TARGET)
    t = lambda a: tvm.runtime.tensor(np.ascontiguousarray(a), tvm.cpu())  # noqa: E731
    M = p.N - p.r
    xo, so = t(np.zeros((1, M, p.C), np.float32)), t(np.zeros((1, M, 1), np.float32))
    lib["token_merge"](t(x), t(k), t(size), xo, so)
    return xo.numpy(), so.numpy()


def _reference(x, k_hnd, size, r):
    plan = matching.bipartite_plan(torch.from_numpy(k_hnd).mean(1), r)
    xo, so = matching.merge_wavg(plan, torch.from_numpy(x), torch.from_numpy(size))
    return xo.numpy(), so.numpy()


@pytest.mark.parametrize("N,C,H,D,r,heads_axis,case", [
    (197, 384, 6, 64, 13, 1, "random"),
    (197, 384, 6, 64, 13, 2, "random"),
    (50, 64, 3, 64, 24, 1, "random"),  # r = (N - 1) // 2: every unprotected A token merges
    (65, 32, 2, 16, 16, 2, "ties"),
    (41, 48, 4, 8, 7, 1, "class_token_best"),
])
def test_token_merge_matches_the_graph(N, C, H, D, r, heads_axis, case):
    rng = np.random.default_rng(N + r)
    x = rng.standard_normal((1, N, C)).astype(np.float32)
    k = rng.standard_normal((1, H, N, D)).astype(np.float32)
    size = rng.integers(1, 5, (1, N, 1)).astype(np.float32)
    if case == "ties":  # identical tokens: scores tie exactly, TIE offsets must order them like the graph
        k[:, :, 10:30] = k[:, :, 9:10]
        x[:, 10:30] = x[:, 9:10]
    if case == "class_token_best":  # token 0 equals token 1: unprotected it would be the first source
        k[:, :, 0] = k[:, :, 1]
    want_x, want_s = _reference(x, k, size, r)
    p = TM.TokenMerge(N, C, H, D, r, heads_axis=heads_axis)
    got_x, got_s = _run(p, x, k if heads_axis == 1 else np.ascontiguousarray(k.transpose(0, 2, 1, 3)), size)
    np.testing.assert_array_equal(got_s, want_s)
    np.testing.assert_allclose(got_x, want_x, rtol=0, atol=1e-6 * np.abs(want_x).max())


def test_constants_are_the_graphs():
    assert (TM.NEVER, TM.TIE) == (matching.NEVER, matching.TIE)


def test_legal_says_why_not():
    cpu = TARGET
    assert kernel("token_merge").legal(TM.TokenMerge(197, 384, 6, 64, 13), cpu) is None
    assert "multiple of 16" in TM.legal(TM.TokenMerge(197, 40, 6, 64, 13), cpu)
    assert "out of range" in TM.legal(TM.TokenMerge(21, 64, 2, 16, 11), cpu)
    assert "heads axis" in TM.legal(TM.TokenMerge(21, 64, 2, 16, 5, heads_axis=3), cpu)
    assert "CPU kernel" in TM.legal(TM.TokenMerge(21, 64, 2, 16, 5), tvm.target.Target("cuda"))
