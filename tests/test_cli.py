"""The CLI contract: one-line errors with exit code 2 and nothing left behind; working commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def edgecomp(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgecomp", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.parametrize("args, message", [
    (["build", "nosuchmodel", "--target", "x86"], "unknown zoo model 'nosuchmodel'"),
    (["build", "vit-fmnist", "--target", "nosuch"], "unknown target 'nosuch'"),
    (["build", "vit-fmnist", "--prune", "1.5"], "prune.ratio must be in [0, 0.95)"),
    (["build", "vit-fmnist", "--set", "export.opset=99"], "export.opset must be in"),
])
def test_bad_build_exits_2_with_one_line(tmp_path, args, message):
    out = tmp_path / "B"
    r = edgecomp(*args, "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == f"error: {message}" or r.stderr.splitlines()[0].startswith(f"error: {message}")
    assert r.stderr.splitlines()[1].startswith("hint: ")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_malformed_and_unsupported_onnx(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    r = edgecomp("build", str(bad), "-o", str(tmp_path / "o1"))
    assert r.returncode == 2 and "not a valid ONNX file" in r.stderr and "Traceback" not in r.stderr

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Celu", ["x"], ["y"], name="my_celu")  # no TVM converter for Celu
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "celu.onnx")
    r = edgecomp("build", str(tmp_path / "celu.onnx"), "-o", str(tmp_path / "o2"))
    assert r.returncode == 2, r.stderr
    assert "ONNX op Celu (node 'my_celu') has no TVM lowering" in r.stderr
    assert not (tmp_path / "o2").exists()


def test_debug_shows_traceback():
    r = edgecomp("--debug", "build", "nosuchmodel", "-o", "/nonexistent/x")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_run_inspect_and_bench(tmp_path, tiny_artifact):
    import numpy as np

    np.save(tmp_path / "x.npy", np.ones((1, 3, 8, 8), np.float32))
    r = edgecomp("run", str(tiny_artifact), "-i", f"x={tmp_path / 'x.npy'}", "-o", str(tmp_path / "outs"))
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "outs" / "output.npy").shape == (1, 10)

    r = edgecomp("run", str(tiny_artifact), "-i", f"x={tmp_path / 'x.npy'}", "-i", "y=nope.npy")
    assert r.returncode == 2 and "error:" in r.stderr

    r = edgecomp("inspect", str(tiny_artifact))
    assert r.returncode == 0 and "model.so" in r.stdout

    r = edgecomp("bench", str(tiny_artifact), "--compare", "onnxruntime", "--rounds", "2", "--per-round", "2",
                 "--warmup", "1", "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "b.json").read_text())
    assert set(res["results"]) == {"edgecomp", "onnxruntime"}
    for engine in res["results"].values():
        assert engine["n"] == 4 and 0 < engine["p50_ms"] <= engine["p95_ms"]
    assert res["provenance"]["process_per_engine"] and res["batch"] == 1

    # the same artifact as its own baseline: timed in the same rounds, its ratio is a speed-up near 1
    r = edgecomp("bench", str(tiny_artifact), "--compare", "none", "--baseline", str(tiny_artifact), "--rounds", "3",
                 "--per-round", "3", "--warmup", "1", "--json", str(tmp_path / "base.json"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "base.json").read_text())
    assert set(res["results"]) == {"edgecomp", "edgecomp@baseline"} and res["results"]["edgecomp@baseline"]["n"] == 9
    ratio = res["ratios"]["edgecomp@baseline/edgecomp"]
    assert ratio["ci"][0] <= ratio["p50_ratio"] <= ratio["ci"][1]
    assert res["provenance"]["baseline"]["model_so_sha256"] == res["provenance"]["model_so_sha256"]
    r = edgecomp("bench", str(tiny_artifact), "--baseline", str(tmp_path / "missing"))
    assert r.returncode == 2 and "error:" in r.stderr


def test_targets_and_zoo_listings():
    r = edgecomp("targets")
    assert r.returncode == 0 and "x86" in r.stdout
    r = edgecomp("zoo")
    assert r.returncode == 0 and "vit-fmnist" in r.stdout and "random" in r.stdout
