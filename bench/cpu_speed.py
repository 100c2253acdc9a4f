"""Side-by-side CPU latency: edgecomp vs onnxruntime (same ONNX) vs torch eager, fp32 and quantized builds.

    python bench/cpu_speed.py                                          # every zoo model x scheme
    python bench/cpu_speed.py --models minilm-l6,vit-s16 --schemes fp32,w8a8,w4a8
    python bench/cpu_speed.py --table-only                             # README table from the JSON

One JSON per (model, scheme) in bench/results/speed/, each from ``edgecomp build`` (``--quant S
--quant-method rtn`` for quantized schemes: the method changes weights, not the graph) and ``edgecomp bench
--compare onnxruntime,onnxruntime-best,torch``: 2 threads, batch 1, each engine in its own process, rounds
interleaved, p50 over rounds x per-round calls. onnxruntime runs the artifact's own model.onnx twice: with
the graph's numerics (``onnxruntime``) and at its fastest (``onnxruntime-best``: int8-activation
MatMulNBits and its QDQ fusions); the ratio column divides by the faster of the two. torch is the fp32
eager model (edgecomp has no torch form of a quantized graph).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from readme_section import model_scheme_results, replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "speed"
MODELS = ("vit-fmnist", "vit-s16", "minilm-l6", "efficientnet-lite0", "smollm2-135m")
SCHEMES = ("fp32", "w4a16", "w8a8", "w4a8", "w4a4")
ENGINES = ("onnxruntime", "onnxruntime-best", "torch")
BEGIN, END = "<!-- speed-results:begin -->", "<!-- speed-results:end -->"


def edgecomp(*args: str) -> None:
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "edgecomp", *args], check=True, cwd=ROOT)


def run(model: str, scheme: str, build_dir: Path, rounds: int, skip_done: bool) -> None:
    out = RESULTS / f"{model}-{scheme}.json"
    if skip_done and out.exists():
        return
    art = build_dir / "speed" / f"{model}-{scheme}"
    quant = [] if scheme == "fp32" else ["--quant", scheme, "--quant-method", "rtn"]
    edgecomp("build", model, "--target", "x86", *quant, "-o", str(art))
    edgecomp("bench", str(art), "--compare", ",".join(ENGINES), "--rounds", str(rounds), "--json", str(out))
    report = json.loads((art / "report.json").read_text())
    lower = next(s for s in report["stages"] if s.get("stage", s.get("name")) == "lower")
    data = json.loads(out.read_text())
    summary = lower.get("summary", lower)
    data.update(model=model, scheme=scheme, schedules=summary.get("schedules"),
                int_kernels=summary.get("int_kernels"))
    out.write_text(json.dumps(data, indent=2) + "\n")


def table() -> str:
    rows = ["| model | scheme | edgecomp p50 ms | onnxruntime p50 ms | onnxruntime best p50 ms | torch fp32 p50 ms "
            "| edgecomp / best ORT | integer layers |", "|---|---|---|---|---|---|---|---|"]
    found = list(model_scheme_results(RESULTS, MODELS, SCHEMES))
    for model, scheme, d in found:
        r = d["results"]
        p50 = {k: r[k]["p50_ms"] for k in r}
        best = min(p50[k] for k in ("onnxruntime", "onnxruntime-best") if k in p50)
        fused = (d.get("int_kernels") or {}).get("fused", 0)
        cells = {k: f"{p50[k]:.2f}" if k in p50 else "–" for k in ("edgecomp", *ENGINES)}
        rows.append(f"| {model} | {scheme.upper() if scheme != 'fp32' else 'fp32'} | {cells['edgecomp']} | "
                    f"{cells['onnxruntime']} | {cells['onnxruntime-best']} | {cells['torch']} | "
                    f"{p50['edgecomp'] / best:.2f}x | {fused} |")
    prov = ""
    if found:
        p = found[0][2]["provenance"]
        prov = (f"\n\nMeasured on {p['cpu']}, {p['threads']} threads, batch 1, each engine in its own process, "
                f"rounds interleaved, p50 of {p['rounds'] * p['per_round']} calls. Quantized builds use RTN weights.")
    return "\n".join(rows) + prov + "\n\nRegenerate: `python bench/cpu_speed.py` (JSON in `bench/results/speed/`)."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--build-dir", type=Path, default=ROOT / "out")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--skip-done", action="store_true", help="keep (model, scheme) pairs that have a JSON")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.table_only:
        for model in args.models.split(","):
            for scheme in args.schemes.split(","):
                try:
                    run(model.strip(), scheme.strip(), args.build_dir, args.rounds, args.skip_done)
                except subprocess.CalledProcessError:  # the CLI printed why; keep going, list it at the end
                    failed.append(f"{model}-{scheme}")
    if not replace_section(BEGIN, END, table()):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} section")
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
