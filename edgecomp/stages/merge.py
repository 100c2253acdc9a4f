"""Token merging (edgecomp.merge): wrap the torch model so chosen blocks merge tokens on a static schedule.

The schedule is fixed here (``merge.schedule`` or a constant ``merge.r``), checked against the model's
token count, and every later stage (quantization calibration, export, lowering) sees the merging model,
so the ONNX graph carries the matching and merging ops with static shapes. Adapters are looked up by the
torch module's class; a model without one (no attention, or a family not covered yet) is an error.
The report records tokens per layer and the measured share of eager forward time spent planning and
merging on the calibration feeds.
"""

from __future__ import annotations

import time

from edgecomp.config import MergeConfig
from edgecomp.errors import ConfigError
from edgecomp.model import Model, StageReport
from edgecomp.registry import Registry
from edgecomp.stages._skip import skipped
from edgecomp.targets import Target

NAME, REQUIRES = "merge", "torch"

ADAPTERS: Registry = Registry("token-merging adapter")


@ADAPTERS.register("ViT")
def _vit(model: Model, cfg: MergeConfig):
    """edgecomp.zoo.vit.ViT (vit-fmnist, vit-s16) -> (merging module, schedule, tokens, tokens per layer)."""
    from edgecomp.merge.vit import MergingViT

    return _blockwise(MergingViT, model, cfg)


@ADAPTERS.register("DepthViT")
def _depth_vit(model: Model, cfg: MergeConfig):
    """edgecomp.zoo.dpt.DepthViT (depth-vit): merged tokens are un-merged before every decoder readout."""
    from edgecomp.merge.depth import MergingDepthViT

    return _blockwise(MergingDepthViT, model, cfg)


def _blockwise(wrapper, model: Model, cfg: MergeConfig):
    """A network with ``blocks`` and ``cfg.tokens`` (edgecomp's ViT blocks) wrapped in ``wrapper(module,
    schedule, method, seed)`` -> (merging module, schedule, tokens, tokens per layer)."""
    from edgecomp.merge import schedule

    module = model.payload
    depth, tokens = len(module.blocks), module.cfg.tokens
    plan = schedule.parse(cfg.spec, depth)
    counts = schedule.token_counts(plan, tokens)
    return wrapper(module, plan, cfg.method, cfg.seed), plan, tokens, counts


@ADAPTERS.register("MiniLMEmbedder")
def _bert(model: Model, cfg: MergeConfig):
    """edgecomp.zoo.minilm's embedder (minilm-l6; padded to the static sequence length of its input)."""
    from edgecomp.merge import schedule
    from edgecomp.merge.bert import MergingBert

    module = model.payload
    depth, tokens = len(module.bert.encoder.layer), model.inputs[0].shape[1]
    plan = schedule.parse(cfg.spec, depth)
    counts = schedule.token_counts(plan, tokens)
    return MergingBert(module, plan, cfg.method, cfg.seed), plan, tokens, counts


def run(model: Model, cfg: MergeConfig, target: Target) -> Model:
    if not cfg.enabled:
        return skipped(model, NAME, "merge.r is 0")
    kind = type(model.payload).__name__
    if kind not in ADAPTERS:
        raise ConfigError(f"{model.name} ({kind}) has no token-merging adapter",
                          hint=f"token merging covers attention models with an adapter: {', '.join(ADAPTERS)}")
    merged, plan, tokens, counts = ADAPTERS.get(kind)(model, cfg)
    summary = {"method": cfg.method, "schedule": list(plan), "tokens_in": tokens, "tokens_per_layer": list(counts),
               **_overhead(merged, model)}
    note = (f"merge: {cfg.method}, {sum(plan)} of {tokens} tokens merged over {len(plan)} layers "
            f"(tokens per layer {list(counts)})")
    return model.with_report(StageReport(NAME, "done", summary), payload=merged, notes=model.notes + (note,))


def _overhead(merged, model: Model) -> dict:
    """Eager (torch, batch 1) time spent planning + merging vs the whole forward, over a few calibration feeds."""
    import torch

    feeds = [tuple(torch.from_numpy(f[s.name]) for s in model.inputs) for f in model.calibration[:4]]
    if not feeds:
        return {}
    with torch.no_grad():
        merged(*feeds[0])  # warm-up
        merged.merge_seconds, t0 = 0.0, time.perf_counter()
        for f in feeds:
            merged(*f)
        total = time.perf_counter() - t0
    return {"merge_ms_eager": round(1e3 * merged.merge_seconds / len(feeds), 3),
            "forward_ms_eager": round(1e3 * total / len(feeds), 3),
            "merge_share_eager": round(merged.merge_seconds / total, 4)}
