"""Post-training quantization: RTN, GPTQ or QuartDepth (edgecomp.quant), on the calibration feeds.

The torch model is replaced by a fake-quant copy (``QuantLinear`` / ``QuantConv2d``) that export turns
into integer ONNX (MatMulNBits, int4/int8 DequantizeLinear). Calibration runs on the model as the earlier
stages left it, so pruned widths and merged tokens are what the quantizers see.
"""

from __future__ import annotations

from edgecomp.config import QuantizeConfig
from edgecomp.errors import MissingDataError
from edgecomp.model import Model, StageReport
from edgecomp.stages._skip import skipped
from edgecomp.targets import Target

NAME, REQUIRES = "quantize", "torch"


def run(model: Model, cfg: QuantizeConfig, target: Target) -> Model:
    if not cfg.enabled:
        return skipped(model, NAME, "quantize.scheme is none (fp32 build)")
    if not model.calibration:
        raise MissingDataError("the calibration set is empty: quantization needs at least one feed",
                               hint="pass calibration feeds, or build with --calib N >= 1")
    import torch

    from edgecomp.quant.driver import quantize_module

    feeds = _batched(model, [tuple(torch.from_numpy(f[s.name]) for s in model.inputs) for f in model.calibration])
    qmodule, summary, seconds = quantize_module(model.payload, feeds, cfg, seed=0)
    calib = {"samples": len(model.calibration),
             "source": model.source.get("calibration", "calibration feeds given with the model")}
    summary = {"calibration": calib, **summary}
    notes = model.notes + tuple(_notes(cfg))
    return model.with_report(StageReport(NAME, "done", summary, timings={"quantize_layers": seconds}),
                             payload=qmodule, export_tolerance=_tolerance(model, cfg), notes=notes, quantized=True)


BATCH = 8  # calibration feeds per forward pass; quantizers work per token / per sample, so batching is exact


def _batched(model: Model, feeds: list[tuple]) -> list[tuple]:
    """Concatenate feeds along the batch axis in groups of BATCH when the module accepts batches (one
    forward pass instead of eight); fall back to single feeds when it does not."""
    import torch

    if len(feeds) == 1:
        return feeds
    groups = [feeds[i:i + BATCH] for i in range(0, len(feeds), BATCH)]
    batches = [tuple(torch.cat(parts) for parts in zip(*g, strict=True)) for g in groups]
    try:
        with torch.no_grad():
            out = model.payload(*batches[0])
        first = out[0] if isinstance(out, (tuple, list)) else out
        if first.shape[0] != len(groups[0]):
            return feeds
    except Exception:  # a module written for batch 1 only: calibrate one feed at a time
        return feeds
    return batches


def _tolerance(model: Model, cfg: QuantizeConfig) -> float:
    return model.export_tolerance


def _notes(cfg: QuantizeConfig) -> list[str]:
    return [f"quantize: {cfg.scheme} {cfg.method}; activations are quantized dynamically (per token for Linear "
            "inputs, per sample for convolution inputs); attention products, softmax, normalisation and "
            "embeddings stay float"]
