"""ONNX -> TVM Relax -> scheduled machine code for the target, checked against onnxruntime.

The check runs the code that ships. For a local target that is the compiled module, in-process. For a
cross target (``runner = "qemu"``, arm64) the module is exported exactly as the artifact will hold it
(cross-linked model.so + params.bin, in a temporary directory) and run under the emulator through the C++
host, all check feeds in one emulator process. A second compile for the build machine would be somewhat
cheaper (vit-fmnist: 2.5 s, against 0.5 s cross link + 3-4 s emulating two feeds) but would check x86
code, not the arm64 code that ships: NEON tiling, the ``sdot`` integer kernels and the cross link would go
unchecked. Emulation grows with the model (vit-s16: about 40 s per feed); ``lower.check_samples`` bounds it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from edgecomp import artifact, onnx_tools
from edgecomp.config import LowerConfig
from edgecomp.errors import NumericsError
from edgecomp.model import Model, StageReport
from edgecomp.runtime import cross
from edgecomp.runtime.qemu import QemuRunner
from edgecomp.runtime.vm import VMRunner
from edgecomp.targets import Target
from edgecomp.tvm import frontend
from edgecomp.tvm.compile import compile_relax

NAME, REQUIRES = "lower", "onnx"


def run(model: Model, cfg: LowerConfig, target: Target) -> Model:
    if target.supports("asic_isa"):  # the simulated accelerator: instruction programs, not TVM (edgecomp.asic)
        from edgecomp.asic.stage import lower_asic

        return lower_asic(model, cfg, target)
    if target.cross is not None:  # before compiling: a missing cross tool would fail the check afterwards
        cross.require_tools(target.cross)
    mod, params, fused = frontend.to_relax(model.payload, model.inputs, target.tvm_target(), cfg.kernels)
    compiled = compile_relax(mod, params, target, use_database=cfg.tuning == "database")
    compiled.onnx = model.payload
    if target.runner == "device":  # nothing here can run the code: check what it holds instead of its outputs
        return model.with_report(StageReport(NAME, "done", _device_summary(compiled, target, fused)),
                                 form="compiled", payload=compiled)
    tolerance = cfg.tolerance or _tolerance(model)
    sess = onnx_tools.session(model.payload)
    feeds = model.calibration[: cfg.check_samples]
    check = onnx_tools.check_error(_run_compiled(compiled, target, model.inputs, feeds),
                                   [onnx_tools.run(sess, f) for f in feeds], model.quantized)
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
        "merge_kernels": {"fused": len(fused.merges), "unfused": fused.merges_unfused},
        "attention_kernels": {"fused": fused.attention, "unfused": fused.attention_unfused},
        "naive": sorted(f for f, r in compiled.schedules.items() if r == "none"),
        "per_function": dict(sorted(compiled.schedules.items())),
        "params": len(compiled.params),
        "param_values": int(sum(p.size for p in compiled.params)),
        "checked_against": "onnxruntime", "check_samples": len(feeds), "checked_with": target.runner,
        metric: float(f"{err:.3g}"), "worst_feed_err": float(f"{check['worst']:.3g}"), "tolerance": tolerance,
    }
    return model.with_report(StageReport(NAME, "done", summary), form="compiled", payload=compiled)


def _device_summary(compiled, target: Target, fused) -> dict:
    """The report of a build that only its device runs (``runner = "device"``): no numerics check (the
    export stage's check against onnxruntime still ran), but the exported library is checked, e.g. that a
    CUDA library holds compiled kernels for the target's arch, not source (``Compiled.check_library``)."""
    with tempfile.TemporaryDirectory(prefix="edgecomp-lower-") as tmp:
        so, params = artifact.export_model(compiled, target, Path(tmp))
        library = compiled.check_library(so) if compiled.check_library is not None else {"bytes": so.stat().st_size}
        library["params_bytes"] = params.stat().st_size
    counts: dict[str, int] = {}
    for rule in compiled.schedules.values():
        counts[rule] = counts.get(rule, 0) + 1
    return {"tvm_target": compiled.tvm_target, "functions": len(compiled.schedules),
            "schedules": dict(sorted(counts.items())), "per_function": dict(sorted(compiled.schedules.items())),
            "int_kernels": {"fused": len(fused.layers), "float_path": fused.skipped},
            "params": len(compiled.params), "param_values": int(sum(p.size for p in compiled.params)),
            "param_dtypes": sorted({str(p.dtype) for p in compiled.params}),
            "check": "not executed: " + ("no GPU" if target.supports("cuda") else "no device") +
                     f" (the code runs only on a {target.name} device)", "library": library}


# A quantized graph rounds at run time, so in a deep model one last-ulp difference flips a rounding and the
# flips cascade: two correct runtimes end up about as far apart as two independent draws of the model's
# quantization noise, sqrt(2) x the noise against fp32 (SmolLM2 W8A8 with the integer kernels: 0.0875 from
# onnxruntime at noise 0.0797). A wrong kernel or graph lands at about 1 (the signal itself).
QUANT_DIVERGENCE = 1.5


def _tolerance(model: Model) -> float:
    """Relative L2 bound for quantized models (the quantize stage's noise, widened as above); max abs else."""
    if model.quantized:
        return float(f"{QUANT_DIVERGENCE * model.export_tolerance:.3g}")
    return model.export_tolerance


def _run_compiled(compiled, target: Target, inputs, feeds) -> list:
    """Outputs of the freshly compiled module on each feed: in-process, or under the emulator (module doc)."""
    if target.runner == "local":
        runner = VMRunner(compiled.executable, compiled.params, inputs)
        return [runner(f) for f in feeds]
    with tempfile.TemporaryDirectory(prefix="edgecomp-lower-") as tmp:
        so, params = artifact.export_model(compiled, target, Path(tmp))
        return QemuRunner(so, params, inputs, target.cross, target.arch).run_many(feeds)
