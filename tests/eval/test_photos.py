"""photos-imagenet on fake engines (agreement, top-5, KL, hand labels, limit, no reference); random-weights."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.errors import ConfigError, MissingDataError
from edgecomp.eval.photos import photos_imagenet, random_weights
from edgecomp.specs import TensorSpec
from edgecomp.zoo.data import photos

INPUTS = (TensorSpec("pixels", (1, 3, 32, 32), "float32"),)  # small size: the task reads S from the spec


@pytest.fixture(autouse=True)
def _need_photos():
    try:
        photos.load("eval")
    except MissingDataError as e:
        pytest.skip(f"{e} ({e.hint})")


def _fake(shift: int = 0):
    """Deterministic logits [1, 1000] from the image content: peak at class ``base + shift``, runner-up ``base``."""

    def run(feeds):
        x = feeds["pixels"]
        assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32
        base = int(abs(x.sum()) * 1000) % 1000
        z = np.zeros((1, 1000), np.float32)
        z[0, base] = 5.0
        z[0, (base + shift) % 1000] = 10.0
        return [z]

    return run


def test_identical_engines_agree_fully():
    r = photos_imagenet(_fake(), _fake(), INPUTS, None)
    assert (r.task, r.metric, r.value, r.n, r.reference_value) == ("photos-imagenet", "top1_agreement", 1.0, 26, 1.0)
    assert r.details["top5_agreement"] == 1.0 and r.details["mean_kl"] == pytest.approx(0.0, abs=1e-9)
    assert r.details["n_images"] == 26 and r.details["n_hand"] == 13


def test_disagreeing_engine_scores_zero_with_positive_kl():
    r = photos_imagenet(_fake(shift=1), _fake(), INPUTS, 6)
    assert r.n == 6 and r.value == 0.0 and r.details["top5_agreement"] == 1.0  # reference top-1 is the runner-up
    assert r.details["mean_kl"] > 1.0


def test_hand_label_accuracy_and_no_reference():
    labels = photos.hand_labels()
    names = iter([n for n, _ in photos.load("eval")])

    def oracle(feeds):  # images arrive in pool order
        z = np.zeros((1, 1000), np.float32)
        z[0, labels.get(next(names), (0,))[0]] = 1.0
        return [z]

    r = photos_imagenet(oracle, None, INPUTS, None)
    assert r.value == 1.0 and r.reference_value is None and "reference itself" in r.details["note"]
    assert r.details["hand_top1"] == 1.0 and r.details["n_hand"] == 13


def test_random_weights_refuses():
    with pytest.raises(ConfigError, match="seeded random weights"):
        random_weights(_fake(), None, INPUTS, None)
