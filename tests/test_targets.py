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
