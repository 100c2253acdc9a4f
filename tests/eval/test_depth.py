"""depth-scenes on fake engines: exact depth scores perfectly, a scaled one as computed, bad models refused."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.errors import InputError, MissingDataError
from edgecomp.eval import depth
from edgecomp.eval.depth import depth_scenes_task, middlebury_metrics
from edgecomp.specs import TensorSpec
from edgecomp.zoo.data import depth_scenes

INPUTS = (TensorSpec("pixels", (1, 3, 32, 32), "float32"),)


@pytest.fixture(autouse=True)
def _need_photos(or_skip):
    or_skip(depth_scenes.textures)


def _oracle(scale: float = 1.0):
    """An engine that looks its input up among the test scenes and answers scale x the exact depth."""
    x, d = depth._test_split(32, 4)

    def run(feeds):
        i = int(np.argmin([np.abs(feeds["pixels"][0] - xi).sum() for xi in x]))
        return [(scale * d[i])[None, None].astype(np.float32)]

    return run


def test_exact_depth_scores_perfectly_and_reference_is_reported():
    r = depth_scenes_task(_oracle(), _oracle(1.5), INPUTS, 4)
    assert r.metric == "abs_rel" and r.value == 0 and not r.higher_is_better and r.n == 4
    assert r.details["test_delta1"] == 1.0
    assert r.reference_value == pytest.approx(0.5)
    assert r.details["reference_test_delta1"] == 0.0  # ratio 1.5 is outside δ1's 1.25


def test_scaled_depth_metrics():
    r = depth_scenes_task(_oracle(1.5), None, INPUTS, 4)
    assert r.value == pytest.approx(0.5) and r.details["test_delta1"] == 0 and r.details["test_delta2"] == 1
    assert r.reference_value is None and "reference_test_abs_rel" not in r.details


def test_middlebury_alignment_is_scale_free():
    try:
        a = middlebury_metrics(lambda f: [np.full((1, 1, 32, 32), 3.0, np.float32)], "pixels", 32)
        b = middlebury_metrics(lambda f: [np.full((1, 1, 32, 32), 30.0, np.float32)], "pixels", 32)
    except MissingDataError as e:
        pytest.skip(f"{e} ({e.hint})")
    assert set(a) >= {"motorcycle_abs_rel", "motorcycle_delta1", "aloe_abs_rel", "aloe_delta1"}
    assert a["motorcycle_abs_rel"] == pytest.approx(b["motorcycle_abs_rel"], rel=1e-6)


def test_bad_models_are_refused():
    with pytest.raises(InputError):
        depth_scenes_task(_oracle(), None, (TensorSpec("pixels", (1, 1, 28, 28), "float32"),), 2)
    with pytest.raises(InputError):
        depth_scenes_task(lambda f: [np.zeros((1, 10), np.float32)], None, INPUTS, 2)
