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

    def tensors(f):
        return tuple(torch.from_numpy(f[s.name]) for s in model.inputs)

    feeds = _batched(model, [tensors(f) for f in model.calibration])
    qmodule, summary, seconds = quantize_module(model.payload, feeds, cfg, seed=0)
    # The checks' noise reference comes from feeds the quantizer never saw: reconstruction fits the
    # calibration feeds, where the quantized model sits closer to fp32 than on any other input.
    held_out = model.held_out(HELD_OUT) if model.held_out else ()
    noise = _quantization_noise(model.payload, qmodule, [tensors(f) for f in held_out] or feeds[:1])
    calib = {"samples": len(model.calibration),
             "source": model.source.get("calibration", "calibration feeds given with the model")}
    summary = {"calibration": calib, "output_rel_l2_vs_fp32": float(f"{noise:.3g}"),
               "noise_measured_on": f"{len(held_out)} held-out feeds" if held_out else "calibration feeds",
               **summary}
    notes = model.notes + tuple(_notes(cfg))
    return model.with_report(StageReport(NAME, "done", summary, timings={"quantize_layers": seconds}),
                             payload=qmodule, export_tolerance=_tolerance(noise), notes=notes, quantized=True)


HELD_OUT = 2  # feeds the quantization noise (the export and lowering checks' reference) is measured on
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


def _quantization_noise(fp, q, feeds: list[tuple]) -> float:
    """Worst relative L2 distance of the quantized model's outputs from fp32 over ``feeds``."""
    import torch

    from edgecomp.onnx_tools import rel_l2_diff

    def outs(m, f):
        with torch.no_grad():
            o = m(*f)
        return [t.numpy() for t in (o if isinstance(o, (tuple, list)) else (o,))]

    return max(rel_l2_diff(outs(q, f), outs(fp, f)) for f in feeds)


def _tolerance(noise: float) -> float:
    """Export / lowering check bound (relative L2, median over feeds): runtime rounding flips must not exceed
    the quantization noise itself, and the bound is never tighter than QUANT_REL_TOLERANCE. (LogNP codes go
    through Log, whose last ulp differs between runtimes, so polished models see flips on every feed.)"""
    from edgecomp.onnx_tools import QUANT_REL_TOLERANCE

    return float(f"{max(QUANT_REL_TOLERANCE, noise):.3g}")


def _notes(cfg: QuantizeConfig) -> list[str]:
    return [f"quantize: {cfg.scheme} {cfg.method}; activations are quantized dynamically (per token for Linear "
            "inputs, per sample for convolution inputs); attention products, softmax, normalisation and "
            "embeddings stay float"]
