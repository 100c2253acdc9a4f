"""Regenerate the README's quantization table: build + eval zoo models at each scheme and method (x86).

    python bench/quant_results.py --models vit-fmnist                      # every scheme x method
    python bench/quant_results.py --models minilm-l6 --schemes w4a8,w4a4 --methods rtn,quartdepth
    python bench/quant_results.py --table-only                            # README table from the JSON

Each run is the CLI itself (``edgecomp build --quant S --quant-method M`` then ``edgecomp eval``); one JSON
per run lands in bench/results/quant/, with the artifact's on-disk sizes next to the fp32 build's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from readme_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "quant"
MODELS = ("vit-fmnist", "minilm-l6", "efficientnet-lite0", "smollm2-135m")
SCHEMES = ("w4a16", "w8a8", "w4a8", "w4a4")
METHODS = ("rtn", "gptq", "quartdepth")
DEPLOYED = ("model.so", "params.bin")  # what the runtime loads; model.onnx is shipped for reference
BEGIN, END = "<!-- quant-results:begin -->", "<!-- quant-results:end -->"


def edgecomp(*args: str) -> None:
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "edgecomp", *args], check=True, cwd=ROOT)


def sizes(art: Path) -> dict:
    files = json.loads((art / "manifest.json").read_text())["files"]
    return {"deployed_bytes": sum(files[f]["bytes"] for f in DEPLOYED if f in files),
            "onnx_bytes": files["model.onnx"]["bytes"]}


def fp32_reference(model: str, build_dir: Path) -> dict:
    path = RESULTS / f"{model}-fp32.json"
    if path.exists():
        return json.loads(path.read_text())
    art = build_dir / model
    if not (art / "manifest.json").exists():
        edgecomp("build", model, "--target", "x86", "-o", str(art))
    edgecomp("eval", str(art), "--json", str(RESULTS / f"{model}-fp32-eval.json"))
    ev = json.loads((RESULTS / f"{model}-fp32-eval.json").read_text())
    ref = {"model": model, "metric": ev["metric"], "value": ev["value"], "higher_is_better": ev["higher_is_better"],
           **sizes(art)}
    path.write_text(json.dumps(ref, indent=2) + "\n")
    return ref


def run(model: str, scheme: str, method: str, build_dir: Path, extra: list[str], skip_done: bool) -> None:
    name = f"{model}-{scheme}-{method}"
    art = build_dir / "quant" / name
    if skip_done and (RESULTS / f"{name}.json").exists():
        return
    fp = fp32_reference(model, build_dir)
    sets = [a for s in extra for a in ("--set", s)]
    edgecomp("build", model, "--target", "x86", "--quant", scheme, "--quant-method", method, *sets, "-o", str(art))
    # agreement metrics (efficientnet-lite0: top-1 agreement with fp32) need the fp32 reference in the same run;
    # so does the embedders' fidelity (cosine to the fp32 embeddings), which Lee-50's correlation cannot replace
    no_ref = [] if fp["metric"].endswith("agreement") or fp["metric"] == "pearson" else ["--no-reference"]
    edgecomp("eval", str(art), *no_ref, "--json", str(RESULTS / f"{name}-eval.json"))
    ev = json.loads((RESULTS / f"{name}-eval.json").read_text())
    report = {s["stage"]: s for s in json.loads((art / "report.json").read_text())["stages"]}
    timings = json.loads((art / "timings.json").read_text())
    q = report["quantize"]
    out = {"model": model, "scheme": scheme, "method": method, "recipe_overrides": extra,
           "metric": ev["metric"], "value": ev["value"], "fp32_value": fp["value"],
           "higher_is_better": ev["higher_is_better"], **sizes(art),
           "fp32_deployed_bytes": fp["deployed_bytes"], "fp32_onnx_bytes": fp["onnx_bytes"],
           "calibration_samples": q["calibration"]["samples"], "quantize_seconds": timings.get("quantize"),
           "shipped_grid_layers": shipped_layers(q),
           # the export / lowering checks' tolerance: distance from fp32, and on which feeds it was measured
           "output_rel_l2_vs_fp32": q["output_rel_l2_vs_fp32"], "noise_measured_on": q.get("noise_measured_on"),
           "worst_layers": q["worst_layers"]}
    if "embedding_cos_vs_fp32_mean" in ev.get("details", {}):
        d = ev["details"]
        out["fidelity"] = {"embedding_cos_vs_fp32_mean": d["embedding_cos_vs_fp32_mean"],
                           "embedding_cos_vs_fp32_min": d["embedding_cos_vs_fp32_min"], "texts": d["texts"]}
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")


def shipped_layers(quantize_report: dict) -> int:
    """Layers (and tables) that kept the checkpoint's own grid (quantize.shipped_grid)."""
    # a table kept on its shipped grid is re-quantized losslessly: infinite SQNR, reported as None (an int8
    # table that W8A8 quantizes afresh has a finite one)
    return sum(1 for lay in quantize_report["per_layer"]
               if lay.get("shipped_group") or (lay.get("kind") == "embedding" and lay.get("w_bits") == 8
                                               and lay.get("weight_sqnr_db") is None))


def table() -> str:
    runs = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))
            if not p.name.endswith(("-eval.json", "-fp32.json"))]
    runs = [r for r in runs if "value" in r]  # other records here (e.g. a lowering check) are no table rows
    if not runs:
        return "(no quantization results yet)"
    rows = ["| model | scheme | metric (fp32) | RTN | GPTQ | QuartDepth | deployed size vs fp32 | ONNX size vs fp32 |",
            "|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        for scheme in SCHEMES:
            cell = {r["method"]: r for r in runs if r["model"] == model and r["scheme"] == scheme}
            if not cell:
                continue
            any_run = next(iter(cell.values()))
            vals = [f"{cell[m]['value']:.4f}" if m in cell else "–" for m in METHODS]
            sized = cell.get("rtn", any_run)  # RTN: the plain storage format, and the cheapest rebuild
            dep = sized["fp32_deployed_bytes"] / sized["deployed_bytes"]
            onx = sized["fp32_onnx_bytes"] / sized["onnx_bytes"]
            rows.append(f"| {model} | {scheme.upper()} | {any_run['metric']} ({any_run['fp32_value']:.4f}) | "
                        + " | ".join(vals) + f" | {dep:.1f}x smaller | {onx:.1f}x smaller |")
    used: dict[str, list[str]] = {}
    for r in runs:
        if r["recipe_overrides"]:
            run = f"{r['model']} {r['scheme'].upper()} {r['method']}"
            used.setdefault(" ".join(r["recipe_overrides"]), []).append(run)
    # a set used by a few runs only names them
    sets = [f"`{k}`" + (f" ({', '.join(v)})" if len(v) <= 3 else "") for k, v in sorted(used.items())]
    note = f"\n\nRecipe overrides used: {', '.join(sets)}." if sets else ""
    shipped = sorted({f"{r['model']} {r['scheme'].upper()}" for r in runs if r.get("shipped_grid_layers")})
    if shipped:
        note += (f" {', '.join(shipped)}: layers that lie on the checkpoint's shipped grid keep it (README: Shipped "
                 "grids; `shipped_grid_layers` in each JSON counts them), so where every weight does (4-bit "
                 "schemes) the row measures activation rounding and its size is that of the shipped grid; an 8-bit "
                 "scheme keeps only the int8 vocabulary table's grid and re-rounds the 4-bit weights to int8.")
    note += (" Sizes are the RTN build's against the fp32 build of the same edgecomp version (deployed = `model.so` + "
             "`params.bin`, what the runtime loads); a QuartDepth build with LogNP-polished layers also stores "
             "their polish factors, and each run's JSON holds its own size.")
    return ("\n".join(rows) + note + fidelity_table(runs) + "\n\nRegenerate: `python bench/quant_results.py` (one JSON "
            "per run in `bench/results/quant/`; 32 calibration samples from train / held-apart data).")


def fidelity_table(runs: list[dict]) -> str:
    """Embedders: cosine of each text's embedding to the fp32 model's (mean / min), by scheme and method."""
    runs = [r for r in runs if "fidelity" in r]
    if not runs:
        return ""
    rows = ["| model | scheme | RTN | GPTQ | QuartDepth |", "|---|---|---|---|---|"]
    for model in MODELS:
        for scheme in SCHEMES:
            cell = {r["method"]: r["fidelity"] for r in runs if r["model"] == model and r["scheme"] == scheme}
            if cell:
                vals = [f"{cell[m]['embedding_cos_vs_fp32_mean']:.4f} / {cell[m]['embedding_cos_vs_fp32_min']:.4f}"
                        if m in cell else "–" for m in METHODS]
                rows.append(f"| {model} | {scheme.upper()} | " + " | ".join(vals) + " |")
    n = max(r["fidelity"]["texts"] for r in runs)
    return ("\n\nEmbedding fidelity (same runs): cosine between each text's embedding and the fp32 model's, mean / "
            f"min over the {n} texts the eval embeds (Lee-50 documents and the word-set words). Lee-50's correlation "
            "barely resolves 4-bit damage (W4A4 RTN matches fp32 to four digits), so the methods are also compared "
            "here:\n\n" + "\n".join(rows))


def write_readme() -> None:
    replace_section(BEGIN, END, table())  # a README without the section is left as it is


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--set", dest="sets", action="append", default=[], help="recipe override for every build")
    ap.add_argument("--build-dir", type=Path, default=ROOT / "out")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--skip-done", action="store_true", help="keep runs whose JSON already exists")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for model in args.models.split(","):
            for scheme in args.schemes.split(","):
                for method in args.methods.split(","):
                    try:
                        run(model, scheme, method, args.build_dir, args.sets, args.skip_done)
                    except subprocess.CalledProcessError as e:  # record nothing for a failed run, go on
                        print(f"FAILED: {' '.join(map(str, e.cmd[3:]))}", flush=True)
    write_readme()


if __name__ == "__main__":
    main()
