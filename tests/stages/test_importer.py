"""The importer's held-out feeds: drawn from the calibration source, never equal to a calibration feed."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgecomp.stages import importer


def _feeds(values):
    return [{"x": np.full((1, 2), v, np.float32)} for v in values]


def test_held_out_skips_calibration_feeds():
    calibration = _feeds([1, 2, 3])
    draws = []

    def draw(k):  # a small pool: the other seed repeats calibration samples
        draws.append(k)
        return _feeds([2, 7, 3, 8, 9, 1, 10, 11, 12, 13][:k])

    held_out = importer._held_out(draw, calibration)
    assert [f["x"][0, 0] for f in held_out(2)] == [7, 8]
    assert [f["x"][0, 0] for f in held_out(3)] == [7, 8, 9]
    assert draws == [10, 11]


def test_onnx_source_holds_out_other_synthetic_feeds(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    model = importer.load(path, calib_samples=3, seed=0)
    held_out = model.held_out(2)
    assert len(held_out) == 2
    calib = [f["x"].tobytes() for f in model.calibration]
    assert all(f["x"].tobytes() not in calib for f in held_out)
    np.testing.assert_array_equal(held_out[0]["x"], model.held_out(2)[0]["x"])  # deterministic
