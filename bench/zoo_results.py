"""Regenerate the README's zoo results table: build, bench and eval every zoo model (fp32, x86).

    python bench/zoo_results.py                 # build + bench + eval everything, then rewrite the table
    python bench/zoo_results.py --models vit-fmnist,minilm-l6
    python bench/zoo_results.py --table-only    # rewrite the README table from bench/results/*.json

Each step is the CLI itself (``edgecomp build / bench / eval``), so the JSON under bench/results/
is exactly what a user gets; the table records the command that produced each file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from readme_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MODELS = ("vit-fmnist", "vit-s16", "minilm-l6", "efficientnet-lite0", "smollm2-135m")
BEGIN, END = "<!-- zoo-results:begin -->", "<!-- zoo-results:end -->"


def edgecomp(*args: str) -> None:
    cmd = [sys.executable, "-m", "edgecomp", *args]
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def measure(model: str, build_dir: Path, reuse: bool) -> None:
    art = build_dir / model
    if not (reuse and (art / "manifest.json").exists()):
        edgecomp("build", model, "--target", "x86", "-o", str(art))
    edgecomp("bench", str(art), "--compare", "onnxruntime,torch", "--json", str(RESULTS / f"{model}-bench.json"))
    if model != "vit-s16":  # seeded random weights: no quality metric
        edgecomp("eval", str(art), "--json", str(RESULTS / f"{model}-eval.json"))


def table() -> str:
    rows = ["| model | edgecomp p50 ms | onnxruntime p50 ms | torch p50 ms | edgecomp / ORT | metric | edgecomp "
            "(TVM) | fp32 torch |", "|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        bench_file = RESULTS / f"{model}-bench.json"
        if not bench_file.exists():
            continue
        b = json.loads(bench_file.read_text())["results"]
        e_file = RESULTS / f"{model}-eval.json"
        if e_file.exists():
            e = json.loads(e_file.read_text())
            ref = e.get("reference", {}).get("value")
            quality = (f"{e['task']} {e['metric']}", f"{e['value']:.4f}", f"{ref:.4f}" if ref is not None else "–")
        else:
            quality = ("random weights: none", "–", "–")
        ort, tvm = b.get("onnxruntime", {}).get("p50_ms"), b["edgecomp"]["p50_ms"]
        torch_ms = b.get("torch", {}).get("p50_ms")
        rows.append(f"| {model} | {tvm:.2f} | {ort:.2f} | {torch_ms:.2f} | {tvm / ort:.2f}x | "
                    + " | ".join(quality) + " |")
    cpu = ""
    any_bench = sorted(RESULTS.glob("*-bench.json"))
    if any_bench:
        p = json.loads(any_bench[0].read_text())["provenance"]
        cpu = f"\n\nMeasured on {p['cpu']}, {p['threads']} threads, batch 1, each engine in its own process."
    return "\n".join(rows) + cpu + "\n\nRegenerate: `python bench/zoo_results.py` (JSON in `bench/results/`)."


def write_readme() -> None:
    if not replace_section(BEGIN, END, table()):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} section")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--build-dir", type=Path, default=ROOT / "out")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--reuse-builds", action="store_true", help="keep artifacts already under --build-dir")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for model in args.models.split(","):
            measure(model.strip(), args.build_dir, args.reuse_builds)
    write_readme()


if __name__ == "__main__":
    main()
