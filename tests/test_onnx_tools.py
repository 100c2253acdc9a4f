"""Build checks: float graphs on max |diff|; quantized graphs tolerate a rare rounding flip, not a wrong graph."""

from __future__ import annotations

import numpy as np

from edgecomp import onnx_tools


def _feeds(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal((1, 10)).astype(np.float32)] for _ in range(n)]


def test_float_check_is_max_abs():
    ref = _feeds()
    out = [[r[0] + 1e-5] for r in ref]
    check = onnx_tools.check_error(out, ref, quantized=False)
    assert check["metric"] == "max_abs_err" and abs(check["value"] - 1e-5) < 1e-6
    assert onnx_tools.within(check, 1e-4) and not onnx_tools.within(check, 1e-6)


def test_quantized_check_tolerates_one_flipped_feed_but_not_a_wrong_graph():
    ref = _feeds()
    one_flip = [[r[0].copy()] for r in ref]
    one_flip[2][0][0, 3] += 0.3 * np.linalg.norm(ref[2][0])  # one feed off by 30 % (a flip that cascaded)
    check = onnx_tools.check_error(one_flip, ref, quantized=True)
    assert check["value"] == 0.0 and 0.29 < check["worst"] < 0.31
    assert onnx_tools.within(check, 0.2) and not onnx_tools.within(check, 0.1)
    wrong = [[-r[0]] for r in ref]  # e.g. a sign / layout error hits every feed
    assert not onnx_tools.within(onnx_tools.check_error(wrong, ref, quantized=True), 0.2)
    nan = [[r[0] * np.nan] for r in ref]
    assert not onnx_tools.within(onnx_tools.check_error(nan, ref, quantized=True), 0.2)
