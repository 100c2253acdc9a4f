"""Token merging for transformers (algorithms land in the token-merging issue)."""

from __future__ import annotations

from edgecomp.config import MergeConfig
from edgecomp.model import Model
from edgecomp.stages._skip import not_available, skipped
from edgecomp.targets import Target

NAME, REQUIRES = "merge", "torch"


def run(model: Model, cfg: MergeConfig, target: Target) -> Model:
    if not cfg.enabled:
        return skipped(model, NAME, "merge.r is 0")
    raise not_available(NAME, f"--merge-r {cfg.r}")
