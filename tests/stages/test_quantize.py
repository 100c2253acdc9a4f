"""The quantize stage through the whole compiler: integer ONNX, TVM matching onnxruntime, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from edgecomp import api, onnx_tools
from edgecomp.artifact import Artifact
from edgecomp.config import BuildConfig
from edgecomp.errors import MissingDataError


@pytest.fixture(scope="module")
def w4a8_artifact(tmp_path_factory, tiny_module, tiny_spec, tiny_calibration):
    cfg = BuildConfig().with_overrides(["quantize.scheme=w4a8", "quantize.method=quartdepth",
                                        "quantize.recon_seconds=2", "quantize.layers.conv=w8a8"])
    out = tmp_path_factory.mktemp("q") / "tiny-w4a8"
    return api.build(tiny_module, "x86", out, cfg, inputs=tiny_spec, calibration=tiny_calibration)


def test_w4a8_artifact_is_integer_and_tvm_matches_onnxruntime(w4a8_artifact, tiny_module):
    art = Artifact.open(w4a8_artifact)
    model = onnx.load(str(w4a8_artifact / "model.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"MatMulNBits", "DequantizeLinear", "Round"} <= ops
    assert not any(t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2 and t.dims[0] * t.dims[1] >= 64 * 64
                   for t in model.graph.initializer), "no float weight matrix may remain"
    rng = np.random.default_rng(3)
    sess = onnx_tools.session(model)
    for _ in range(3):
        x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
        tvm_out = api.run(w4a8_artifact, {"x": x})["output"]
        ort_out = sess.run(None, {"x": x})[0]
        assert onnx_tools.rel_l2_diff([tvm_out], [ort_out]) < 1e-3
        import torch

        fp = tiny_module(torch.from_numpy(x)).detach().numpy()
        assert onnx_tools.rel_l2_diff([tvm_out], [fp]) < 0.2, "quantized output must stay near fp32"
    stages = {s["stage"]: s for s in art.report()["stages"]}
    q = stages["quantize"]
    assert q["status"] == "done" and q["layers_quantized"] == 3 and q["calibration"]["samples"] == 4
    assert q["noise_measured_on"] == "calibration feeds"  # the caller gave the feeds: none are held out
    per = {r["layer"]: r for r in q["per_layer"]}
    assert per["conv"]["w_bits"] == 8 and per["fc1"]["w_bits"] == 4 and per["fc1"]["a_bits"] == 8
    assert stages["export"]["rel_l2_err"] <= stages["export"]["tolerance"]
    assert stages["lower"]["naive"] == []
    timings = json.loads((w4a8_artifact / "timings.json").read_text())
    assert "fc1" in timings["quantize_layers"]


def test_noise_reference_comes_from_held_out_feeds(tiny_module, tiny_spec, tiny_calibration):
    """The export / lowering tolerance is the quantized model's distance from fp32 on feeds the quantizer
    did not fit (here: the calibration inputs scaled 10x, feeds it never saw)."""
    import torch

    from edgecomp.config import QuantizeConfig
    from edgecomp.model import Model
    from edgecomp.stages import quantize

    far = tuple({"x": f["x"] * 10} for f in tiny_calibration[:2])
    model = Model(name="tiny", source={"kind": "torch"}, form="torch", payload=tiny_module, inputs=tiny_spec,
                  outputs=("output",), calibration=tuple(tiny_calibration), held_out=lambda n: far[:n])
    out = quantize.run(model, QuantizeConfig(scheme="w4a4", method="rtn"), None)
    q = out.reports[-1].summary
    assert q["noise_measured_on"] == "2 held-out feeds"
    expected = quantize._quantization_noise(tiny_module, out.payload,
                                            [(torch.from_numpy(f["x"]),) for f in far])
    assert q["output_rel_l2_vs_fp32"] == float(f"{expected:.3g}")
    assert out.export_tolerance == quantize._tolerance(expected)


def test_inspect_prints_worst_layers(w4a8_artifact):
    r = subprocess.run([sys.executable, "-m", "edgecomp", "inspect", str(w4a8_artifact)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "worst 3 of 3 quantized layers" in r.stdout and "fc1" in r.stdout


def test_empty_calibration_is_missing_data(tmp_path, tiny_module, tiny_spec):
    cfg = BuildConfig().with_overrides(["quantize.scheme=w4a16"])
    with pytest.raises(MissingDataError, match="calibration set is empty"):
        api.build(tiny_module, "x86", tmp_path / "o", cfg, inputs=tiny_spec, calibration=[])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (["--quant", "w4a8", "--group-size", "128"], "group size 128 does not divide layer 'blocks.0.attn.q'"),
    (["--quant", "w4a8", "--set", "quantize.weight_bits=5"], "unsupported weight bit-width 5"),
    (["--quant", "w4a8", "--quant-method", "awq"], "unknown quantization method 'awq'"),
])
def test_bad_quantization_requests_exit_2(tmp_path, args, message, or_skip):
    from edgecomp import zoo

    or_skip(lambda: zoo.get("vit-fmnist").load())
    out = tmp_path / "B"
    r = subprocess.run([sys.executable, "-m", "edgecomp", "build", "vit-fmnist", *args, "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[0].startswith(f"error: {message}"), r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_grouped_pointwise_and_8_bit_depthwise_convs_lower_like_onnxruntime(tmp_path):
    import torch
    from torch import nn

    from edgecomp.specs import TensorSpec

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 96, 3, padding=1), nn.ReLU6(), nn.Conv2d(96, 96, 3, padding=1, groups=96),
                        nn.ReLU6(), nn.Conv2d(96, 32, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    spec = (TensorSpec("x", (1, 3, 8, 8), "float32"),)
    rng = np.random.default_rng(5)
    calib = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    cfg = BuildConfig().with_overrides(["quantize.scheme=w4a8", "quantize.method=rtn"])
    out = api.build(net, "x86", tmp_path / "convs", cfg, inputs=spec, calibration=calib)
    per = {r["layer"]: r for r in Artifact.open(out).report()["stages"][2]["per_layer"]}
    assert (per["0"]["w_bits"], per["0"]["group"]) == (4, 0)  # K = 27
    assert (per["2"]["w_bits"], per["2"]["group"]) == (8, 0)  # depthwise
    assert (per["4"]["w_bits"], per["4"]["group"]) == (4, 32)  # pointwise, K = 96: three groups
    model = onnx.load(str(out / "model.onnx"))
    dq_rows = {n.output[0] for n in model.graph.node
               if n.op_type == "DequantizeLinear" and n.output[0].endswith("_rows")}
    assert any(n.op_type == "Reshape" and n.input[0] in dq_rows for n in model.graph.node)
    sess = onnx_tools.session(model)
    for _ in range(3):
        x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
        got, want = api.run(out, {"x": x})["output"], sess.run(None, {"x": x})[0]
        assert onnx_tools.rel_l2_diff([got], [want]) < 1e-3
