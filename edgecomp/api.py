"""The Python API behind every CLI command: build, run, bench, evaluate."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecomp.config import BuildConfig
from edgecomp.errors import ConfigError, InputError
from edgecomp.specs import Feeds
from edgecomp.targets import Target, load_target


def build(source, target: str | Target = "x86", out: str | Path = "build", cfg: BuildConfig | None = None,
          inputs=None, calibration=None, progress=None) -> Path:
    """Compile a zoo name, ONNX file, model directory or torch module into an artifact directory."""
    from edgecomp import pipeline

    tgt = target if isinstance(target, Target) else load_target(target)
    return pipeline.build(source, tgt, out, cfg, inputs=inputs, calibration=calibration, progress=progress)


def run(artifact: str | Path, feeds: Feeds | None = None) -> dict[str, np.ndarray]:
    """Run an artifact once; ``feeds`` defaults to its example inputs. Returns outputs by name."""
    from edgecomp.artifact import Artifact

    art = Artifact.open(artifact)
    feeds = art.example_inputs() if feeds is None else feeds
    missing = [s.name for s in art.inputs if s.name not in feeds]
    extra = sorted(set(feeds) - {s.name for s in art.inputs})
    if missing or extra:
        raise InputError(f"inputs do not match the model: missing {missing}, unexpected {extra}",
                         hint="expected " + ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in art.inputs))
    outs = art.load_runner()(feeds)
    return dict(zip(art.outputs, outs, strict=True))


def bench(artifact: str | Path, compare: tuple[str, ...] = ("onnxruntime", "torch"), policy=None,
          progress=None) -> dict:
    """Latency of the artifact and of the same model in other engines; the JSON of `edgecomp bench`."""
    from edgecomp.artifact import Artifact, file_sha256
    from edgecomp.bench.measure import BenchPolicy, measure, provenance

    policy = policy or BenchPolicy()
    art = Artifact.open(artifact)
    engines = ["edgecomp", *[c for c in compare if c != "edgecomp"]]
    from edgecomp.runtime.engines import ENGINES

    for e in engines:
        ENGINES.get(e)
    results = measure(str(art.path), engines, policy, progress)
    prov = provenance(policy)
    prov["artifact_manifest_sha256"] = file_sha256(art.path / "manifest.json")
    prov["toolchain"] = art.manifest["toolchain"]
    return {"model": art.name, "target": art.manifest["target"]["name"], "device": "local", "batch": 1,
            "inputs": art.manifest["inputs"], "results": results, "provenance": prov}


def evaluate(model: str | Path, task: str | None = None, limit: int | None = None, reference: bool = True) -> dict:
    """Quality of an artifact (TVM) or a zoo model (torch) on its task's real data."""
    path = Path(model)
    if not (path / "manifest.json").exists():
        from edgecomp import zoo

        entry = zoo.get(str(model))
        return evaluate_module(entry.load(), entry.name, entry.inputs, task or entry.task, limit)
    from edgecomp.artifact import Artifact
    from edgecomp.runtime.engines import TorchEngine, TVMEngine

    art = Artifact.open(path)
    ref_engine = TorchEngine(art, 2) if reference and art.manifest["source"]["kind"] in ("zoo", "hf") else None
    return _evaluate(TVMEngine(art, 2), ref_engine, art.inputs, art.name, task or art.manifest.get("task"),
                     limit, "edgecomp")


def evaluate_module(module, name: str, inputs, task: str | None, limit: int | None = None) -> dict:
    """Quality of a torch ``module`` (taking ``inputs`` positionally) on ``task``: the JSON of `edgecomp eval`
    with engine "torch" and no reference run."""

    def engine(feeds):
        import torch

        with torch.no_grad():
            out = module(*(torch.from_numpy(s.check(feeds[s.name])) for s in inputs))
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

    return _evaluate(engine, None, inputs, name, task, limit, "torch")


def _evaluate(engine, ref_engine, inputs, name: str, task: str | None, limit: int | None, engine_name: str) -> dict:
    from edgecomp.eval import get_task

    if not task:
        raise ConfigError(f"{name} has no evaluation task", hint="pass --task NAME")
    res = get_task(task)(engine, ref_engine, inputs, limit)
    out = {"model": name, "task": res.task, "metric": res.metric, "value": res.value, "n": res.n,
           "engine": engine_name, "higher_is_better": res.higher_is_better, "details": res.details}
    if res.reference_value is not None:
        out["reference"] = {"value": res.reference_value, "source": "fp32 torch model, same data, same run"}
    return out

