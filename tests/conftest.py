"""Shared fixtures: a tiny torch model and its artifact, built once per session."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TVM_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _tiny_module():
    import torch

    class Tiny(torch.nn.Module):
        """conv -> flatten -> linear+GELU -> LayerNorm -> linear: a little of everything lower must schedule."""

        def __init__(self):
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc1 = torch.nn.Linear(8 * 8 * 8, 64)
            self.norm = torch.nn.LayerNorm(64)
            self.fc2 = torch.nn.Linear(64, 10)
            with torch.no_grad():
                for p in self.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.1)

        def forward(self, x):
            h = torch.relu(self.conv(x)).flatten(1)
            return self.fc2(self.norm(torch.nn.functional.gelu(self.fc1(h))))

    return Tiny().eval()


@pytest.fixture(scope="session")
def tiny_module():
    return _tiny_module()


@pytest.fixture(scope="session")
def tiny_spec():
    from edgecomp.specs import TensorSpec

    return (TensorSpec("x", (1, 3, 8, 8), "float32"),)


@pytest.fixture(scope="session")
def tiny_calibration():
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_module, tiny_spec, tiny_calibration):
    from edgecomp import api

    out = tmp_path_factory.mktemp("art") / "tiny"
    return api.build(tiny_module, "x86", out, inputs=tiny_spec, calibration=tiny_calibration)


@pytest.fixture
def or_skip():
    """``or_skip(fn)`` -> ``fn()``, or skip the test when the data it needs is not installed."""
    from edgecomp.errors import MissingDataError

    def call(fn):
        try:
            return fn()
        except MissingDataError as e:
            pytest.skip(str(e))

    return call
