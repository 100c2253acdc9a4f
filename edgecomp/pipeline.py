"""The compiler spine: import, then prune -> merge -> quantize -> export -> lower, then write.

Stage order is fixed and checked against each stage's ``REQUIRES`` before anything runs, so a bad
combination (e.g. pruning an ONNX file) fails in a second, not after minutes of work.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from edgecomp import artifact
from edgecomp.config import BuildConfig
from edgecomp.errors import ConfigError
from edgecomp.stages import export, importer, lower, merge, prune, quantize
from edgecomp.targets import Target

STAGES = (prune, merge, quantize, export, lower)


def _check_order(form: str, cfg: BuildConfig) -> None:
    for stage in (prune, merge, quantize):
        stage_cfg = getattr(cfg, stage.NAME)
        if stage_cfg.enabled and form != stage.REQUIRES:
            raise ConfigError(f"the {stage.NAME} stage needs a torch model, but the source is {form}",
                              hint="build from the zoo name, the torch module or the model directory instead")


def build(source, target: Target, out: str | Path, cfg: BuildConfig | None = None, inputs=None,
          calibration=None, progress=None) -> Path:
    """Compile ``source`` for ``target`` into the artifact directory ``out`` (atomically)."""
    cfg = cfg or BuildConfig()
    if target.cross is not None:  # a missing cross compiler (e.g. no Android NDK) fails now, not after import
        from edgecomp.runtime import cross

        cross.require_tools(target.cross)
    if target.supports("cuda"):  # likewise nvcc, which compiles the kernels in the last stage
        from edgecomp.tvm import cuda

        cuda.require_nvcc()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if progress:
        progress("import")
    model = importer.load(source, cfg.calib_samples, cfg.seed, inputs=inputs, calibration=calibration,
                          trust_remote_code=cfg.trust_remote_code)
    timings["import"] = round(time.perf_counter() - t0, 3)
    _check_order(model.form, cfg)
    cfg = align_prune_to_quant(cfg)
    if cfg.prune.budget_ms > 0:
        model, cfg = _search_budget(model, cfg, target, Path(out), timings, progress)
    else:
        model = _compile(model, cfg, target, timings, progress)
    if progress:
        progress("write")
    # NOTE: timings.json is written inside the atomic write, so it cannot time that write itself;
    # rewriting it afterwards would touch the artifact outside the rename.
    timings["total"] = round(time.perf_counter() - t0, 3)
    return artifact.write(model, cfg, target, Path(out), timings)


def align_prune_to_quant(cfg: BuildConfig) -> BuildConfig:
    """``cfg`` with ``prune.multiple`` raised to a multiple of the int4 weight group when a 4-bit weight scheme
    follows pruning: a kept MLP width of e.g. 1488 (a multiple of 8) is divisible by no int4 group, and the
    quantize stage would then refuse the down projection. The smallest auto group (32) is enough for the
    auto choice; an explicit ``quantize.group_size`` must divide the kept widths itself."""
    import math

    from edgecomp.quant.plan import AUTO_GROUPS, SCHEME_BITS

    q = cfg.quantize
    if not (cfg.prune.enabled and q.enabled) or SCHEME_BITS[q.scheme][0] != 4 or q.weight_bits == 8:
        return cfg
    multiple = math.lcm(cfg.prune.multiple, q.group_size or AUTO_GROUPS[-1])
    return dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, multiple=multiple))


def _compile(model, cfg: BuildConfig, target: Target, timings: dict, progress=None):
    """Run every stage on the imported ``model``; stage wall times go into ``timings``."""
    for stage in STAGES:
        if progress:
            progress(stage.NAME)
        t = time.perf_counter()
        model = stage.run(model, getattr(cfg, stage.NAME), target)
        timings[stage.NAME] = round(time.perf_counter() - t, 3)
        if model.reports and model.reports[-1].stage == stage.NAME:
            timings.update(model.reports[-1].timings)
    return model


# A candidate must measure this much under the budget, so the noise of a later `edgecomp bench` (a few
# percent run to run on a quiet machine) does not push the chosen artifact over it.
BUDGET_MARGIN = 0.95
BUDGET_MAX_RATIO = 0.9  # the most the search prunes (config allows < 0.95)
BUDGET_STEPS = 4  # bisection steps after the two ends: the ratio is found to within 0.9 / 2**4 ≈ 0.06


def _search_budget(model, cfg: BuildConfig, target: Target, out: Path, timings: dict, progress=None):
    """The least-pruned build whose measured p50 latency meets ``cfg.prune.budget_ms`` (bisection on
    ``prune.ratio``, every other setting as configured). Every candidate is compiled, written to a scratch
    artifact next to ``out``, timed the way `edgecomp bench` times it (``edgecomp`` engine alone) and
    deleted. Returns (model, cfg) to write."""
    import shutil
    import tempfile

    from edgecomp.bench.measure import BenchPolicy, measure

    if target.runner != "local":
        raise ConfigError(f"a latency budget needs a target that runs on this machine; {target.name} runs under "
                          f"{target.runner}", hint="drop --prune-budget-ms, or build for x86 and prune with --prune")
    budget = cfg.prune.budget_ms
    trials: dict[float, tuple[float, object, dict]] = {}  # ratio -> (p50 ms, compiled model, stage timings)
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}-budget-", dir=out.parent if out.parent.exists() else None))

    def trial(ratio: float) -> float:
        if progress:
            progress(f"prune to {budget} ms: trying ratio {ratio:.3f}")
        c = dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, ratio=ratio))
        t = {}
        built = _compile(model, c, target, t)
        path = artifact.write(built, c, target, scratch / f"r{ratio:.4f}", t)
        p50 = measure(str(path), ["edgecomp"], BenchPolicy(rounds=6))["edgecomp"]["p50_ms"]
        shutil.rmtree(path, ignore_errors=True)
        trials[ratio] = (p50, built, t)
        return p50

    t0 = time.perf_counter()
    try:
        lo, hi = 0.0, BUDGET_MAX_RATIO
        if trial(lo) <= budget * BUDGET_MARGIN:
            hi = lo
        elif trial(hi) > budget * BUDGET_MARGIN:
            best = min(p for p, _, _ in trials.values())
            raise ConfigError(f"{model.name} cannot meet {budget} ms on {target.name}: the best reachable p50 is "
                              f"{best:.3g} ms (pruning {hi:.0%})",
                              hint="raise the budget, or add quantization / token merging to the build")
        else:
            for _ in range(BUDGET_STEPS):
                mid = round((lo + hi) / 2, 4)
                if trial(mid) <= budget * BUDGET_MARGIN:
                    hi = mid
                else:
                    lo = mid
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    timings["prune_budget_search"] = round(time.perf_counter() - t0, 3)
    p50, chosen, chosen_timings = trials[hi]
    timings.update(chosen_timings)
    search = {"budget_ms": budget, "margin": BUDGET_MARGIN, "chosen_ratio": hi, "chosen_p50_ms": p50,
              "trials": [{"ratio": r, "p50_ms": p} for r, (p, _, _) in sorted(trials.items())]}
    reports = tuple(_with_budget(r, search) if r.stage == "prune" else r for r in chosen.reports)
    return chosen.evolve(reports=reports), dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, ratio=hi))


def _with_budget(report, search: dict):
    return dataclasses.replace(report, summary={**report.summary, "budget": search})
