"""Scheduling a module function by function: the first rule of an ordered set that takes each PrimFunc.

Shared by the CPU (``cpu_schedule``) and GPU (``gpu_schedule``) paths, which differ only in their rules and
in what an unscheduled function means (naive loops on a CPU, an error on a GPU).
"""

from __future__ import annotations


def apply_first(mod, target, rules: dict) -> tuple[object, dict[str, str]]:
    """Schedule every unscheduled PrimFunc of ``mod`` with the first of ``rules`` ({name: dlight-style rule},
    tried in order) that applies; a rule that raises on a function is skipped like one that declines it.

    Returns the new module and ``{function name: how}``: ``kernel:<name>`` for a registry kernel
    (``edgecomp.kernel`` attribute, kept as written), ``tuned`` for one already scheduled, the rule's name,
    or ``none`` when no rule applied (the function is left as it was)."""
    from tvm import tirx

    used: dict[str, str] = {}
    updates = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        if "edgecomp.kernel" in func.attrs:  # a registry kernel, scheduled as written
            used[gv.name_hint] = f"kernel:{func.attrs['edgecomp.kernel']}"
            continue
        if "tirx.is_scheduled" in func.attrs and int(func.attrs["tirx.is_scheduled"]) == 1:
            used[gv.name_hint] = "tuned"
            continue
        used[gv.name_hint] = "none"
        for name, rule in rules.items():
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
    for gv, func in updates.items():
        mod[gv] = func
    return mod, used
