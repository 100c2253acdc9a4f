"""torch -> ONNX, folded by onnxruntime and checked against the torch model on calibration feeds.

The build fails (NumericsError) when max |onnxruntime - torch| over ``check_samples`` calibration
feeds exceeds the tolerance (the model's default, or ``export.tolerance``). An ONNX source is
folded and checked against its own unfolded graph. After folding, initializers that repeat along an axis
are stored once (``onnx_broadcast``; exact), so model.onnx and params.bin carry no folded broadcasts.
"""

from __future__ import annotations

import io
import warnings

from edgecomp import onnx_broadcast, onnx_tools
from edgecomp.config import ExportConfig
from edgecomp.errors import MalformedModelError, NumericsError
from edgecomp.model import Model, StageReport
from edgecomp.targets import Target

NAME, REQUIRES = "export", "torch|onnx"


def run(model: Model, cfg: ExportConfig, target: Target) -> Model:
    tolerance = cfg.tolerance or model.export_tolerance  # relative L2 for quantized models (quantize stage)
    feeds = model.calibration[: cfg.check_samples]
    if model.form == "torch":
        exported = _export_torch(model, cfg)
        reference = [_torch_outputs(model.payload, model, f) for f in feeds]
        against = "torch"
    else:
        exported = model.payload
        with onnx_tools.runtime_errors(model.name):
            plain = onnx_tools.session(exported, optimize=False)
            reference = [onnx_tools.run(plain, f) for f in feeds]
        against = "onnxruntime (unoptimised source graph)"
    with onnx_tools.runtime_errors(f"{model.name} (folded)"):  # an ONNX source's graph, or our export
        folded = onnx_tools.fold(exported)
        folded, shrunk = onnx_broadcast.shrink_uniform_initializers(folded, feeds[0])
        sess = onnx_tools.session(folded)
        outs = [onnx_tools.run(sess, f) for f in feeds]
    check = onnx_tools.check_error(outs, reference, model.quantized)
    metric, err = check["metric"], check["value"]
    if not onnx_tools.within(check, tolerance):
        raise NumericsError(f"exported ONNX differs from {against}: {metric} {err:.3g}, worst feed "
                            f"{check['worst']:.3g} (tolerance {tolerance:.3g})",
                            hint="raise --set export.tolerance=... only if the difference is understood")
    summary = {"opset": cfg.opset, "nodes": len(folded.graph.node), "ops": _op_counts(folded),
               "checked_against": against, "check_samples": len(feeds),
               metric: float(f"{err:.3g}"), "worst_feed_err": float(f"{check['worst']:.3g}"),
               "tolerance": tolerance,
               "repeated_initializers_stored_once": {"count": len(shrunk["initializers"]),
                                                     "bytes_saved": shrunk["bytes_saved"]}}
    return model.with_report(StageReport(NAME, "done", summary), form="onnx", payload=folded)


def _export_torch(model: Model, cfg: ExportConfig):
    import onnx
    import torch

    module = model.payload.eval()  # torch.onnx.export restores the module's mode recursively afterwards: a
    # wrapper left in training mode would switch dropout on in the torch reference the export is checked against
    example = tuple(torch.from_numpy(model.calibration[0][s.name]) for s in model.inputs)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        try:
            torch.onnx.export(module, example, buf, input_names=[s.name for s in model.inputs],
                              output_names=list(model.outputs), dynamo=False, opset_version=cfg.opset,
                              do_constant_folding=True, custom_opsets={"com.microsoft": 1, "edgecomp": 1})
        except Exception as e:  # the exporter raises many types; name the cause in one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MalformedModelError(f"torch.onnx.export failed for {model.name}: {first}",
                                      hint="make forward() traceable with static shapes; run with --debug") from None
    from edgecomp.quant.onnx_export import finalize

    return finalize(onnx.load_from_string(buf.getvalue()))


def _torch_outputs(module, model: Model, feeds):
    import torch

    with torch.no_grad():
        out = module(*(torch.from_numpy(feeds[s.name]) for s in model.inputs))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [o.detach().numpy() for o in outs]


def _op_counts(model) -> dict:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
