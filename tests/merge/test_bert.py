"""Token merging in a padded BERT embedder: padding is exact, real and padding tokens never mix, and every
method's merged graph agrees torch vs onnxruntime vs TVM (a 2-layer random BERT, static length 40)."""

from __future__ import annotations

import io

import numpy as np
import onnx
import pytest
import torch

ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")

from edgecomp import onnx_tools  # noqa: E402
from edgecomp.merge.bert import MergingBert  # noqa: E402
from edgecomp.zoo.minilm import _embedder_class  # noqa: E402

T = 40
METHODS = ("tome", "crossget", "random", "pool")


def _embedder():
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=64, attn_implementation="eager")
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg, add_pooling_layer=False)
    return _embedder_class()(bert).eval().requires_grad_(False)


def _feeds(length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One sentence of ``length`` real tokens ([CLS] ... [SEP]) right-padded to T."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(1, T, dtype=torch.int64)
    ids[0, :length] = torch.randint(5, 120, (length,), generator=g)
    mask = (torch.arange(T) < length).to(torch.int64).unsqueeze(0)
    return ids, mask


@pytest.mark.parametrize("method", METHODS)
def test_merging_only_padding_leaves_the_embedding_unchanged(method):
    emb = _embedder()
    ids, mask = _feeds(12)  # 28 padding tokens; the schedule removes 10 + 8 = 18 of them
    with torch.no_grad():
        want = emb(ids, mask)
        got = MergingBert(emb, (10, 8), method)(ids, mask)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_real_tokens_merge_only_with_real_tokens(method):
    emb = _embedder()
    ids, mask = _feeds(30)  # 10 padding tokens; 16 + 8 = 24 removed, so real tokens must merge too
    with torch.no_grad():
        merged = MergingBert(emb, (16, 8), method)
        embedding, tokens, sources = merged(ids, mask, return_sources=True)
        plain = emb(ids, mask)
    assert tokens.shape == (1, T - 24, 32)
    real = mask[0].bool()
    for position in range(tokens.shape[1]):
        members = real[sources[0] == position]
        if method != "random":  # dropped tokens point at position 0 and are not members of anything
            assert members.all() or not members.any(), f"position {position} mixes real and padding tokens"
    assert sources[0, 0] == 0, "the protected [CLS] token moved"
    cosine = float((embedding * plain).sum())
    assert 0.5 < cosine < 1.0 - 1e-6, cosine  # real merging changes the embedding, but not beyond recognition


@pytest.mark.parametrize("method", METHODS)
def test_merged_bert_agrees_torch_onnxruntime_tvm(method):
    pytest.importorskip("tvm")
    from edgecomp.runtime.vm import VMRunner
    from edgecomp.specs import TensorSpec
    from edgecomp.targets import load_target
    from edgecomp.tvm import frontend
    from edgecomp.tvm.compile import compile_relax

    model = MergingBert(_embedder(), (19, 9), method)
    ids, mask = _feeds(30)
    with torch.no_grad():
        want = model(ids, mask).numpy()
        buf = io.BytesIO()
        torch.onnx.export(model, (ids, mask), buf, input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], dynamo=False, opset_version=17)
        after = model(ids, mask).numpy()
    np.testing.assert_array_equal(after, want)  # exporting left the model in eval mode (dropout off)
    graph = onnx_tools.fold(onnx.load_from_string(buf.getvalue()))
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    (got_ort,) = onnx_tools.session(graph).run(None, feeds)
    specs = (TensorSpec("input_ids", (1, T), "int64"), TensorSpec("attention_mask", (1, T), "int64"))
    mod, params, _ = frontend.to_relax(graph, specs)
    compiled = compile_relax(mod, params, load_target("x86"), use_database=False, threads=2)
    (got_tvm,) = VMRunner(compiled.executable, compiled.params, specs)(feeds)
    np.testing.assert_allclose(got_ort, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got_tvm, want, rtol=0, atol=1e-5)
