"""The lower stage for a target with the ``asic_isa`` capability: ONNX -> accelerator programs (``build.py``).

The check is stricter than TVM lowering's: the simulator's outputs must equal the numpy integer reference's
bit for bit on ``lower.check_samples`` calibration feeds; the report also gives the simulated outputs'
relative L2 error against onnxruntime on the fake-quant graph (float rounding differences only).
"""

from __future__ import annotations

import numpy as np

from edgecomp import onnx_tools
from edgecomp.asic.build import compile_asic
from edgecomp.config import LowerConfig
from edgecomp.model import Model, StageReport
from edgecomp.targets import Target

NAME = "lower"


def lower_asic(model: Model, cfg: LowerConfig, target: Target) -> Model:
    feeds = list(model.calibration[: max(1, cfg.check_samples)])
    compiled, summary = compile_asic(model.payload, feeds, target.asic)
    compiled.onnx = model.payload
    from edgecomp.asic.runtime import Executor

    sess = onnx_tools.session(model.payload)
    sim = Executor(compiled.host, compiled.layers, compiled.programs, compiled.images,
                   _cfg(target))
    errs = []
    for f in feeds:
        a = sim(f)
        b = onnx_tools.run(sess, f)
        num = sum(float(np.sum((x.astype(np.float64) - y) ** 2)) for x, y in zip(a, b, strict=True))
        den = sum(float(np.sum(y.astype(np.float64) ** 2)) for y in b)
        errs.append((num / den) ** 0.5 if den else 0.0)
    summary["vs_onnxruntime_rel_l2"] = float(f"{max(errs):.3g}")
    summary["backend"] = "asic-sim"
    return model.with_report(StageReport(NAME, "done", summary), form="compiled", payload=compiled)


def _cfg(target: Target):
    from edgecomp.asic.config import AsicConfig

    return AsicConfig.from_table(target.asic)
