"""Relax -> scheduled, compiled module.

Order: decompose and fuse (Relax's zero pipeline), apply the shipped MetaSchedule records for the
target, hand-schedule everything else (``cpu_schedule``), then ``tvm.compile``. The result records
which schedule every PrimFunc got, so the report can name anything that ran with a fallback.
A target with the "cuda" capability takes dlight's GPU rules instead (``gpu_schedule``) and compiles its
kernels with nvcc (``edgecomp.tvm.cuda``); its exported library must then pass ``fatbin.check_library``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
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
    # check_library(path of the exported model.so) -> report dict; raises when that library must not ship
    check_library: Callable[[Path], dict] | None = None


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
    if target.supports("cuda"):
        return _compile_cuda(mod, params, target, tgt, system_lib)
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


def _c_identifiers(mod):
    """``mod`` with every parameter of ``main`` renamed to a unique C identifier (``/blocks_0/Constant`` ->
    ``_blocks_0_Constant``). ONNX names reach the kernels' argument lists; TVM's CUDA codegen writes them as
    they are and nvcc rejects the source (LLVM codegen never prints them)."""
    from tvm import relax

    from edgecomp.tvm.frontend import c_identifier

    main = mod["main"]
    taken: set[str] = set()
    renamed = []
    for p in main.params:
        renamed.append(relax.Var(c_identifier(p.name, taken), p.ty))
    bound = main.bind_params(dict(zip(main.params, renamed, strict=True)))
    mod["main"] = relax.Function(renamed, bound.body, bound.ret_ty, bound.is_pure, bound.attrs)
    return mod


def gpu_graph(mod, tgt):
    """The GPU path's graph, fused and lowered to unscheduled PrimFuncs: C-identifier parameter names, then the
    zero pipeline with the int4 decode fused into its matmuls (``gpu_fusion``). Scheduling comes after; the
    result also compiles for a CPU (naive loops), which is how its numerics are tested without a GPU."""
    import tvm
    from tvm import relax

    from edgecomp.tvm import gpu_fusion

    mod = _c_identifiers(mod)  # parameter names become kernel argument names in the CUDA C++ source
    with tgt:
        return tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(), relax.transform.CanonicalizeBindings(),
            relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(), relax.transform.FoldConstant(),
            gpu_fusion.decode_matmul(), relax.transform.FuseOps(), relax.transform.FuseTIR()])(mod)


def _compile_cuda(mod, params: list[np.ndarray], target: Target, tgt, system_lib: bool) -> Compiled:
    """The zero pipeline with int4 decode fused into its matmuls (``gpu_fusion``), dlight-scheduled kernels
    (``gpu_schedule``), compiled by nvcc into a fatbin for the target's arch (``cuda``). No MetaSchedule
    records: there are none for GPUs yet."""
    import tvm

    from edgecomp.errors import ConfigError
    from edgecomp.tvm import cuda, fatbin, gpu_schedule

    if system_lib:
        raise ConfigError(f"{target.name}: a static (system-lib) build of CUDA kernels is not supported",
                          hint="package the shared model.so instead")
    mod, schedules = gpu_schedule.apply(gpu_graph(mod, tgt), tgt)
    # `with tgt`: TVM's nvcc callback reads the arch from Target.current() (notes/tvm-0.27.md §3, trap 2)
    with cuda.build_env(), tgt:
        executable = tvm.compile(mod, target=tgt)
    return Compiled(executable, params, schedules, dict(target.resolved_tvm()),
                    check_library=functools.partial(fatbin.check_library, arch=str(tgt.arch)))
