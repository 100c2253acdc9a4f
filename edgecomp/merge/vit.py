"""Token merging inside edgecomp's ViT (``edgecomp.zoo.vit.ViT``: vit-fmnist, vit-s16).

``MergingViT`` shares the ViT's modules and changes only its forward pass: in every block with ``r > 0``
the tokens are merged **between attention and MLP** (ToMe's placement), attention adds ``log s`` to its
logits once sizes differ from 1 (proportional attention), and the class token (index 0) is protected, so
the head still reads ``x[:, 0]``. Metrics come from the block's own attention: keys averaged over heads
(ToMe) or full-width keys with the class token's query as the guide (complete graph; our single-modality
stand-in for CrossGET's learned cross token). ``return_sources=True`` also returns the source map, for
``matching.unmerge`` (dense heads reading intermediate layers).

Each layer's plan + merge runs inside a ``LayerMerge`` submodule (``merges_<method>.<layer>``), so the exported
ONNX names its ops ``/merges_tome.3/...``: the scope ``edgecomp.tvm.merge_fusion`` replaces by one fused kernel.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from edgecomp.merge import matching


class MergingViT(nn.Module):
    def __init__(self, vit: nn.Module, schedule: tuple[int, ...], method: str, seed: int = 0):
        super().__init__()
        self.vit, self.schedule, self.method = vit, tuple(schedule), method
        self.seed = seed
        self.add_module(f"merges_{method}", nn.ModuleList(LayerMerge(method, layer, r, seed)
                                                          for layer, r in enumerate(self.schedule)))
        # a new Module starts in training mode; torch.onnx.export restores that mode recursively after
        # tracing, which would switch the wrapped model's dropout on
        self.train(vit.training)
        self.merge_seconds = 0.0  # wall time spent planning + merging in eager forwards, for the report

    def forward(self, pixels: Tensor, return_sources: bool = False):
        *_, (_, x, sources, _) = merged_blocks(self, self.vit.blocks, self.vit.embed(pixels), return_sources)
        logits = self.vit.classify(x)
        return (logits, x, sources) if return_sources else logits


def merged_blocks(owner: nn.Module, blocks, x: Tensor, track_sources: bool):
    """Run ``blocks`` on tokens ``x [B, N0, C]``, merging ``owner.schedule[i]`` tokens between block i's
    attention and MLP with ``PLANNERS[owner.method]`` (proportional attention once sizes differ from 1).

    Yields ``(layer, x [B, N_i, C], sources [B, N0], merged)`` after every block; ``sources`` maps each
    original token to the merged token holding it (tracked only when ``track_sources``, else the identity)
    and ``merged`` says whether any merge has happened yet. Wall time of planning + merging accumulates in
    ``owner.merge_seconds``."""
    size = torch.ones(x.shape[0], x.shape[1], 1)
    sources = torch.arange(x.shape[1]).expand(x.shape[0], x.shape[1])
    merged = False
    for layer, (blk, r) in enumerate(zip(blocks, owner.schedule, strict=True)):
        log_size = size.log().transpose(1, 2).unsqueeze(1) if merged else None  # [B, 1, 1, N]
        q, k, v = blk.attn.project(blk.norm1(x))
        x = x + blk.attn.attend(q, k, v, log_size)
        if r:
            t0 = time.perf_counter()
            if track_sources:
                plan = PLANNERS[owner.method](owner, layer, r, k, _class_query(q))
                x, size = matching.merge_wavg(plan, x, size)
                sources = matching.track_sources(plan, sources)
            else:  # in a submodule: the exported ops share one name scope (see the module docstring)
                x, size = getattr(owner, f"merges_{owner.method}")[layer](x, k, _class_query(q), size)
            owner.merge_seconds += time.perf_counter() - t0
            merged = True
        x = x + blk.mlp(blk.norm2(x))
        yield layer, x, sources, merged


class LayerMerge(nn.Module):
    """One layer's plan and size-weighted merge: (x [B, N, C], keys [B, H, N, D], class query [B, H * D],
    size [B, N, 1]) -> (x [B, N - r, C], size [B, N - r, 1]). No parameters; a module only for its name scope."""

    def __init__(self, method: str, layer: int, r: int, seed: int):
        super().__init__()
        self.method, self.layer, self.r, self.seed = method, layer, r, seed

    def forward(self, x: Tensor, k: Tensor, q: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
        plan = PLANNERS[self.method](self, self.layer, self.r, k, q)
        return matching.merge_wavg(plan, x, size)


def _class_query(q: Tensor) -> Tensor:
    """The class token's query, heads concatenated: q [B, H, N, D] -> [B, H * D]."""
    B, H, _, D = q.shape
    return q[:, :, 0].reshape(B, H * D)


def _full_keys(k: Tensor) -> Tensor:
    B, H, N, D = k.shape
    return k.transpose(1, 2).reshape(B, N, H * D)


# method -> (model, layer, r, keys [B, H, N, D], class query [B, C]) -> MergePlan
PLANNERS = {
    "tome": lambda m, layer, r, k, q: matching.bipartite_plan(k.mean(1), r),
    "crossget": lambda m, layer, r, k, q: matching.complete_graph_plan(_full_keys(k), q, r),
    "random": lambda m, layer, r, k, q: matching.random_plan(k.shape[0], k.shape[2], r, m.seed * 1000 + layer),
    "pool": lambda m, layer, r, k, q: matching.pool_plan(k.shape[0], k.shape[2], r),
}
