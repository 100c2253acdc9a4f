"""edgecomp.tvm.merge_fusion: every ToMe scope of an exported merging ViT becomes one TokenMerge kernel, and the
TVM build still agrees with onnxruntime and torch on logits and merged tokens; scopes it cannot take stay as
plain ops with a reason."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("tvm")

from edgecomp import onnx_tools  # noqa: E402
from edgecomp.merge.vit import MergingViT, merged_blocks  # noqa: E402
from edgecomp.runtime.vm import VMRunner  # noqa: E402
from edgecomp.specs import TensorSpec  # noqa: E402
from edgecomp.targets import load_target  # noqa: E402
from edgecomp.tvm import frontend, merge_fusion  # noqa: E402
from edgecomp.tvm.compile import compile_relax  # noqa: E402
from edgecomp.zoo.vit import ViT, ViTConfig  # noqa: E402

X86 = load_target("x86")
SPECS = (TensorSpec("pixels", (1, 1, 16, 16)),)


class LogitsAndTokens(torch.nn.Module):
    """The merging ViT's logits and its last merged tokens (no source map: that path is not fused)."""

    def __init__(self, merging: MergingViT):
        super().__init__()
        self.merging = merging

    def forward(self, pixels):
        m = self.merging
        *_, (_, x, _, _) = merged_blocks(m, m.vit.blocks, m.vit.embed(pixels), False)
        return m.vit.classify(x), x


def _exported(method: str, schedule=(16, 12, 8)):
    cfg = ViTConfig(image_size=16, patch_size=2, in_chans=1, num_classes=5, dim=32, depth=3, heads=2, mlp_dim=64)
    vit = ViT(cfg).init_weights_(seed=0).eval()
    with torch.no_grad():  # sharper attention than the 0.02 init, so matching decisions are not near-ties
        for blk in vit.blocks:
            blk.attn.k.weight.mul_(20)
            blk.attn.q.weight.mul_(20)
    model = LogitsAndTokens(MergingViT(vit, schedule, method)).eval()
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = [t.numpy() for t in model(x)]
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, input_names=["pixels"], output_names=["logits", "tokens"],
                      dynamo=False, opset_version=17)
    return onnx_tools.fold(onnx.load_from_string(buf.getvalue())), {"pixels": x.numpy()}, want


def test_tome_scopes_fuse_and_agree_with_onnxruntime_and_torch():
    graph, feeds, want = _exported("tome")
    fused, names, unfused = merge_fusion.fuse(graph, X86.tvm_target(), SPECS)
    assert names == ["merges_tome.0", "merges_tome.1", "merges_tome.2"] and unfused == {}
    assert [n.op_type for n in fused.graph.node].count(merge_fusion.TOKEN_MERGE) == 3
    assert not {"TopK", "ScatterElements", "CumSum"} & {n.op_type for n in fused.graph.node}
    got_ort = onnx_tools.session(graph).run(None, feeds)
    mod, params, report = frontend.to_relax(graph, SPECS, X86.tvm_target())
    assert len(report.merges) == 3
    compiled = compile_relax(mod, params, X86, use_database=False, threads=2)
    assert sum(rule == "kernel:token_merge" for rule in compiled.schedules.values()) == 3
    got_tvm = VMRunner(compiled.executable, compiled.params, SPECS)(feeds)
    assert want[1].shape == (1, 29, 32)  # 65 -> 49 -> 37 -> 29 tokens
    for name, t, o, v in zip(("logits", "tokens"), want, got_ort, got_tvm, strict=True):
        tol = 2e-5 * max(1.0, np.abs(t).max())
        np.testing.assert_allclose(o, t, rtol=0, atol=tol, err_msg=f"ort {name}")
        np.testing.assert_allclose(v, t, rtol=0, atol=tol, err_msg=f"tvm {name}")


def test_other_methods_and_targets_keep_their_ops_and_say_why():
    graph, _, _ = _exported("crossget", (8, 0, 4))
    same, names, unfused = merge_fusion.fuse(graph, X86.tvm_target(), SPECS)
    assert same is graph and names == []
    assert unfused == {f"merges_crossget.{i}": "no fused kernel for method 'crossget'" for i in (0, 2)}
    tome, _, _ = _exported("tome", (8, 0, 4))
    _, names, unfused = merge_fusion.fuse(tome, load_target("jetson-orin").tvm_target(), SPECS)
    assert names == [] and all("CPU kernel" in why for why in unfused.values()) and len(unfused) == 2


def test_topological_order_moves_a_fused_node_after_its_inputs():
    from onnx import helper

    late = helper.make_node("Relu", ["x"], ["k"], name="late")
    fused = helper.make_node("Neg", ["k"], ["y"], name="fused")  # placed first, reads k produced after it
    tail = helper.make_node("Abs", ["y"], ["z"], name="tail")
    order = merge_fusion._topological([fused, late, tail], {"x"})
    assert [n.name for n in order] == ["late", "fused", "tail"]


def test_quantized_merging_vit_builds_with_fused_merges(tmp_path):
    """W4A8 Linear layers export as MatMulNBits (a contrib op ONNX shape inference cannot follow): the scopes
    still fuse, and the build's own TVM-vs-onnxruntime check passes."""
    import json

    from edgecomp import api
    from edgecomp.config import BuildConfig

    cfg = ViTConfig(image_size=16, patch_size=2, in_chans=1, num_classes=5, dim=64, depth=3, heads=2, mlp_dim=128)
    vit = ViT(cfg).init_weights_(seed=0).eval()
    rng = np.random.default_rng(0)
    calibration = [{"pixels": rng.standard_normal((1, 1, 16, 16)).astype(np.float32)} for _ in range(4)]
    build = BuildConfig().with_overrides(["merge.schedule='8'", "quantize.scheme='w4a8'", "quantize.method='rtn'"])
    out = api.build(vit, "x86", tmp_path / "art", cfg=build, inputs=SPECS, calibration=calibration)
    lower = next(s for s in json.loads((out / "report.json").read_text())["stages"] if s["stage"] == "lower")
    assert lower["merge_kernels"] == {"fused": 3, "unfused": {}}
    assert lower["int_kernels"]["fused"] > 0
