"""edgecomp's kernel registry: hand-written TIR kernels that replace whole fused graph patterns.

Imported as ``edgecomp._kernels`` (``pyproject.toml`` maps this directory there, in a wheel and in an
editable install). Each ``Kernel`` says which graph form it replaces (``pattern``), when it may
(``legal(problem, target) -> None | reason``) and how to build it (``build(problem, target) ->
PrimFunc``): a function that is already scheduled (written loop by loop, with the target's dot-product
instruction), so the lower stage marks it scheduled and no rule or tuner touches it. The lower stage
reports every function by the kernel or schedule rule that produced it.

The data beside the code (``cpu/x86/``: MetaSchedule records, when present) is read by
``edgecomp.tvm.compile.tuning_database``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgecomp.registry import Registry


@dataclass(frozen=True)
class Kernel:
    name: str
    pattern: str  # the graph form it replaces, in words
    legal: Callable  # (problem, tvm target) -> None when it applies, else the reason it does not
    build: Callable  # (problem, tvm target) -> tvm.tirx.PrimFunc, already scheduled


KERNELS: Registry[Kernel] = Registry("kernel")


def kernel(name: str) -> Kernel:
    _load()
    return KERNELS.get(name)


def _load() -> None:
    from . import cpu  # noqa: F401  (registers the CPU kernels)
