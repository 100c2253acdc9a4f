"""ONNX -> TVM Relax -> scheduled machine code for the target, checked against onnxruntime."""

from __future__ import annotations

from edgecomp import onnx_tools
from edgecomp.config import LowerConfig
from edgecomp.errors import NumericsError
from edgecomp.model import Model, StageReport
from edgecomp.runtime.vm import VMRunner
from edgecomp.targets import Target
from edgecomp.tvm import frontend
from edgecomp.tvm.compile import compile_relax

NAME, REQUIRES = "lower", "onnx"


def run(model: Model, cfg: LowerConfig, target: Target) -> Model:
    mod, params, fused = frontend.to_relax(model.payload, model.inputs, target.tvm_target(), cfg.kernels)
    compiled = compile_relax(mod, params, target, use_database=cfg.tuning == "database")
    compiled.onnx = model.payload
    tolerance = cfg.tolerance or model.export_tolerance  # relative L2 for quantized models (quantize stage)
    runner = VMRunner(compiled.executable, compiled.params, model.inputs)
    sess = onnx_tools.session(model.payload)
    feeds = model.calibration[: cfg.check_samples]
    check = onnx_tools.check_error([runner(f) for f in feeds], [onnx_tools.run(sess, f) for f in feeds],
                                   model.quantized)
    metric, err = check["metric"], check["value"]
    if not onnx_tools.within(check, tolerance):
        raise NumericsError(f"TVM build differs from onnxruntime: {metric} {err:.3g}, worst feed "
                            f"{check['worst']:.3g} (tolerance {tolerance:.3g})",
                            hint="report this with the model; --set lower.tuning=none rules out tuning records")
    counts: dict[str, int] = {}
    for rule in compiled.schedules.values():
        counts[rule] = counts.get(rule, 0) + 1
    summary = {
        "tvm_target": compiled.tvm_target,
        "functions": len(compiled.schedules),
        "schedules": dict(sorted(counts.items())),
        "untuned": sorted(f for f, r in compiled.schedules.items() if r != "tuned" and not r.startswith("kernel:")),
        "int_kernels": {"fused": len(fused.layers), "float_path": fused.skipped},
        "naive": sorted(f for f, r in compiled.schedules.items() if r == "none"),
        "per_function": dict(sorted(compiled.schedules.items())),
        "params": len(compiled.params),
        "param_values": int(sum(p.size for p in compiled.params)),
        "checked_against": "onnxruntime", "check_samples": len(feeds),
        metric: float(f"{err:.3g}"), "worst_feed_err": float(f"{check['worst']:.3g}"), "tolerance": tolerance,
    }
    return model.with_report(StageReport(NAME, "done", summary), form="compiled", payload=compiled)
