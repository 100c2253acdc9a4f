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


def test_compiler_path_from_an_unset_variable_names_the_variable(monkeypatch):
    android = load_target("android-arm64").cross
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    assert cross.missing_tools(android) == [f"{android.cc} ({android.cc_package})"]  # no emulator listed
    with pytest.raises(cross.ToolchainError, match="ANDROID_NDK_HOME is not set") as e:
        cross.require_tools(android)
    assert "export ANDROID_NDK_HOME=" in e.value.hint and "Android NDK" in e.value.hint


def test_compiler_path_from_the_environment_resolves_or_says_where_it_looked(monkeypatch, tmp_path):
    android = load_target("android-arm64").cross
    monkeypatch.setenv("ANDROID_NDK_HOME", str(tmp_path))
    with pytest.raises(cross.ToolchainError, match=f"{tmp_path}/toolchains/.*-clang\\+\\+ does not exist"):
        cross.require_tools(android)
    clang = tmp_path / "toolchains/llvm/prebuilt/linux-x86_64/bin/aarch64-linux-android28-clang++"
    clang.parent.mkdir(parents=True)
    clang.write_text("#!/bin/sh\nexit 0\n")
    clang.chmod(0o755)
    assert cross.require_tool(android.cc, android.cc_package) == str(clang)
    assert cross.missing_tools(android) == []
