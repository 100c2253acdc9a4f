"""Token merging inside a BERT sentence embedder (``edgecomp.zoo.minilm``'s ``MiniLMEmbedder``: minilm-l6).

``MergingBert`` shares the embedder's Hugging Face modules and rewrites only the encoder loop. In every layer
with ``r > 0`` the tokens merge **between attention and MLP** (after the attention block's residual
LayerNorm; BERT is post-norm), as in ToMe. Inputs are padded to a static length, so padding is handled
explicitly (``matching``'s ``pad`` argument): padding pairs only with padding and goes first, real tokens
pair only with real tokens, each merged token keeps its destination's padding flag, and the additive
attention mask is rebuilt from the flags after every merge. While only padding merges, the embedding is
exactly the unmerged one (tested); real tokens merge once a layer's ``r`` exceeds its padding.

Attention adds ``log s`` to its logits once sizes differ from 1 (proportional attention). Mean pooling
becomes size-weighted: ``Σ s m h / Σ s m`` over real tokens (``m`` = not padding), which equals the plain
masked mean of the unmerged tokens when every merged token is the exact average of its sources.
The class token ([CLS], index 0) is protected like ViT's class token: BERT's attention leans on it.

Metrics come from the layer's own attention: keys averaged over heads (``tome``), or full-width keys with
the **mean query of the real tokens** as the guide (``crossget``; this embedder has no class-token head,
its output is the mean of all tokens, so the mean query stands in for CrossGET's learned cross token).
Baselines (``random``, ``pool``) also drop / pool padding first, so they differ from the matched methods
only in which real tokens they pick.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from edgecomp.merge import matching


class MergingBert(nn.Module):
    """(input_ids [B, T] int64, attention_mask [B, T] int64) -> embedding [B, C] (L2-normalised)."""

    def __init__(self, embedder: nn.Module, schedule: tuple[int, ...], method: str, seed: int = 0):
        super().__init__()
        self.embedder, self.schedule, self.method = embedder, tuple(schedule), method
        self.seed = seed
        # a new Module starts in training mode; torch.onnx.export restores that mode recursively after
        # tracing, which would switch the wrapped model's dropout on
        self.train(embedder.training)
        self.merge_seconds = 0.0  # wall time spent planning + merging in eager forwards, for the report

    @property
    def bert(self) -> nn.Module:
        return self.embedder.bert

    def forward(self, input_ids: Tensor, attention_mask: Tensor, return_sources: bool = False):
        bert = self.bert
        x = bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        pad = 1.0 - attention_mask.to(x.dtype)  # [B, N]
        size = torch.ones(x.shape[0], x.shape[1], 1)
        sources = torch.arange(x.shape[1]).expand(x.shape[0], x.shape[1])
        merged = False
        for layer, (blk, r) in enumerate(zip(bert.encoder.layer, self.schedule, strict=True)):
            q, k, v = _project(blk.attention.self, x)
            bias = (pad * torch.finfo(x.dtype).min)[:, None, None, :]  # HF's additive mask, [B, 1, 1, N]
            if merged:
                bias = bias + size.log().transpose(1, 2).unsqueeze(1)
            context = _attend(q, k, v, bias, blk.attention.self.scaling)
            x = blk.attention.output(context, x)  # dense + residual + LayerNorm
            if r:
                t0 = time.perf_counter()
                plan = PLANNERS[self.method](self, layer, r, k, q, pad)
                x, size = matching.merge_wavg(plan, x, size)
                pad = matching.gather_pad(plan, pad)
                if return_sources:
                    sources = matching.track_sources(plan, sources)
                self.merge_seconds += time.perf_counter() - t0
                merged = True
            x = blk.output(blk.intermediate(x), x)  # MLP + residual + LayerNorm
        weight = size * (1.0 - pad).unsqueeze(-1)  # [B, N', 1]
        pooled = (x * weight).sum(1) / weight.sum(1).clamp(min=1e-9)
        embedding = pooled / pooled.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)
        return (embedding, x, sources) if return_sources else embedding


def _project(sa: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """BertSelfAttention's projections: x [B, N, C] -> q, k, v [B, H, N, D]."""
    B, N, _ = x.shape
    D = sa.attention_head_size

    def heads(t: Tensor) -> Tensor:
        return t.view(B, N, -1, D).transpose(1, 2)

    return heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x))


def _attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scaling: float) -> Tensor:
    """Eager attention as Hugging Face computes it: -> context [B, N, H * D]."""
    weights = torch.softmax(q @ k.transpose(2, 3) * scaling + bias, dim=-1)
    out = (weights @ v).transpose(1, 2)
    return out.reshape(out.shape[0], out.shape[1], -1)


def _full(t: Tensor) -> Tensor:
    """[B, H, N, D] -> [B, N, H * D]."""
    B, H, N, D = t.shape
    return t.transpose(1, 2).reshape(B, N, H * D)


def _mean_query(q: Tensor, pad: Tensor) -> Tensor:
    """Mean query of the real tokens, heads concatenated: q [B, H, N, D], pad [B, N] -> [B, H * D]."""
    real = (1.0 - pad).unsqueeze(-1)
    return (_full(q) * real).sum(1) / real.sum(1).clamp(min=1.0)


# method -> (model, layer, r, keys [B, H, N, D], queries [B, H, N, D], pad [B, N]) -> MergePlan
PLANNERS = {
    "tome": lambda m, layer, r, k, q, pad: matching.bipartite_plan(k.mean(1), r, pad=pad),
    "crossget": lambda m, layer, r, k, q, pad: matching.complete_graph_plan(_full(k), _mean_query(q, pad), r, pad=pad),
    "random": lambda m, layer, r, k, q, pad: matching.random_plan(k.shape[0], k.shape[2], r, m.seed * 1000 + layer,
                                                                  pad=pad),
    "pool": lambda m, layer, r, k, q, pad: matching.pool_plan(k.shape[0], k.shape[2], r, pad=pad),
}
