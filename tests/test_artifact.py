"""Artifacts: identical bytes for identical builds, tamper detection, atomic replacement."""

from __future__ import annotations

import json

import pytest

from edgecomp import api
from edgecomp.artifact import Artifact, atomic_dir
from edgecomp.errors import ArtifactError, ConfigError


def test_rebuild_gives_identical_manifest(tmp_path, tiny_artifact, tiny_module, tiny_spec, tiny_calibration):
    again = api.build(tiny_module, "x86", tmp_path / "again", inputs=tiny_spec, calibration=tiny_calibration)
    assert (again / "manifest.json").read_bytes() == (tiny_artifact / "manifest.json").read_bytes()


def test_manifest_hashes_every_file_but_itself_and_timings(tiny_artifact):
    manifest = json.loads((tiny_artifact / "manifest.json").read_text())
    on_disk = {p.relative_to(tiny_artifact).as_posix() for p in tiny_artifact.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == on_disk - {"manifest.json", "timings.json"}
    assert {"model.onnx", "model.so", "params.bin", "report.json"} <= set(manifest["files"])
    assert {"tvm", "onnxruntime", "torch", "tvm_ffi"} <= set(manifest["toolchain"])


def test_tampered_file_is_refused(tmp_path, tiny_artifact):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_artifact, copy)
    with open(copy / "params.bin", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ArtifactError, match="params.bin"):
        Artifact.open(copy)


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_artifact_replaced_whole_and_foreign_dir_refused(tmp_path):
    out = tmp_path / "out"
    for version in ("1", "2"):
        with atomic_dir(out) as tmp:
            (tmp / "manifest.json").write_text(version)
    assert (out / "manifest.json").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an edgecomp artifact"):
        with atomic_dir(foreign):
            pass
    assert (foreign / "notes.txt").read_text() == "keep me"
