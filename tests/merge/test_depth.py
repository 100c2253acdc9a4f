"""depth-vit token merging: readouts un-merged onto the patch grid, identity at r=0, pipeline adapter."""

from __future__ import annotations

import pytest
import torch

from edgecomp.merge import matching
from edgecomp.merge.depth import MergingDepthViT
from edgecomp.zoo.dpt import DepthViT, DepthViTConfig

CFG = DepthViTConfig(
    image_size=32,
    patch_size=8,
    dim=32,
    depth=4,
    heads=2,
    mlp_dim=64,
    readout=(0, 1, 2, 3),
    stage_dims=(8, 8, 16, 16),
    features=8,
)


def _net():
    return DepthViT(CFG).init_weights_(0).eval()


def _pixels(seed=0):
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_no_merging_is_the_model_itself():
    net = _net()
    with torch.no_grad():
        assert torch.equal(MergingDepthViT(net, (0, 0, 0, 0), "tome")(_pixels()), net(_pixels()))


@pytest.mark.parametrize("method", ["tome", "crossget", "random", "pool"])
def test_merged_readouts_are_unmerged_to_full_grids(method, monkeypatch):
    net = _net()
    seen = []
    decode = net.decode
    monkeypatch.setattr(net, "decode", lambda rs: seen.extend(r.shape for r in rs) or decode(rs))
    with torch.no_grad():
        out = MergingDepthViT(net, (4, 2, 2, 0), method)(_pixels())
    assert out.shape == (2, 1, 32, 32) and torch.isfinite(out).all() and (out > 0).all()
    assert seen == [(2, CFG.tokens, CFG.dim)] * 4  # 17 tokens at every readout although 8 were merged


def test_unmerge_copies_each_merged_token_to_its_sources():
    x = torch.arange(6.0).reshape(1, 3, 2)
    sources = torch.tensor([[0, 1, 1, 2, 2]])
    assert matching.unmerge(x, sources)[0, :, 0].tolist() == [0.0, 2.0, 2.0, 4.0, 4.0]


def test_pipeline_adapter_is_registered():
    from edgecomp.prune.structures import ADAPTERS as PRUNE
    from edgecomp.stages.merge import ADAPTERS as MERGE

    assert "DepthViT" in MERGE and "DepthViT" in PRUNE
    layers = PRUNE.get("DepthViT")(_net())
    assert len(layers) == CFG.depth and layers[0].attn.heads == CFG.heads
