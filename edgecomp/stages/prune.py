"""Structured pruning of attention heads and MLP channels (algorithms land in the pruning issue)."""

from __future__ import annotations

from edgecomp.config import PruneConfig
from edgecomp.model import Model
from edgecomp.stages._skip import not_available, skipped
from edgecomp.targets import Target

NAME, REQUIRES = "prune", "torch"


def run(model: Model, cfg: PruneConfig, target: Target) -> Model:
    if not cfg.enabled:
        return skipped(model, NAME, "prune.ratio is 0")
    raise not_available(NAME, f"--prune {cfg.ratio}")
