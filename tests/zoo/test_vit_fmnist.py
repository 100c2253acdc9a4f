"""vit-fmnist: committed weights, real test data, and the x86 build agreeing with torch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecomp import api, zoo
from edgecomp.zoo import vit_fmnist


def test_committed_weights_reach_the_recorded_accuracy():
    meta = json.loads(vit_fmnist.META.read_text())
    res = api.evaluate("vit-fmnist", limit=1000)
    assert res["n"] == 1000
    # the first 1000 test images vs the full 10k accuracy recorded by the training script
    assert abs(res["value"] - meta["test_top1"]) < 0.03


def test_calibration_comes_from_train_split():
    feeds = vit_fmnist.calibration(8, seed=0)
    assert len(feeds) == 8 and feeds[0]["pixels"].shape == (1, 1, 28, 28)
    from edgecomp.zoo.data import fashion_mnist

    train, _ = fashion_mnist.load("train")
    x = fashion_mnist.normalize(train)
    assert any(np.array_equal(feeds[0]["pixels"][0], x[i]) for i in range(len(x)))


@pytest.mark.zoo
def test_x86_build_matches_torch_top1(tmp_path):
    art = api.build("vit-fmnist", "x86", tmp_path / "vit")
    res = api.evaluate(art, limit=300)
    assert res["reference"]["value"] == pytest.approx(res["value"], abs=1 / 300)
    report = json.loads((art / "report.json").read_text())
    assert report["stages"][-1]["naive"] == []
    assert zoo.get("vit-fmnist").task == res["task"] == "fmnist-top1"
