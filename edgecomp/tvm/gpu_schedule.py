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
    from tvm import tirx

    used: dict[str, str] = {}
    updates = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if "edgecomp.kernel" in func.attrs:
            used[gv.name_hint] = f"kernel:{func.attrs['edgecomp.kernel']}"
            continue
        if "tirx.is_scheduled" in func.attrs and int(func.attrs["tirx.is_scheduled"]) == 1:
            used[gv.name_hint] = "tuned"
            continue
        for name, rule in rules().items():
            try:
                with target:
                    sch = rule.apply(func, target, False)
            except (RuntimeError, ValueError, AssertionError, AttributeError, IndexError, TypeError):
                sch = None  # the rule's own analysis rejected this function: try the next rule
            if sch is not None:
                sch = sch[0] if isinstance(sch, list) else sch
                updates[gv] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
                used[gv.name_hint] = name
                break
        else:
            raise UnsupportedOpError(f"no GPU schedule applies to {gv.name_hint}",
                                     hint="report the model; dlight's Fallback rule declined this loop nest")
    for gv, func in updates.items():
        mod[gv] = func
    return mod, used
