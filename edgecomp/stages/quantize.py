"""Post-training quantization (algorithms land in the 4-bit quantization issue)."""

from __future__ import annotations

from edgecomp.config import QuantizeConfig
from edgecomp.model import Model
from edgecomp.stages._skip import not_available, skipped
from edgecomp.targets import Target

NAME, REQUIRES = "quantize", "torch"


def run(model: Model, cfg: QuantizeConfig, target: Target) -> Model:
    if not cfg.enabled:
        return skipped(model, NAME, "quantize.scheme is none (fp32 build)")
    raise not_available(NAME, f"--quant {cfg.scheme}")
