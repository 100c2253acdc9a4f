"""Physical cuts equal masking: a pruned model computes what the original computes with the cut heads'
and channels' output-projection columns zeroed, for every adapter family (GQA included)."""

from __future__ import annotations

import copy

import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.prune.structures import head_channels, keep_channels, keep_heads, layers_of


def _run(module, spec, feed):
    with torch.no_grad():
        return module(*(torch.from_numpy(feed[s.name]) for s in spec))


@pytest.mark.parametrize("family", ["tiny_vit", "tiny_bert", "tiny_llama"])
def test_cut_equals_masking(family, request):
    module, spec, feeds = request.getfixturevalue(family)
    cut, masked = copy.deepcopy(module), copy.deepcopy(module)
    for L_cut, L_mask in zip(layers_of(cut), layers_of(masked), strict=True):
        a = L_cut.attn
        per = a.heads // a.kv_heads
        keep = [g * per for g in range(a.kv_heads)] if a.grouped else [0, 2]  # one head per group under GQA
        drop = [h for h in range(a.heads) if h not in keep]
        keep_heads(a, keep)
        L_mask.attn.output.weight.data[:, head_channels(L_mask.attn, drop)] = 0
        width = L_cut.mlp.output.in_features
        kept = torch.arange(0, width, 2)
        keep_channels(L_cut.mlp, kept)
        L_mask.mlp.output.weight.data[:, torch.arange(1, width, 2)] = 0
        assert L_cut.mlp.output.in_features == width // 2 and a.output.in_features == len(keep) * a.head_dim
        assert all(lin.out_features == len(keep) * a.head_dim for lin in a.cut_inputs)
    for feed in feeds[:3]:
        torch.testing.assert_close(_run(cut, spec, feed), _run(masked, spec, feed), rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in cut.parameters()) < sum(p.numel() for p in module.parameters())


def test_qkv_bias_is_the_original_one(tiny_vit):
    module, _, _ = tiny_vit
    (L, *_) = layers_of(module)
    d = L.attn.head_dim
    biases = [lin.bias.detach().clone() for lin in L.attn.inputs]
    keep_heads(L.attn, [1, 3])
    kept = torch.cat([torch.arange(d, 2 * d), torch.arange(3 * d, 4 * d)])
    # UPop's compress() left a fresh random bias here (notes §2.5)
    for lin, b in zip(L.attn.inputs, biases, strict=True):
        torch.testing.assert_close(lin.bias, b[kept])


def test_gqa_needs_equal_heads_per_group(tiny_llama):
    module, _, _ = tiny_llama
    (L, *_) = layers_of(module)
    with pytest.raises(ValueError, match="same number of heads per group"):
        keep_heads(L.attn, [0, 1, 2])


def test_unknown_family_lists_the_supported_ones():
    with pytest.raises(ConfigError, match="no pruning adapter for Sequential") as e:
        layers_of(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    assert "ViT" in e.value.hint and "CausalLMLogits" in e.value.hint
