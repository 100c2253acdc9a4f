"""Shared behaviour of compression stages whose algorithms have not landed yet."""

from __future__ import annotations

from edgecomp.errors import ConfigError
from edgecomp.model import Model, StageReport


def skipped(model: Model, stage: str, reason: str) -> Model:
    return model.with_report(StageReport(stage, "skipped", {"reason": reason}))


def not_available(stage: str, option: str) -> ConfigError:
    return ConfigError(f"the {stage} stage has no algorithm in this version of edgecomp ({option} was given)",
                       hint=f"build without {option}; the {stage} algorithms are tracked in their own issue")
