"""The cross toolchain's failure modes, without building anything: missing tools name their package."""

from __future__ import annotations

import dataclasses

import pytest

from edgecomp.runtime import cross
from edgecomp.targets import load_target


def test_missing_tool_names_its_debian_package():
    arm = load_target("arm64").cross
    broken = dataclasses.replace(arm, cc="edgecomp-no-such-g++", emulator="edgecomp-no-such-qemu")
    assert cross.missing_tools(broken) == ["edgecomp-no-such-g++ (g++-aarch64-linux-gnu)",
                                           "edgecomp-no-such-qemu (qemu-user)"]
    with pytest.raises(cross.ToolchainError, match="edgecomp-no-such-g\\+\\+ is not installed") as e:
        cross.require_tools(broken)
    assert "apt-get install g++-aarch64-linux-gnu" in e.value.hint and e.value.exit_code == 2
    with pytest.raises(cross.ToolchainError, match="edgecomp-no-such-g"):
        cross.host_program(broken, "aarch64")


def test_local_target_links_with_the_host_compiler():
    assert cross.fcompile(load_target("x86")) is None


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGECOMP_CACHE", str(tmp_path))
    assert cross.cache_root() == tmp_path
    monkeypatch.delenv("EDGECOMP_CACHE")
    assert cross.cache_root().parts[-2:] == (".cache", "edgecomp")


def test_cached_runtime_is_not_fetched_again(monkeypatch, tmp_path):
    """With both libraries in the cache, runtime_dir runs no pip (works offline)."""
    import importlib.metadata

    monkeypatch.setenv("EDGECOMP_CACHE", str(tmp_path))
    d = (tmp_path / "aarch64" / f"tvm-{importlib.metadata.version('apache-tvm')}"
         f"-ffi-{importlib.metadata.version('apache-tvm-ffi')}")
    d.mkdir(parents=True)
    for lib in ("libtvm_runtime.so", "libtvm_ffi.so"):
        (d / lib).write_bytes(b"")
    monkeypatch.setattr(cross.subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))
    assert cross.runtime_dir(load_target("arm64").cross, "aarch64") == d
