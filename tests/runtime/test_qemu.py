"""arm64 artifacts: cross-built, run under qemu-aarch64 through the C++ host, compared with the x86 build.

Tolerance: both builds run the same fp32 schedules and the same exp/erf polynomials; they differ only in the
order of floating-point sums (4-lane NEON vs 16-lane AVX-512 partial sums, other FMA contractions). That moves
an output by a few fp32 ulps per reduction (measured: ~1e-6 on vit-fmnist logits of scale ~5), so
``max |arm64 - x86| <= 1e-4 * max(1, max |x86|)`` leaves two orders of magnitude of margin and still fails on
any real miscompilation (a wrong index, a dropped bias or a broken kernel moves outputs by 1e-2 or more).
qemu timings mean nothing here and are not measured.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgecomp import api
from edgecomp.artifact import Artifact
from edgecomp.errors import ConfigError
from edgecomp.runtime import cross


def _synthetic_onnx(path):
    """Two inputs (float32, int64 ids) and two outputs: Gather + Add -> MatMul + bias -> (Relu, Softmax)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)
             for name, shape in (("emb", (32, 16)), ("w", (16, 24)), ("b", (24,)))]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["g"]), helper.make_node("Add", ["x", "g"], ["h"]),
             helper.make_node("MatMul", ["h", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["hidden"]), helper.make_node("Softmax", ["a"], ["probs"], axis=-1)]
    graph = helper.make_graph(
        nodes, "synthetic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 8])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, [1, 8, 24]),
         helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 8, 24])],
        inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _both(source, arm64, tmp_path, **kw):
    x86_art = api.build(source, "x86", tmp_path / "x86", **kw)
    arm_art = api.build(source, arm64, tmp_path / "arm64", **kw)
    return Artifact.open(x86_art), Artifact.open(arm_art)


@pytest.fixture(scope="module")
def synthetic(arm64, tmp_path_factory):
    """(x86 artifact, arm64 artifact) of the synthetic ONNX model."""
    tmp = tmp_path_factory.mktemp("synthetic")
    return _both(_synthetic_onnx(tmp / "synthetic.onnx"), arm64, tmp)


def test_synthetic_onnx_matches_x86(synthetic, assert_outputs_close):
    x86, arm = synthetic
    manifest = arm.manifest
    assert manifest["target"]["runner"] == "qemu" and manifest["target"]["tvm"]["mtriple"] == "aarch64-linux-gnu"
    assert arm.report()["stages"][-1]["checked_with"] == "qemu"
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((1, 8, 16)).astype(np.float32), "ids": rng.integers(0, 32, (1, 8))}
             for _ in range(3)]
    arm_outs = arm.load_runner().run_many(feeds)  # one qemu process, three runs
    x86_runner = x86.load_runner()
    for f, outs in zip(feeds, arm_outs, strict=True):
        assert_outputs_close(outs, x86_runner(f), arm.outputs, "arm64 - x86")


def test_vit_fmnist_matches_x86(vit_fmnist_builds, assert_outputs_close):
    x86, arm = vit_fmnist_builds
    assert arm.report()["stages"][-1]["naive"] == []  # every PrimFunc got a schedule for NEON too
    feeds = [arm.example_inputs()]
    assert_outputs_close(arm.load_runner().run_many(feeds)[0], x86.load_runner()(feeds[0]), arm.outputs, "arm64 - x86")
    # the CLI's run goes through qemu as well; bench refuses to time the emulator
    run = subprocess.run([sys.executable, "-m", "edgecomp", "run", str(arm.path)], capture_output=True, text=True)
    assert run.returncode == 0 and "logits: shape [1, 10] float32" in run.stdout, run.stderr
    bench = subprocess.run([sys.executable, "-m", "edgecomp", "bench", str(arm.path)], capture_output=True, text=True)
    assert bench.returncode == 2 and "timings would measure the emulator" in bench.stderr


def test_fused_token_merges_match_x86(arm64, tmp_path, assert_outputs_close):
    """The token_merge kernel (written with 16-lane vectors) cross-compiles for NEON and agrees with x86."""
    from edgecomp.config import BuildConfig
    from edgecomp.specs import TensorSpec
    from edgecomp.zoo.vit import ViT, ViTConfig

    cfg = ViTConfig(image_size=16, patch_size=2, in_chans=1, num_classes=5, dim=32, depth=3, heads=2, mlp_dim=64)
    vit = ViT(cfg).init_weights_(seed=0).eval()
    rng = np.random.default_rng(0)
    calibration = [{"pixels": rng.standard_normal((1, 1, 16, 16)).astype(np.float32)} for _ in range(2)]
    x86, arm = _both(vit, arm64, tmp_path, cfg=BuildConfig().with_overrides(["merge.schedule='16,12,8'"]),
                     inputs=(TensorSpec("pixels", (1, 1, 16, 16)),), calibration=calibration)
    lower = arm.report()["stages"][-1]
    assert lower["merge_kernels"] == {"fused": 3, "unfused": {}} and lower["checked_with"] == "qemu"
    feeds = calibration[:1]
    assert_outputs_close(arm.load_runner().run_many(feeds)[0], x86.load_runner()(feeds[0]), arm.outputs,
                         "arm64 - x86")


def test_runner_refuses_to_time(synthetic):
    arm = synthetic[1]
    runner = arm.load_runner()
    with pytest.raises(ConfigError, match="emulator"):
        runner.prepare(arm.example_inputs())


def test_host_failure_is_one_line_error(arm64, tiny_artifact):
    """An x86 model.so given to the aarch64 host: the host's own message comes back as ToolchainError."""
    from edgecomp.runtime.qemu import QemuRunner

    art = Artifact.open(tiny_artifact)
    runner = QemuRunner(art.path / "model.so", art.path / "params.bin", art.inputs, arm64.cross, arm64.arch)
    with pytest.raises(cross.ToolchainError, match="failed under qemu-aarch64: run_model: ") as e:
        runner(art.example_inputs())
    assert "\n" not in e.value.message


def test_runner_follows_the_manifest(tiny_artifact):
    """Artifacts without a runner field (older builds) load in-process; an unknown runner is refused."""
    from edgecomp.errors import ArtifactError
    from edgecomp.runtime.vm import VMRunner

    art = Artifact.open(tiny_artifact)
    old = {k: v for k, v in art.manifest["target"].items() if k != "runner"}
    assert isinstance(Artifact(art.path, {**art.manifest, "target": old}).load_runner(), VMRunner)
    with pytest.raises(ArtifactError, match="runner 'rpc'"):
        Artifact(art.path, {**art.manifest, "target": {**old, "runner": "rpc"}}).load_runner()
