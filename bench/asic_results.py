"""Regenerate the README's ASIC-simulator table: each model at FP16 / W8A8 / W4A8 / W4A4 on targets/asic-sim.toml.

    python bench/asic_results.py                                  # every model x configuration
    python bench/asic_results.py --models vit-fmnist --eval-limit 1000
    python bench/asic_results.py --table-only                     # README table from the JSON

The quantized rows are the CLI itself: ``edgecomp build MODEL --quant S --quant-method rtn --target asic-sim``
(RTN: every layer per-token integer; QuartDepth's reconstruction takes minutes per model), ``edgecomp
bench`` (simulated latency / energy / DRAM / utilization from the committed cost model) and ``edgecomp eval``
(quality through the simulator). The FP16 row re-costs the W8A8 artifact's partitions and host graph on the
fp16 datapath (``edgecomp.asic.bench.simulate(..., datapath="fp16")``): cost only; its quality is the fp32
model's (the fp16 datapath is not simulated functionally). One JSON per row in bench/results/asic/.

The artifacts run attention as int8 products on the MMU (``[asic] attention = "int8"``, docs/asic.md). For the
accuracy effect, models with a top-1 task also get onnxruntime's metric on the same n for the artifact's
fake-quant graph (``model.onnx``, int8 attention) and for that graph with the attention fake-quant removed
(``edgecomp.asic.attention.strip_attention``: the quantized model with fp32 attention). W4A4 rows also carry a
cost-only what-if, ``what_if_16bit_activations``: the same programs with activations moved as 16-bit values
(the functional model keeps fp32 between layers, so this is not simulated bit-exactly).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from readme_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "asic"
MODELS = ("vit-s16", "vit-fmnist", "minilm-l6")
SCHEMES = ("w8a8", "w4a8", "w4a4")
BEGIN, END = "<!-- asic-results:begin -->", "<!-- asic-results:end -->"
KEEP = ("latency_ms", "cycles", "throughput_per_s", "energy_uj", "energy_breakdown_uj", "dram_bytes", "gemm_macs",
        "mmu_utilization", "busy_cycles", "cycles_by_op", "cycles_by_bound", "compute_floor_cycles", "area_mm2",
        "config", "host_ops")


def edgecomp(*args: str) -> None:
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "edgecomp", *args], check=True, cwd=ROOT)


def summary(sim: dict) -> dict:
    out = {k: sim[k] for k in KEEP}
    out["by_unit_ms"] = {k: v / (sim["config"]["clock_ghz"] * 1e6) for k, v in sim["busy_cycles"].items()}
    return out


def quality(model: str, art: Path, limit: int | None, fp16: bool = False) -> dict:
    """The metric of the quantized model through the simulator (fp16: the fp32 model's, torch)."""
    from edgecomp import api

    if model == "vit-s16":  # random weights: no accuracy exists; report how far the logits move instead
        return logits_error(art, fp16)
    if fp16:
        ev = api.evaluate(model, limit=limit)
        return {"metric": ev["metric"], "value": ev["value"], "n": ev["n"], "source": "fp32 torch model"}
    out = RESULTS / f"{art.name}-eval.json"
    edgecomp("eval", str(art), "--no-reference", "--json", str(out), *(["--limit", str(limit)] if limit else []))
    ev = json.loads(out.read_text())
    out.unlink()
    rec = {"metric": ev["metric"], "value": ev["value"], "n": ev["n"], "source": "edgecomp eval (simulator)"}
    if ev["metric"] == "top1":
        rec.update(onnxruntime_metrics(art, limit))
    return rec


def onnxruntime_metrics(art: Path, limit: int | None) -> dict:
    """onnxruntime's metric for the artifact's fake-quant graph and for it with fp32 attention (same data)."""
    import onnx

    from edgecomp import api, onnx_tools
    from edgecomp.artifact import Artifact
    from edgecomp.asic.attention import strip_attention

    a = Artifact.open(art)
    graph = onnx.load(str(art / "model.onnx"))
    out = {}
    for key, g in (("fake_quant_graph", graph), ("fp32_attention", strip_attention(graph))):
        sess = onnx_tools.session(g)

        def engine(feeds, sess=sess):
            return onnx_tools.run(sess, {s.name: s.check(feeds[s.name]) for s in a.inputs})

        ev = api._evaluate(engine, None, a.inputs, a.name, a.manifest["task"], limit, "onnxruntime")
        out[key] = {"value": ev["value"], "n": ev["n"]}
    return out


def logits_error(art: Path, fp16: bool) -> dict:
    import numpy as np

    from edgecomp import api
    from edgecomp.artifact import Artifact
    from edgecomp.runtime.engines import TorchEngine

    a = Artifact.open(art)
    rng = np.random.default_rng(0)
    feeds = [a.example_inputs()] + [{"pixels": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}]
    ref = TorchEngine(a, 2)
    errs = []
    for f in feeds:
        r = ref(f)[0].astype(np.float64)
        if fp16:  # what fp16 weights and activations do to the fp32 model's output is not simulated
            return {"metric": "logits rel. L2 vs fp32", "value": None, "n": 0, "source": "not simulated"}
        y = api.run(art, f)["logits"].astype(np.float64)
        errs.append(float(np.linalg.norm(y - r) / np.linalg.norm(r)))
    return {"metric": "logits rel. L2 vs fp32", "value": max(errs), "n": len(feeds),
            "source": "simulator vs fp32 torch (random weights: no accuracy)"}


def run(model: str, scheme: str, build_dir: Path, limit: int | None, skip_done: bool) -> None:
    from edgecomp.artifact import Artifact
    from edgecomp.asic.bench import simulate
    from edgecomp.targets import load_target

    art = build_dir / f"{model}-{scheme}"
    rows = [(scheme, "auto")] + ([("fp16", "fp16")] if scheme == "w8a8" else [])
    if skip_done and all((RESULTS / f"{model}-{c}.json").exists() for c, _ in rows):
        return
    stale = (art / "manifest.json").exists() and Artifact.open(art).manifest["target"]["asic"] != \
        load_target("asic-sim").asic
    if stale:
        shutil.rmtree(art)  # built for another accelerator configuration (e.g. before attention ran on the MMU)
    if not (art / "manifest.json").exists():
        edgecomp("build", model, "--quant", scheme, "--quant-method", "rtn", "--target", "asic-sim", "-o", str(art))
    a = Artifact.open(art)
    lower = next(s for s in a.report()["stages"] if s["stage"] == "lower")
    for config, datapath in rows:
        if datapath == "auto":
            bench_json = RESULTS / f"{model}-{config}-bench.json"
            edgecomp("bench", str(art), "--json", str(bench_json))
            sim = json.loads(bench_json.read_text())["simulated"]
            bench_json.unlink()
        else:
            sim = simulate(art, a.example_inputs(), a.manifest["target"]["asic"], datapath)
        rec = {"model": model, "config": config, "built_as": f"{scheme} rtn", "artifact": str(art),
               "simulated": summary(sim), "quality": quality(model, art, limit, fp16=config == "fp16"),
               "attention": lower.get("attention", {"mode": "fp32", "quantized": 0}),
               "bit_exact_vs_integer_reference": lower["bit_exact_vs_reference"] if config != "fp16" else None,
               "sim_vs_onnxruntime_rel_l2": lower["vs_onnxruntime_rel_l2"] if config != "fp16" else None,
               "command": f"python bench/asic_results.py --models {model}"}
        if config == "w4a4":
            rec["what_if_16bit_activations"] = summary(simulate(art, a.example_inputs(), a.manifest["target"]["asic"],
                                                                act_bits=16))
        (RESULTS / f"{model}-{config}.json").write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
        print(f"{model} {config}: {sim['latency_ms']:.3f} ms (simulated), {sim['energy_uj']:.1f} uJ", flush=True)


CONFIGS = ("fp16", "w8a8", "w4a8", "w4a4")


def table() -> str:
    lines = ["| model | config | latency ms | vs FP16 | energy uJ | DRAM MB | MMU util | MMU / VCU / DMA busy ms "
             "| time bound by DMA / MMU / VCU | area mm² | quality |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        recs = {c: json.loads(p.read_text()) for c in CONFIGS if (p := RESULTS / f"{model}-{c}.json").exists()}
        base = recs.get("fp16", {}).get("simulated", {}).get("latency_ms")
        for c, r in recs.items():
            s, q = r["simulated"], r["quality"]
            u = s["by_unit_ms"]
            fp32 = ", fp32 model" if c == "fp16" else ""
            qv = "–" if q["value"] is None else f"{q['metric']} {q['value']:.4g} (n={q['n']}{fp32})"
            if "fp32_attention" in q:
                qv += f"; fp32 attention {q['fp32_attention']['value']:.4g}"
            b = s.get("cycles_by_bound")
            bound = " / ".join(f"{b[k] / s['cycles']:.0%}" for k in ("dma", "mmu", "vcu")) if b else "–"
            speed = f"{base / s['latency_ms']:.2f}x" if base else "–"
            stale = "†" if "attention" not in r else ""  # a record from before attention ran on the MMU
            lines.append(f"| {model} | {c.upper()}{stale} | {s['latency_ms']:.3f} | {speed} | {s['energy_uj']:.1f} | "
                         f"{s['dram_bytes'] / 1e6:.2f} | {s['mmu_utilization']:.0%} | "
                         f"{u['mmu']:.3f} / {u['vcu']:.3f} / {u['dma']:.3f} | {bound} | {s['area_mm2']['total']:.2f} | "
                         f"{qv} |")
    note = "Regenerate: `python bench/asic_results.py` (one JSON per row in bench/results/asic/)."
    if any("attention" not in json.loads(p.read_text()) for p in RESULTS.glob("*-*.json")):
        note += ("\n\n† recorded before attention ran on the MMU (fp32 attention on the VCU, the older cost model); "
                 "not comparable with the other rows until regenerated.")
    return "\n".join(lines) + "\n\n" + note + "\n"


DOC = ROOT / "docs" / "asic.md"
DOC_BEGIN, DOC_END = "<!-- asic-breakdown:begin -->", "<!-- asic-breakdown:end -->"
LAYOUT_OPS = ("Transpose", "Concat", "Slice", "Split")


def breakdown() -> str:
    """docs/asic.md's table: where each configuration's time goes (ms), from the same JSON."""
    lines = ["| model | config | latency ms | vs FP16 | weight GEMMs | attention QKᵀ + P·V | VCU ops | layout copies "
             "| bound by DMA / MMU / VCU | no-DMA floor (vs FP16's) | W4A4 with 16-bit activations (what-if) |",
             "|" + "---|" * 11]
    for model in MODELS:
        recs = {c: json.loads(p.read_text()) for c in CONFIGS if (p := RESULTS / f"{model}-{c}.json").exists()}
        base = recs.get("fp16", {}).get("simulated", {}).get("latency_ms")
        base_floor = recs.get("fp16", {}).get("simulated", {}).get("compute_floor_cycles")
        for c, r in recs.items():
            s = r["simulated"]
            ms = 1e-6 / s["config"]["clock_ghz"]
            ops = s["cycles_by_op"]
            gemm, mm = ops.get("gemm", 0.0), ops.get("matmul", 0.0) + ops.get("MatMul", 0.0)
            layout = sum(ops.get(k, 0.0) for k in LAYOUT_OPS)
            vcu = s["cycles"] - gemm - mm - layout
            b = s.get("cycles_by_bound", {})
            bound = " / ".join(f"{b[k] * ms:.2f}" for k in ("dma", "mmu", "vcu")) if b else "–"
            fl = s.get("compute_floor_cycles")
            floor = f"{fl * ms:.3f} ({base_floor / fl:.2f}x)" if fl and base_floor else "–"
            w = r.get("what_if_16bit_activations")
            what = f"{w['latency_ms']:.3f} ms, {base / w['latency_ms']:.2f}x" if w and base else "–"
            speed = f"{base / s['latency_ms']:.2f}x" if base else "–"
            lines.append(f"| {model} | {c.upper()} | {s['latency_ms']:.3f} | {speed} | {gemm * ms:.3f} | {mm * ms:.3f} "
                         f"| {vcu * ms:.3f} | {layout * ms:.3f} | {bound} | {floor} | {what} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--build-dir", default=str(ROOT / "out" / "asic"))
    ap.add_argument("--eval-limit", type=int, default=1000, help="examples per eval (the fmnist test set is 10000)")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--skip-done", action="store_true")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for model in args.models.split(","):
            for scheme in args.schemes.split(","):
                run(model, scheme, Path(args.build_dir), args.eval_limit, args.skip_done)
    text = table()
    print(text)
    replace_section(BEGIN, END, text)
    replace_section(DOC_BEGIN, DOC_END, breakdown(), DOC)


if __name__ == "__main__":
    main()
