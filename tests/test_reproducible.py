"""Reproducible builds: the same inputs and recipe give byte-identical artifacts (every file, the compiled
library included; timings.json, the one unhashed file, aside), whatever the output path, and manifest.json
holds what a rebuild needs (source with its hash, resolved recipe, target, toolchain)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from edgecomp import api
from edgecomp.config import BuildConfig
from edgecomp.fuzz.targets import tiny_onnx_bytes

FAST = BuildConfig().with_overrides(["lower.tuning=\"none\"", "calib_samples=4"])


def _hashes(art: Path) -> dict[str, str]:
    return {p.relative_to(art).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(art.rglob("*")) if p.is_file() and p.name != "timings.json"}


def _same(a: Path, b: Path) -> None:
    ha, hb = _hashes(a), _hashes(b)
    assert set(ha) == set(hb)
    differ = sorted(k for k in ha if ha[k] != hb[k])
    assert not differ, f"files differ between two identical builds: {differ}"
    assert "model.so" in ha and "params.bin" in ha and "manifest.json" in ha


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "tiny.onnx"
    path.write_bytes(tiny_onnx_bytes())
    return path


@pytest.mark.parametrize("target", ["x86", "arm64"])
def test_onnx_builds_are_byte_identical(tmp_path, onnx_file, target):
    if target == "arm64":  # cross-linked model.so; the build's check runs it under qemu
        from edgecomp.runtime import cross
        from edgecomp.targets import load_target

        missing = cross.missing_tools(load_target("arm64").cross)
        if missing:
            pytest.skip(f"arm64 needs {', '.join(missing)}")
    a = api.build(onnx_file, target, tmp_path / "a" / "out", FAST)
    b = api.build(onnx_file, target, tmp_path / "deeper" / "path" / "other-name", FAST)  # paths differ
    _same(a, b)


def test_torch_module_builds_are_byte_identical(tmp_path, tiny_module, tiny_spec, tiny_calibration):
    a = api.build(tiny_module, "x86", tmp_path / "a", FAST, inputs=tiny_spec, calibration=tiny_calibration)
    b = api.build(tiny_module, "x86", tmp_path / "b", FAST, inputs=tiny_spec, calibration=tiny_calibration)
    _same(a, b)
    source = json.loads((a / "manifest.json").read_text())["source"]
    assert source["kind"] == "torch" and len(source["sha256"]) == 64  # the weights' identity


def test_manifest_is_enough_to_rebuild(tmp_path, onnx_file):
    first = api.build(onnx_file, "x86", tmp_path / "first", FAST)
    m = json.loads((first / "manifest.json").read_text())
    assert m["edgecomp"] and m["source"]["sha256"] == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert {"python", "numpy", "onnx", "onnxruntime", "tvm", "tvm_ffi", "llvm_major", "linker"} <= set(m["toolchain"])
    assert m["recipe"] == FAST.to_dict() and m["target"]["name"] == "x86"
    # rebuild from nothing but the manifest: source path, recipe, target name
    again = api.build(m["source"]["ref"], m["target"]["name"], tmp_path / "again", BuildConfig.from_dict(m["recipe"]))
    _same(first, again)
