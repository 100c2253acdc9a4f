"""Depth metrics and inverse-depth scale-and-shift alignment."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.errors import InputError
from edgecomp.eval import depth_metrics as dm


def _gt(seed=0):
    return np.random.default_rng(seed).uniform(1.0, 10.0, (16, 16))


def test_perfect_prediction():
    g = _gt()
    m = dm.image_metrics(g, g)
    assert m["abs_rel"] == 0 and m["rmse"] == 0 and m["delta1"] == 1 and m["silog"] == pytest.approx(0, abs=1e-6)


def test_known_values():
    g = _gt()
    m = dm.image_metrics(1.9 * g, g)  # ratio 1.9: above 1.25² = 1.5625, below 1.25³ = 1.953
    assert m["abs_rel"] == pytest.approx(0.9) and m["delta1"] == 0 and m["delta2"] == 0 and m["delta3"] == 1
    assert m["silog"] == pytest.approx(0, abs=1e-5)  # a global scale is invisible to SILog
    p = g.copy()
    p[:8] *= 1.2  # half the pixels 20 % too far
    m = dm.image_metrics(p, g)
    assert m["abs_rel"] == pytest.approx(0.1) and m["delta1"] == 1.0
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((p - g) ** 2)))


def test_mask_selects_pixels():
    g = _gt()
    p = g.copy()
    p[0] = 100.0
    valid = np.ones_like(g, bool)
    valid[0] = False
    assert dm.image_metrics(p, g, valid)["abs_rel"] == 0
    g2 = g.copy()
    g2[1] = np.nan  # non-finite GT is never valid
    assert dm.image_metrics(g2 * 1.0, g2)["delta1"] == 1.0


def test_alignment_recovers_an_affine_inverse_depth():
    g = _gt(1)
    pred = 1.0 / (0.5 / g + 0.03)  # inverse depth scaled and shifted
    aligned = dm.align_inverse_depth(pred, g)
    assert aligned == pytest.approx(g, rel=1e-9)
    assert dm.image_metrics(pred, g)["abs_rel"] > 0.1


def test_mean_metrics_averages_images():
    a = dm.image_metrics(_gt(), _gt())
    b = dm.image_metrics(2 * _gt(), _gt())
    assert dm.mean_metrics([a, b])["abs_rel"] == pytest.approx(0.5)


def test_bad_inputs():
    with pytest.raises(InputError):
        dm.image_metrics(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(InputError):
        dm.image_metrics(np.ones((4, 4)), np.zeros((4, 4)))
    with pytest.raises(InputError):
        dm.image_metrics(-np.ones((4, 4)), np.ones((4, 4)))
    with pytest.raises(InputError):
        dm.mean_metrics([])
