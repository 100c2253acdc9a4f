"""edgecomp.tvm.reshape_sinking: reshapes move below elementwise ops (so GELU fuses into the GEMM before it),
results do not change, and an operand that would broadcast differently after the move keeps the reshape."""

from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402

from edgecomp.targets import load_target  # noqa: E402
from edgecomp.tvm import reshape_sinking  # noqa: E402
from edgecomp.tvm.compile import compile_relax  # noqa: E402

X86 = load_target("x86")


def _gelu_after_matmul(bias_len: int, out_shape: tuple[int, ...]):
    """``reshape(x @ w + b) -> erf GELU -> reshape back``, the form TVM's ONNX importer gives a ViT MLP."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((6, 4), "float32"))
    w = relax.Var("w", relax.TensorType((4, 4), "float32"))
    b = relax.Var("b", relax.TensorType((bias_len,), "float32"))
    half = relax.const(0.5, "float32")
    with bb.function("main", [x, w, b]):
        with bb.dataflow():
            y = bb.emit(relax.op.reshape(relax.op.matmul(x, w), out_shape))
            y = bb.emit(relax.op.add(y, b))  # commutes only while b runs along an unchanged last axis
            e = bb.emit(relax.op.add(relax.op.erf(relax.op.multiply(y, relax.const(0.7071, "float32"))),
                                     relax.const(1.0, "float32")))
            g = bb.emit(relax.op.multiply(relax.op.multiply(y, e), half))
            out = bb.emit_output(relax.op.reshape(g, (6, 4)))
        bb.emit_func_output(out)
    return bb.get()


def _run(mod, feeds):
    from edgecomp.runtime.vm import VMRunner
    from edgecomp.specs import TensorSpec

    compiled = compile_relax(mod, [], X86, use_database=False, threads=2)
    specs = tuple(TensorSpec(k, v.shape) for k, v in feeds.items())
    return VMRunner(compiled.executable, [], specs)(feeds)[0]


def _feeds(bias_len):
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((6, 4)).astype(np.float32), "w": rng.standard_normal((4, 4)).astype(np.float32),
            "b": rng.standard_normal(bias_len).astype(np.float32)}


def test_gelu_moves_next_to_its_matmul_and_results_do_not_change():
    before = _gelu_after_matmul(4, (1, 6, 4))
    want = _run(before, _feeds(4))
    after = reshape_sinking.sink(_gelu_after_matmul(4, (1, 6, 4)))
    text = after["main"].script()
    assert "R.reshape" not in text  # reshape to 3-D and back cancel once nothing sits between them
    np.testing.assert_array_equal(_run(after, _feeds(4)), want)


def test_a_bias_along_a_changed_axis_keeps_the_reshape():
    after = reshape_sinking.sink(_gelu_after_matmul(8, (3, 8)))  # [6, 4] -> [3, 8] + b[8]: not the same broadcast
    text = after["main"].script()
    assert text.count("R.reshape") == 2 and "R.add(lv1, b)" in text  # the add still reads the [3, 8] reshape
    np.testing.assert_array_equal(_run(after, _feeds(8)), _run(_gelu_after_matmul(8, (3, 8)), _feeds(8)))


def test_a_residual_operand_moves_with_the_reshape_in_its_own_position():
    """``r - reshape(x @ w)`` and ``reshape(x @ w) / r`` (not commutative) with r of the 3-D shape: the op runs
    on 2-D values next to the matmul, the operands keep their order, results do not change."""

    def build():
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType((6, 4), "float32"))
        w = relax.Var("w", relax.TensorType((4, 4), "float32"))
        r = relax.Var("b", relax.TensorType((1, 6, 4), "float32"))
        with bb.function("main", [x, w, r]):
            with bb.dataflow():
                y = bb.emit(relax.op.reshape(relax.op.matmul(x, w), (1, 6, 4)))
                d = bb.emit(relax.op.subtract(r, y))
                q = bb.emit(relax.op.divide(d, r))
                out = bb.emit_output(relax.op.reshape(q, (6, 4)))
            bb.emit_func_output(out)
        return bb.get()

    feeds = _feeds(4)
    feeds["b"] = np.random.default_rng(1).uniform(1, 2, (1, 6, 4)).astype(np.float32)
    after = reshape_sinking.sink(build())
    text = after["main"].script()
    assert "R.subtract(lv_1, lv)" in text and "R.divide(lv2, lv_1)" in text  # lv_1: r as [6, 4]; lv: x @ w
    assert text.count("R.reshape") == 1  # r to 2-D (a view); the reshapes around the matmul cancel
    np.testing.assert_array_equal(_run(after, feeds), _run(build(), feeds))
