"""The lower stage for a target with the ``asic_isa`` capability: ONNX -> accelerator programs (``build.py``).

With ``[asic] attention = "int8"`` (the default) the attention products' operands are fake-quantized first
(``attention.quantize_attention``) and that graph becomes the artifact's ``model.onnx``: the accelerator runs
them on the MMU, and onnxruntime on ``model.onnx`` computes the same quantized attention.

The check is stricter than TVM lowering's: the simulator's outputs must equal the numpy integer reference's
bit for bit on ``lower.check_samples`` calibration feeds; the report also gives the simulated outputs'
relative L2 error against onnxruntime on the fake-quant graph (float rounding differences only).
"""

from __future__ import annotations

import numpy as np

from edgecomp import onnx_tools
from edgecomp.asic.attention import quantize_attention
from edgecomp.asic.build import compile_asic
from edgecomp.config import LowerConfig
from edgecomp.model import Model, StageReport
from edgecomp.targets import Target

NAME = "lower"


def lower_asic(model: Model, cfg: LowerConfig, target: Target) -> Model:
    feeds = list(model.calibration[: max(1, cfg.check_samples)])
    graph, n_attention = model.payload, 0
    if _cfg(target).attention == "int8":  # the MMU runs the attention products: quantize their operands
        graph, n_attention = quantize_attention(model.payload)
    compiled, summary = compile_asic(graph, feeds, target.asic)
    compiled.onnx = graph  # model.onnx: the fake-quant graph the simulator computes, attention included
    summary["attention"] = {"mode": _cfg(target).attention, "quantized": n_attention}
    from edgecomp.asic.runtime import Executor

    sess = onnx_tools.session(graph)
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
