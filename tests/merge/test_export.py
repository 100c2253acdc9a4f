"""Merging models through ONNX and TVM: tokens, sizes' effect and source maps agree with torch.

A 3-block ViT (random weights) merges at every block; the exported graph returns the logits, the final
merged tokens and the source map, so a wrong merge at any layer (TVM's ONNX importer once ignored
ScatterElements' reduction) shows in the token tensor. Each method is checked torch vs onnxruntime vs TVM.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tvm")

from edgecomp import onnx_tools  # noqa: E402
from edgecomp.merge.vit import MergingViT  # noqa: E402
from edgecomp.runtime.vm import VMRunner  # noqa: E402
from edgecomp.specs import TensorSpec  # noqa: E402
from edgecomp.targets import load_target  # noqa: E402
from edgecomp.tvm import frontend  # noqa: E402
from edgecomp.tvm.compile import compile_relax  # noqa: E402
from edgecomp.zoo.vit import ViT, ViTConfig  # noqa: E402


class WithTokens(torch.nn.Module):
    def __init__(self, merging: MergingViT):
        super().__init__()
        self.merging = merging

    def forward(self, pixels):
        return self.merging(pixels, return_sources=True)


@pytest.mark.parametrize("method", ["tome", "crossget", "random", "pool"])
def test_merge_layers_agree_torch_onnxruntime_tvm(method):
    cfg = ViTConfig(image_size=16, patch_size=2, in_chans=1, num_classes=5, dim=32, depth=3, heads=2, mlp_dim=64)
    vit = ViT(cfg).init_weights_(seed=0).eval()
    with torch.no_grad():  # sharper attention than the 0.02 init, so matching decisions are not ties
        for blk in vit.blocks:
            blk.attn.k.weight.mul_(20)
            blk.attn.q.weight.mul_(20)
    model = WithTokens(MergingViT(vit, (16, 12, 8), method)).eval()  # 65 -> 49 -> 37 -> 29 tokens
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = [t.numpy() for t in model(x)]
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, input_names=["pixels"], output_names=["logits", "tokens", "sources"],
                      dynamo=False, opset_version=17)
    graph = onnx.load_from_string(buf.getvalue())
    ops = {n.op_type for n in graph.graph.node}
    if method != "random":
        assert "ScatterElements" in ops
    feeds = {"pixels": x.numpy()}
    got_ort = onnx_tools.session(graph).run(None, feeds)
    specs = (TensorSpec("pixels", (1, 1, 16, 16)),)
    mod, params, _ = frontend.to_relax(onnx_tools.fold(graph), specs)
    compiled = compile_relax(mod, params, load_target("x86"), use_database=False, threads=2)
    got_tvm = VMRunner(compiled.executable, compiled.params, specs)(feeds)
    assert want[1].shape == (1, 29, 32)
    for name, t, o, v in zip(("logits", "tokens", "sources"), want, got_ort, got_tvm, strict=True):
        if name == "sources":
            np.testing.assert_array_equal(o, t)
            np.testing.assert_array_equal(v, t)
        else:
            np.testing.assert_allclose(o, t, rtol=0, atol=2e-5 * max(1.0, np.abs(t).max()), err_msg=f"ort {name}")
            np.testing.assert_allclose(v, t, rtol=0, atol=2e-5 * max(1.0, np.abs(t).max()), err_msg=f"tvm {name}")
