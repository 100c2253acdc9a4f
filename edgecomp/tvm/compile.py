"""Relax -> scheduled, compiled CPU module.

Order: decompose and fuse (Relax's zero pipeline), apply the shipped MetaSchedule records for the
target, hand-schedule everything else (``cpu_schedule``), then ``tvm.compile``. The result records
which schedule every PrimFunc got, so the report can name anything that ran with a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecomp.resources import data_dir
from edgecomp.targets import Target


@dataclass
class Compiled:
    executable: object  # tvm.runtime.Executable; main(*inputs, *params)
    params: list[np.ndarray]
    schedules: dict[str, str]  # PrimFunc name -> kernel:<name> | tuned | matmul | reduction | gemv | injective | none
    tvm_target: dict
    onnx: object = None  # the folded ONNX this was compiled from (shipped as model.onnx)


def tuning_database(target: Target) -> Path | None:
    """The directory of shipped MetaSchedule records for ``target``, or None."""
    if not target.tuning_database:
        return None
    path = data_dir("kernels") / target.tuning_database
    return path if (path / "database_tuning_record.json").exists() else None


def compile_relax(mod, params: list[np.ndarray], target: Target, use_database: bool = True,
                  threads: int | None = None, system_lib: bool = False) -> Compiled:
    """Schedule and compile ``mod`` for ``target``. ``system_lib``: the kernels register themselves at
    program start-up (found with ``ffi.SystemLib``) instead of being loaded from a shared library, so
    ``export_library("x.tar")`` gives objects an application links statically."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from edgecomp.tvm import cpu_schedule

    tgt = target.tvm_target(threads)
    with tgt:
        mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                        relax.transform.CanonicalizeBindings(),
                                        relax.get_pipeline("zero")])(mod)
        db_dir = tuning_database(target) if use_database else None
        if db_dir is not None:
            db = ms.database.JSONDatabase(str(db_dir / "database_workload.json"),
                                          str(db_dir / "database_tuning_record.json"), allow_missing=False)
            with db:
                mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    mod, schedules = cpu_schedule.apply(mod, tgt)
    executable = relax.build(mod, target=tgt, system_lib=True) if system_lib else tvm.compile(mod, target=tgt)
    return Compiled(executable, params, schedules, dict(target.resolved_tvm()))
