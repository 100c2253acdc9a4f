"""The photo pools: fixed sizes, disjoint, RGB uint8, hand labels valid, preprocessing and calibration shapes."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.errors import MissingDataError
from edgecomp.zoo.data import photos


@pytest.fixture(scope="module")
def pools():
    try:
        return photos.load("eval"), photos.load("calib")
    except MissingDataError as e:
        pytest.skip(f"{e} ({e.hint})")


def test_pools_are_fixed_disjoint_rgb(pools):
    ev, cal = pools
    assert len(ev) == 26 and len(cal) == 16
    assert not {n for n, _ in ev} & {n for n, _ in cal}
    for _, img in ev + cal:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 224
    assert not any(np.array_equal(a, b) for _, a in ev for _, b in cal if a.shape == b.shape)


def test_hand_labels_are_eval_images_with_valid_classes(pools):
    ev, _ = pools
    labels, names = photos.hand_labels(), photos.class_names()
    assert len(names) == 1000 and names[805] == "soccer ball" and names[948] == "Granny Smith"
    assert 10 <= len(labels) <= 15
    assert set(labels) <= {n for n, _ in ev}
    assert [n for n, _ in ev[: len(labels)]] == list(labels)  # labelled photos come first
    assert all(v and all(0 <= c < 1000 for c in v) for v in labels.values())


def test_preprocess_shape_and_range(pools):
    img = pools[0][0][1]
    for size in (224, 160):
        x = photos.preprocess(img, size=size)
        assert x.shape == (1, 3, size, size) and x.dtype == np.float32
        assert -1.0 <= x.min() and x.max() <= 1.001


def test_calibration_is_deterministic(pools):
    a, b, c = photos.calibration(3, seed=1), photos.calibration(3, seed=1), photos.calibration(3, seed=2)
    assert len(a) == 3 and all(x.shape == (1, 3, 224, 224) and x.dtype == np.float32 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_missing_data_root_raises_with_make_data_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOMP_DATA", str(tmp_path))
    for fn in (lambda: photos.load("eval"), photos.class_names):
        with pytest.raises(MissingDataError) as err:
            fn()
        assert "make data" in err.value.hint
