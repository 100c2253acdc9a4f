"""Middlebury scenes: calibrated motorcycle depth, Aloe relative depth, square crops and model inputs."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.errors import ConfigError, MissingDataError
from edgecomp.zoo.data import middlebury


def _load(name):
    try:
        return middlebury.load(name)
    except MissingDataError as e:
        pytest.skip(f"{e} ({e.hint})")


def test_motorcycle_depth_follows_the_calibration():
    s = _load("motorcycle")
    assert s.image.shape == (500, 741, 3) and s.depth.shape == (500, 741)
    assert 0.90 < s.valid.mean() < 0.95  # ~92.7 % finite GT disparity
    d = s.depth[s.valid]
    # disparities 7.2 .. 59.9 px -> f B / (d + doffs) between ~2.1 m and ~5.0 m
    assert 2.0 < d.min() < 2.2 and 4.9 < d.max() < 5.1
    assert s.units == "m"


def test_aloe_relative_depth():
    s = _load("aloe")
    assert s.image.shape == (1110, 1282, 3)
    assert 0.95 < s.valid.mean() < 0.975  # 0 = unknown on ~3.5 %
    assert np.median(s.depth[s.valid]) == pytest.approx(1.0)
    assert (s.depth[s.valid] > 0).all()


def test_square_crop_and_model_input():
    s = middlebury.crop_square(_load("motorcycle"))
    assert s.image.shape == (500, 500, 3) and s.valid.shape == (500, 500)
    x = middlebury.model_input(s, 64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32 and -1.01 <= x.min() and x.max() <= 1.01
    with pytest.raises(ConfigError):
        middlebury.model_input(_load("motorcycle"), 64)


def test_unknown_scene():
    with pytest.raises(ConfigError):
        middlebury.load("teddy")
