"""Fixtures shared by the arm64 tests: the target (or a skip naming what is missing) and builds made once."""

from __future__ import annotations

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
