"""Schedules for GPU targets: dlight's default GPU rules, applied one PrimFunc at a time.

The same rules as ``dl.ApplyDefaultSchedule(Matmul, GEMV, Reduction, GeneralReduction, Fallback)``, in
that order, but each function records the rule that scheduled it (for the lower stage's report), and a
rule that raises on a function is skipped like one that declines it. A GPU kernel cannot run with naive
loops (every loop must be bound to blocks and threads), so a function no rule takes is an error here,
named, rather than a VerifyMemory failure deep inside ``tvm.compile``.
"""

from __future__ import annotations

from edgecomp.errors import UnsupportedOpError


def rules() -> dict:
    """{name: dlight rule}, tried in this order: specific rules first, ``fallback`` binds any loop nest."""
    from tvm.s_tir import dlight as dl

    return {"matmul": dl.gpu.Matmul(), "gemv": dl.gpu.GEMV(), "reduction": dl.gpu.Reduction(),
            "general_reduction": dl.gpu.GeneralReduction(), "fallback": dl.gpu.Fallback()}


def apply(mod, target) -> tuple[object, dict[str, str]]:
    """Schedule every unscheduled PrimFunc of ``mod`` for the GPU ``target`` (a tvm Target).

    Returns the new module and ``{function name: rule}``: ``kernel:<name>`` for a hand-written kernel
    (``edgecomp.kernel`` attribute, kept as written), ``tuned`` for one already scheduled, else the dlight
    rule's name. Raises UnsupportedOpError naming a function no rule can schedule."""
    from edgecomp.tvm.rule_apply import apply_first

    mod, used = apply_first(mod, target, rules())
    unscheduled = [name for name, how in used.items() if how == "none"]
    if unscheduled:
        raise UnsupportedOpError(f"no GPU schedule applies to {unscheduled[0]}",
                                 hint="report the model; dlight's Fallback rule declined this loop nest")
    return mod, used
