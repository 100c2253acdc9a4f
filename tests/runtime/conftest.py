"""Fixtures shared by the arm64 tests: the target (or a skip naming what is missing) and builds made once."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp import api
from edgecomp.artifact import Artifact
from edgecomp.errors import MissingDataError
from edgecomp.runtime import cross
from edgecomp.targets import load_target


@pytest.fixture(scope="session")
def arm64():
    """The arm64 target, or a skip naming what this machine lacks to build and emulate it."""
    target = load_target("arm64")
    missing = cross.missing_tools(target.cross)
    if missing:
        pytest.skip(f"arm64 needs {', '.join(missing)}")
    try:
        cross.runtime_dir(target.cross, target.arch)  # the aarch64 TVM runtime, from PyPI once, then cached
    except cross.ToolchainError as e:
        pytest.skip(str(e))
    return target


def _build_or_skip(source, target, out, **kw) -> Artifact:
    try:
        return Artifact.open(api.build(source, target, out, **kw))
    except MissingDataError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def build_or_skip():
    """``build_or_skip(source, target, out, **kw)``: ``api.build`` opened as an Artifact, or a skip when the
    model's weight package is not installed."""
    return _build_or_skip


@pytest.fixture(scope="session")
def vit_fmnist_builds(arm64, tmp_path_factory):
    """(x86 artifact, arm64 artifact) of vit-fmnist, built once for every arm64 test that needs them."""
    tmp = tmp_path_factory.mktemp("vit-fmnist")
    return _build_or_skip("vit-fmnist", "x86", tmp / "x86"), _build_or_skip("vit-fmnist", arm64, tmp / "arm64")


REL_TOL = 1e-4  # arm64 vs reference outputs: max |a - ref| <= REL_TOL * max(1, max |ref|)


def _assert_outputs_close(got, ref, names, what: str) -> None:
    for name, a, x in zip(names, got, ref, strict=True):
        assert a.shape == x.shape and a.dtype == x.dtype, name
        tol = REL_TOL * max(1.0, float(np.abs(x).max()))
        diff = float(np.abs(a.astype(np.float64) - x).max())
        assert diff <= tol, f"{name}: max |{what}| {diff:.3g} > {tol:.3g}"


@pytest.fixture(scope="session")
def assert_outputs_close():
    """``assert_outputs_close(got, ref, names, what)``: same shape and dtype per output, and
    max |got - ref| within ``REL_TOL`` relative to the reference's largest magnitude (``what`` names the pair
    in the failure message)."""
    return _assert_outputs_close
