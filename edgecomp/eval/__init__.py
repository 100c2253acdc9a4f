"""Quality tasks on real data: one task per zoo model, each a function registered by name.

A task is ``fn(engine, reference, inputs, limit) -> TaskResult``:

- ``engine``: ``Callable[[Feeds], list[np.ndarray]]`` runs one batch-1 feed (names -> arrays matching
  ``inputs``) and returns the model outputs (the artifact through TVM, or the torch model).
- ``reference``: the same kind of callable for the fp32 torch model, or None. Tasks that compare with
  the reference (agreement) use it; the others compute ``reference_value`` on the same data with it.
- ``inputs``: the model's ``TensorSpec`` tuple (static shapes, e.g. the compiled sequence length).
- ``limit``: evaluate on the first ``limit`` examples only (tests), None for the full set.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgecomp.registry import Registry
from edgecomp.specs import Feeds, TensorSpec

Engine = Callable[[Feeds], list[np.ndarray]]


@dataclass(frozen=True)
class TaskResult:
    task: str
    metric: str  # e.g. "top1", "pearson", "perplexity"
    value: float
    n: int  # examples evaluated
    reference_value: float | None = None  # the fp32 torch model on the same data, when a reference ran
    higher_is_better: bool = True
    details: dict = field(default_factory=dict)  # secondary metrics, e.g. {"wordsim353_spearman": 0.73}


Task = Callable[[Engine, "Engine | None", tuple[TensorSpec, ...], "int | None"], TaskResult]
TASKS: Registry[Task] = Registry("eval task")
_MODULES = ("classification", "photos", "similarity", "perplexity", "depth")
_loaded = False


def register_task(name: str) -> Callable[[Task], Task]:
    return TASKS.register(name)


def get_task(name: str) -> Task:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _MODULES:
            importlib.import_module(f"edgecomp.eval.{mod}")
    return TASKS.get(name)
