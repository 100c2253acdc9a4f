"""vit-s16: DeiT-S shape, deterministic seeded random weights, honest metadata, a task that refuses."""

from __future__ import annotations

import pytest
import torch

import edgecomp.eval.photos  # noqa: F401  (registers "random-weights")
import edgecomp.zoo.vit_s16  # noqa: F401  (registers the entry)
from edgecomp.errors import ConfigError
from edgecomp.eval import TASKS
from edgecomp.zoo import ZOO


def test_entry_says_weights_are_random():
    e = ZOO.get("vit-s16")
    assert e.family == "vit" and e.task == "random-weights" and e.packages == ()
    assert "random" in e.weights and "random" in e.description
    assert [(s.name, s.shape, s.dtype) for s in e.inputs] == [("pixels", (1, 3, 224, 224), "float32")]


def test_load_is_deterministic_deit_s():
    e = ZOO.get("vit-s16")
    a, b = e.load(), e.load()
    assert 21e6 < sum(p.numel() for p in a.parameters()) < 23e6  # DeiT-S: 22.0 M
    for (_, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q)
    y = a(torch.zeros(1, 3, 224, 224))
    assert y.shape == (1, 1000) and not y.requires_grad


def test_random_weights_task_refuses():
    e = ZOO.get("vit-s16")
    with pytest.raises(ConfigError, match="no quality metric") as err:
        TASKS.get(e.task)(lambda f: [], None, e.inputs, None)
    assert "edgecomp bench" in err.value.hint
