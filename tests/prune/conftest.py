"""Tiny random models of the three adapter families (ViT, BERT, Llama with GQA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp.specs import TensorSpec

T = 12


@pytest.fixture
def tiny_vit():
    from edgecomp.zoo.vit import ViT, ViTConfig

    cfg = ViTConfig(image_size=16, patch_size=4, in_chans=1, num_classes=5, dim=32, depth=2, heads=4, mlp_dim=64)
    spec = (TensorSpec("pixels", (1, 1, 16, 16), "float32"),)
    rng = np.random.default_rng(0)
    feeds = [{"pixels": rng.standard_normal((1, 1, 16, 16)).astype(np.float32)} for _ in range(8)]
    return ViT(cfg).init_weights_(seed=1).eval().requires_grad_(False), spec, feeds


@pytest.fixture
def tiny_bert():
    from transformers import BertConfig, BertModel

    from edgecomp.zoo.minilm import _embedder_class

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=32)
    bert = BertModel._from_config(cfg, add_pooling_layer=False, attn_implementation="eager")
    module = _embedder_class()(bert).eval().requires_grad_(False)
    spec = (TensorSpec("input_ids", (1, T), "int64"), TensorSpec("attention_mask", (1, T), "int64"))
    rng = np.random.default_rng(0)
    feeds = []
    for i in range(8):
        mask = np.zeros((1, T), np.int64)
        mask[0, : T - i % 4] = 1  # some padding, as real sentences have
        feeds.append({"input_ids": rng.integers(1, 100, (1, T)).astype(np.int64), "attention_mask": mask})
    return module, spec, feeds


@pytest.fixture
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgecomp.adapters.hf import CausalLMLogits

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    lm = LlamaForCausalLM._from_config(cfg, attn_implementation="eager")
    module = CausalLMLogits(lm).eval().requires_grad_(False)
    spec = (TensorSpec("input_ids", (1, T), "int64"),)
    rng = np.random.default_rng(0)
    feeds = [{"input_ids": rng.integers(0, 64, (1, T)).astype(np.int64)} for _ in range(8)]
    return module, spec, feeds
