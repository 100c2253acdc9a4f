"""End to end: a small torch model built for x86 matches torch; bad stage orders fail early."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgecomp import api
from edgecomp.config import BuildConfig
from edgecomp.errors import ConfigError


def test_tiny_build_matches_torch(tiny_artifact, tiny_module, tiny_calibration):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)  # not a calibration input
    out = api.run(tiny_artifact, {"x": x})["output"]
    ref = tiny_module(torch.from_numpy(x)).detach().numpy()
    assert out.shape == ref.shape == (1, 10)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_report_names_every_stage_and_schedule(tiny_artifact):
    report = json.loads((tiny_artifact / "report.json").read_text())
    stages = {s["stage"]: s for s in report["stages"]}
    assert list(stages) == ["prune", "merge", "quantize", "export", "lower"]
    assert all(stages[s]["status"] == "skipped" for s in ("prune", "merge", "quantize"))
    assert stages["export"]["max_abs_err"] <= stages["export"]["tolerance"]
    lower = stages["lower"]
    assert lower["naive"] == [], "every PrimFunc must get a schedule"
    from edgecomp.tvm.cpu_schedule import rules

    assert set(lower["per_function"].values()) <= {"tuned", *rules()}


def test_compression_on_onnx_source_fails_before_work(tmp_path, tiny_artifact):
    cfg = BuildConfig().with_overrides(["prune.ratio=0.2"])
    with pytest.raises(ConfigError, match="needs a torch model"):
        api.build(tiny_artifact / "model.onnx", "x86", tmp_path / "p", cfg)
    assert not (tmp_path / "p").exists()


def test_onnx_file_source_builds(tmp_path, tiny_artifact):
    out = api.build(tiny_artifact / "model.onnx", "x86", tmp_path / "from_onnx")
    x = np.full((1, 3, 8, 8), 0.5, np.float32)
    a = api.run(out, {"x": x})
    b = api.run(tiny_artifact, {"x": x})
    np.testing.assert_allclose(next(iter(a.values())), b["output"], rtol=1e-5, atol=1e-6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "onnx" and len(manifest["source"]["sha256"]) == 64


@pytest.mark.parametrize("overrides,multiple", [
    (["prune.ratio=0.3", "quantize.scheme=w4a8"], 32),  # auto group: the smallest auto group divides
    (["prune.ratio=0.3", "quantize.scheme=w4a16", "quantize.group_size=128"], 128),
    (["prune.ratio=0.3", "prune.multiple=48", "quantize.scheme=w4a4"], 96),
    (["prune.ratio=0.3", "quantize.scheme=w8a8"], 8),  # int8 per channel: any width
    (["prune.ratio=0.3", "quantize.scheme=w4a8", "quantize.weight_bits=8"], 8),
    (["quantize.scheme=w4a8"], 8),  # no pruning
])
def test_pruned_widths_are_rounded_to_the_int4_group_that_follows(overrides, multiple):
    from edgecomp.pipeline import align_prune_to_quant

    cfg = align_prune_to_quant(BuildConfig().with_overrides(overrides))
    assert cfg.prune.multiple == multiple
