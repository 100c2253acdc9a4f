"""edgecomp.tvm.attention_fusion: each exported attention (q kᵀ, optional scale and bias, softmax, · v) becomes one
call of the registry's attention kernel, the TVM build agrees with onnxruntime, and chains it must not take
keep their ops with a reason."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("tvm")

from edgecomp import onnx_tools  # noqa: E402
from edgecomp.runtime.vm import VMRunner  # noqa: E402
from edgecomp.specs import TensorSpec  # noqa: E402
from edgecomp.targets import load_target  # noqa: E402
from edgecomp.tvm import attention_fusion, frontend  # noqa: E402
from edgecomp.tvm.compile import compile_relax  # noqa: E402

X86 = load_target("x86")
N, C, H = 23, 32, 2  # 23 tokens: neither whole vectors nor whole row tiles
SPECS = (TensorSpec("x", (1, N, C)), TensorSpec("mask", (1, N)))


class Attention(torch.nn.Module):
    """One attention layer with the scale where ``scale`` says (on q, or times / divided into the scores) and
    ``bias``: none, a padding mask from the ``mask`` input, or a causal mask (a constant [N, N])."""

    def __init__(self, scale: str, bias: str, return_probs: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.qkv, self.proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
        self.scale, self.bias, self.return_probs = scale, bias, return_probs
        self.register_buffer("causal", torch.triu(torch.full((N, N), -1e4), 1))

    def forward(self, x, mask):
        D = C // H
        q, k, v = self.qkv(x).reshape(1, N, 3, H, D).permute(2, 0, 3, 1, 4).unbind(0)
        if self.scale == "q":
            s = (q * D ** -0.5) @ k.transpose(-2, -1)
        elif self.scale == "mul":
            s = (q @ k.transpose(-2, -1)) * D ** -0.5
        else:
            s = (q @ k.transpose(-2, -1)) / D ** 0.5
        if self.bias == "mask":
            s = s + (1.0 - mask[:, None, None, :]) * -1e4
        elif self.bias == "causal":
            s = s + self.causal
        p = s.softmax(-1)
        out = self.proj((p @ v).transpose(1, 2).reshape(1, N, C))
        return (out, p) if self.return_probs else out


def _graph(module):
    feeds = {"x": torch.randn(1, N, C, generator=torch.Generator().manual_seed(1)),
             "mask": torch.cat([torch.ones(1, N - 5), torch.zeros(1, 5)], 1)}
    buf = io.BytesIO()
    torch.onnx.export(module.eval(), tuple(feeds.values()), buf, input_names=list(feeds), dynamo=False,
                      opset_version=17)
    graph = onnx_tools.fold(onnx.load_from_string(buf.getvalue()))
    used = {i.name for i in graph.graph.input}  # (the mask input is dropped where nothing reads it)
    return graph, {k: v.numpy() for k, v in feeds.items() if k in used}, tuple(s for s in SPECS if s.name in used)


@pytest.mark.parametrize("scale,bias", [("q", "none"), ("mul", "mask"), ("div", "causal")])
def test_attention_fuses_and_agrees_with_onnxruntime(scale, bias):
    graph, feeds, specs = _graph(Attention(scale, bias))
    mod, params, report = frontend.to_relax(graph, specs, X86.tvm_target())
    assert (report.attention, report.attention_unfused) == (1, {})
    assert "R.nn.softmax" not in mod["main"].script()
    compiled = compile_relax(mod, params, X86, use_database=False, threads=2)
    assert list(compiled.schedules.values()).count("kernel:attention") == 1
    (got,) = VMRunner(compiled.executable, compiled.params, specs)(feeds)
    (want,) = onnx_tools.session(graph).run(None, feeds)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_probabilities_read_elsewhere_keep_the_chain():
    graph, _, specs = _graph(Attention("q", "none", return_probs=True))
    mod, _, report = frontend.to_relax(graph, specs, X86.tvm_target())
    assert report.attention == 0
    (why,) = report.attention_unfused.values()
    assert "read elsewhere" in why


def test_no_target_no_fusion():
    graph, _, specs = _graph(Attention("q", "none"))
    mod, _, report = frontend.to_relax(graph, specs, X86.tvm_target(), kernels=False)
    assert report.attention == 0 and "R.nn.softmax" in mod["main"].script()
    assert attention_fusion.AttentionFusion().fused == 0
