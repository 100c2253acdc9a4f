"""The one record every stage receives and returns.

``form`` says what ``payload`` is: ``"torch"`` (an ``nn.Module`` taking ``inputs`` positionally),
``"onnx"`` (an ``onnx.ModelProto``) or ``"compiled"`` (a ``edgecomp.tvm.compile.Compiled``).
Only ``export`` turns torch into onnx and only ``lower`` turns onnx into compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from edgecomp.specs import Feeds, TensorSpec


@dataclass(frozen=True)
class StageReport:
    """What a stage did: ``status`` is "done" or "skipped"; ``summary`` holds deterministic facts
    (parameter counts, errors vs the reference, schedules); wall time is kept apart in ``seconds``."""

    stage: str
    status: str
    summary: dict = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict = field(default_factory=dict)  # extra wall times for timings.json (never in report.json)

    def to_dict(self) -> dict:
        return {"stage": self.stage, "status": self.status, **self.summary}


@dataclass(frozen=True)
class Model:
    name: str
    source: dict  # {"kind": zoo | onnx | hf | torch, "ref": ..., "sha256": ...}
    form: str  # torch | onnx | compiled
    payload: Any
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    calibration: tuple[Feeds, ...]  # from train splits / held-apart data, never eval data
    task: str | None = None  # eval task name, None when no quality metric exists
    export_tolerance: float = 1e-4
    reports: tuple[StageReport, ...] = ()
    notes: tuple[str, ...] = ()  # honest caveats carried into the report (e.g. synthetic calibration)
    quantized: bool = False  # the payload holds fake-quant layers (export checks bit-level rounding ties)
    # n -> n feeds from the calibration source that are not calibration feeds (None: the source has no more)
    held_out: Callable[[int], tuple[Feeds, ...]] | None = None

    def evolve(self, **changes) -> "Model":
        return replace(self, **changes)

    def with_report(self, report: StageReport, **changes) -> "Model":
        return replace(self, reports=self.reports + (report,), **changes)
