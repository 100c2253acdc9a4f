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
          progress=None, stats=None, baseline: str | Path | None = None) -> dict:
    """Latency of the artifact and of the same model in other engines on this machine: the JSON of
    `edgecomp bench` (samples, bootstrap CIs, ratios to edgecomp with warnings, provenance).

    ``baseline``: another artifact of the same inputs (e.g. the uncompressed build), timed with the same engines
    in the same interleaved rounds as ``<engine>@baseline``; its ratio to edgecomp is the speed-up, with a
    confidence interval (two separate runs would put machine drift into the ratio)."""
    from edgecomp.artifact import Artifact
    from edgecomp.bench import provenance as prov
    from edgecomp.bench.measure import BASELINE, BenchPolicy, measure_samples
    from edgecomp.bench.measure import provenance as local_provenance
    from edgecomp.bench.provenance import artifact_record
    from edgecomp.bench.records import engines_record
    from edgecomp.bench.stats import StatsPolicy
    from edgecomp.runtime.engines import ENGINES

    policy, stats = policy or BenchPolicy(), stats or StatsPolicy()
    art = Artifact.open(artifact)
    if art.runner == "sim":  # the simulated accelerator reports its cycle model, not wall-clock time
        from edgecomp.asic.bench import bench_json

        return bench_json(art)
    engines = ["edgecomp", *[c for c in compare if c != "edgecomp"]]
    for e in engines:
        ENGINES.get(e)
    base = None
    if baseline is not None:
        base = Artifact.open(baseline)
        if base.manifest["inputs"] != art.manifest["inputs"] or base.runner != "local":
            raise ConfigError(f"baseline {base.path} does not take the inputs of {art.path} on this machine",
                              hint="compare builds of the same model for a local target (e.g. without --merge-r)")
        engines += [f"{e}{BASELINE}" for e in engines]
    before = prov.machine()
    samples = measure_samples(str(art.path), engines, policy, progress, str(base.path) if base else None)
    record = engines_record(art, "local", samples, local_provenance(policy, before), stats)
    if base is not None:
        record["provenance"]["baseline"] = artifact_record(base)
    return record


def bench_remote(artifact: str | Path, devices: list[str], policy=None, progress=None, stats=None,
                 timeout_s: float = 600.0) -> dict:
    """Latency of the artifact on remote devices (``rpc://HOST:PORT/KEY``), one lease per device, in
    parallel. One device: the JSON of a local run with ``device`` set to its URL; several: a record with
    ``devices`` by key and ratios between devices."""
    from edgecomp.artifact import Artifact
    from edgecomp.bench import provenance as prov
    from edgecomp.bench.measure import BenchPolicy
    from edgecomp.bench.records import engines_record, farm_record
    from edgecomp.bench.remote import measure_devices, remote_provenance
    from edgecomp.bench.stats import StatsPolicy
    from edgecomp.bench.tracker import Device

    policy, stats = policy or BenchPolicy(), stats or StatsPolicy()
    devs = [Device.parse(d) for d in devices]
    if len({d.url for d in devs}) != len(devs):
        raise ConfigError("the same device is named twice", hint="one lease per device: list each key once")
    art = Artifact.open(artifact)
    if "model.so" not in art.manifest["files"]:
        raise ConfigError(f"{art.path} has no model.so to upload (target {art.manifest['target']['name']})",
                          hint="remote devices run TVM libraries: build for the device's target (x86, arm64)")
    if "cuda" in art.manifest["target"].get("capabilities", []):  # the RPC worker runs models on the CPU device
        raise ConfigError(f"{art.path} has CUDA kernels; remote benchmarking runs models on the device's CPU only",
                          hint="time it on the Jetson itself (README: Jetson Orin)")
    client = prov.machine()
    raw = measure_devices(str(art.path), devs, policy, timeout_s, progress)
    records = {d.key: engines_record(art, d.url, {"edgecomp": raw[d.url]["samples_ms"]},
                                     remote_provenance(raw[d.url], d, policy), stats) for d in devs}
    for d in devs:
        records[d.key]["outputs"] = raw[d.url]["outputs"]
        records[d.key]["output_check"] = raw[d.url]["output_check"]
    if len(devs) == 1:
        rec = records[devs[0].key]
        rec["provenance"]["client"] = client
        return rec
    trackers = sorted({str(d.tracker) for d in devs})
    return farm_record(art, ",".join(trackers), records, {d.key: raw[d.url]["samples_ms"] for d in devs},
                       client, stats)


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


def evaluate_module(module, name: str, inputs, task: str | None, limit: int | None = None,
                    reference=None) -> dict:
    """Quality of a torch ``module`` (taking ``inputs`` positionally) on ``task``: the JSON of `edgecomp eval`
    with engine "torch"; ``reference``: a torch module run as the fp32 reference (agreement tasks need it),
    else no reference run."""

    def engine(m):
        def run(feeds):
            import torch

            with torch.no_grad():
                out = m(*(torch.from_numpy(s.check(feeds[s.name])) for s in inputs))
            return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

        return run

    return _evaluate(engine(module), None if reference is None else engine(reference), inputs, name, task, limit,
                     "torch")


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

