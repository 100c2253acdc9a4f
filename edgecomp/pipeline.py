"""The compiler spine: import, then prune -> merge -> quantize -> export -> lower, then write.

Stage order is fixed and checked against each stage's ``REQUIRES`` before anything runs, so a bad
combination (e.g. pruning an ONNX file) fails in a second, not after minutes of work.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgecomp import artifact
from edgecomp.config import BuildConfig
from edgecomp.errors import ConfigError
from edgecomp.stages import export, importer, lower, merge, prune, quantize
from edgecomp.targets import Target

STAGES = (prune, merge, quantize, export, lower)


def _check_order(form: str, cfg: BuildConfig) -> None:
    for stage in (prune, merge, quantize):
        stage_cfg = getattr(cfg, stage.NAME)
        if stage_cfg.enabled and form != stage.REQUIRES:
            raise ConfigError(f"the {stage.NAME} stage needs a torch model, but the source is {form}",
                              hint="build from the zoo name, the torch module or the model directory instead")


def build(source, target: Target, out: str | Path, cfg: BuildConfig | None = None, inputs=None,
          calibration=None, progress=None) -> Path:
    """Compile ``source`` for ``target`` into the artifact directory ``out`` (atomically)."""
    cfg = cfg or BuildConfig()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if progress:
        progress("import")
    model = importer.load(source, cfg.calib_samples, cfg.seed, inputs=inputs, calibration=calibration)
    timings["import"] = round(time.perf_counter() - t0, 3)
    _check_order(model.form, cfg)
    for stage in STAGES:
        if progress:
            progress(stage.NAME)
        t = time.perf_counter()
        model = stage.run(model, getattr(cfg, stage.NAME), target)
        timings[stage.NAME] = round(time.perf_counter() - t, 3)
        if model.reports and model.reports[-1].stage == stage.NAME:
            timings.update(model.reports[-1].timings)
    if progress:
        progress("write")
    # NOTE: timings.json is written inside the atomic write, so it cannot time that write itself;
    # rewriting it afterwards would touch the artifact outside the rename.
    timings["total"] = round(time.perf_counter() - t0, 3)
    return artifact.write(model, cfg, target, Path(out), timings)
