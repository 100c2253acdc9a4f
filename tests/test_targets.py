from __future__ import annotations

import re

import pytest

from edgecomp.errors import ConfigError, UnknownTargetError
from edgecomp.targets import available, host_cpu, load_target


def test_x86_resolves_host_cpu():
    t = load_target("x86")
    assert load_target("x86_64") == t
    spec = t.resolved_tvm()
    assert spec["kind"] == "llvm" and spec["mcpu"] == host_cpu() != "host"
    assert str(t.tvm_target(2).kind.name) == "llvm"


def test_every_target_file_parses():
    names = [t.name for t in available()]
    assert "x86" in names and len(names) == len(set(names))


def test_unknown_target_lists_known_ones():
    with pytest.raises(UnknownTargetError) as e:
        load_target("jetsonn")
    assert "x86" in e.value.hint


def test_arm64_is_a_qemu_cross_target():
    t = load_target("arm64")
    assert load_target("aarch64") == t
    assert (t.arch, t.runner, t.tuning_database) == ("aarch64", "qemu", "")
    assert t.cross.cc == "aarch64-linux-gnu-g++" and t.cross.emulator == "qemu-aarch64"
    assert t.to_dict()["cross"]["sysroot"] == t.cross.sysroot and t.to_dict()["runner"] == "qemu"
    tgt = t.tvm_target(2)
    assert bool(tgt.attrs["feature.is_aarch64"]) and bool(tgt.attrs["feature.has_dotprod"])

    from tvm.target.codegen import llvm_get_vector_width

    with tgt:
        assert llvm_get_vector_width(tgt) == 128  # NEON: cpu_schedule tiles with 4 float32 lanes


_TOML = 'name = "t"\ndescription = "d"\narch = "aarch64"\nschedule = "cpu"\nrunner = "{runner}"\n[tvm]\nkind = "llvm"\n'


@pytest.mark.parametrize("runner, tail, message", [
    ("qemu", "", "needs a [cross] table"),
    ("rpc", "", "runner 'rpc' is not one of"),
    ("qemu", '[cross]\ncc = "g++"\n', "is invalid"),  # a [cross] table without its other fields
])
def test_invalid_runner_or_cross_table(tmp_path, monkeypatch, runner, tail, message):
    from edgecomp import targets

    (tmp_path / "t.toml").write_text(_TOML.format(runner=runner) + tail)
    monkeypatch.setattr(targets, "_targets_dir", lambda: tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_target("t")


def test_jetson_orin_is_cuda_sm87_with_an_aarch64_host():
    t = load_target("jetson-orin")
    assert all(load_target(a) == t for a in ("nvidia/jetson-orin-nano", "nvidia/jetson-agx-orin", "orin"))
    assert t.runner == "device" and t.supports("cuda") and t.cross.cc == "aarch64-linux-gnu-g++"
    assert t.cross.emulator == ""  # qemu cannot run CUDA: nothing emulates this target
    tgt = t.tvm_target(2)  # threads: a CPU attribute, not set on the CUDA target
    assert (str(tgt.kind.name), str(tgt.arch)) == ("cuda", "sm_87") and "num-cores" not in tgt.attrs
    assert str(tgt.host.attrs["mtriple"]) == "aarch64-linux-gnu" and bool(tgt.host.attrs["feature.has_dotprod"])
    import tvm

    for tag in ("nvidia/jetson-orin-nano", "nvidia/jetson-agx-orin-64gb"):  # TVM's own tags agree on the GPU
        assert str(tvm.target.Target(tag).arch) == "sm_87"


def test_android_arm64_is_arm64_code_with_the_ndk_compiler():
    a, arm = load_target("android-arm64"), load_target("arm64")
    assert a.runner == "device" and a.schedule == arm.schedule and a.capabilities == arm.capabilities
    assert a.tvm["mattr"] == arm.tvm["mattr"] and a.tvm["mtriple"] == "aarch64-linux-android"
    assert a.cross.cc.startswith("$ANDROID_NDK_HOME/") and a.cross.emulator == ""


def test_android_build_without_the_ndk_fails_at_once(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ANDROID_NDK_HOME"}
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "edgecomp", "build", "vit-fmnist", "--target", "android-arm64",
                          "-o", str(out)], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("error: ANDROID_NDK_HOME is not set") and lines[1].startswith("hint: export")
    assert len(lines) == 2 and list(tmp_path.iterdir()) == []  # no output directory, not even a temporary one
