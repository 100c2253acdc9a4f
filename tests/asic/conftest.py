"""Shared fixtures for the accelerator tests: the target's configuration and random integer layers."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def asic_cfg():
    from edgecomp.asic.config import AsicConfig
    from edgecomp.targets import load_target

    return AsicConfig.from_table(load_target("asic-sim").asic)


@pytest.fixture(scope="session")
def random_layer():
    return _random_layer


def _random_layer(rng, wbits: int, qmax: int, G: int, K: int, N: int, bias: bool = True, asym: bool = True):
    """A GemmLayer with random integer weights in its format (int4 asymmetric / symmetric, int8)."""
    from edgecomp.asic.partition import GemmLayer

    codes = rng.integers(0, 16, (N, K)) if wbits == 4 else rng.integers(-127, 128, (N, K))
    zeros = rng.integers(0, 16, (N, K // G)).astype(np.int32) if wbits == 4 and asym else None
    return GemmLayer("layer", "x", "y", codes.astype(np.int32),
                     (rng.random((N, K // G), dtype=np.float32) * 0.01 + 1e-4).astype(np.float32), zeros,
                     rng.standard_normal(N).astype(np.float32) if bias else None, G, wbits, qmax, False)
