"""Every stage at once: pruning + token merging + W4A8 against onnxruntime fp32 on the uncompressed model (x86).

    python bench/combined_results.py                 # both models (about 10 minutes on 2 cores)
    python bench/combined_results.py --table-only    # README table from the JSON

Per model, the CLI builds the uncompressed fp32 artifact and the compressed one (``--prune P --merge-r R
--quant w4a8``, the settings in ``SETTINGS``), then ``edgecomp bench COMPRESSED --compare onnxruntime
--baseline FP32``: edgecomp on the compressed build, onnxruntime on its fake-quant graph, and both engines on the
uncompressed build, all in the same interleaved rounds. The headline ratio is onnxruntime on the uncompressed
model over edgecomp on the compressed one. vit-s16 has random weights (latency only); vit-fmnist, the same
recipe scaled to its 50 tokens (r = 4), gives the quality of the combination (``edgecomp eval``, Fashion-MNIST
test set). One JSON per model in bench/results/combined/.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from readme_section import run_then_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "combined"
BEGIN, END = "<!-- combined-results:begin -->", "<!-- combined-results:end -->"
# model -> build flags of the compressed artifact (prune 30 % Newton, ToMe, W4A8 round-to-nearest)
SETTINGS = {
    "vit-s16": ["--prune", "0.3", "--merge-r", "13", "--quant", "w4a8", "--quant-method", "rtn"],
    "vit-fmnist": ["--prune", "0.3", "--merge-r", "4", "--quant", "w4a8", "--quant-method", "rtn"],
}


def edgecomp(*args: str) -> None:
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "edgecomp", *args], check=True, cwd=ROOT)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def run(model: str, build_dir: Path) -> None:
    fp32, small = build_dir / f"{model}-fp32", build_dir / f"{model}-combined"
    edgecomp("build", model, "--target", "x86", "-o", str(fp32))
    edgecomp("build", model, "--target", "x86", *SETTINGS[model], "-o", str(small))
    edgecomp("bench", str(small), "--compare", "onnxruntime", "--baseline", str(fp32), "--json",
             str(small / "bench.json"))
    result = {"model": model, "flags": SETTINGS[model], "bench": _load(small / "bench.json"),
              "params": {"fp32": _load(fp32 / "manifest.json")["files"]["params.bin"]["bytes"],
                         "combined": _load(small / "manifest.json")["files"]["params.bin"]["bytes"]}}
    if model != "vit-s16":
        for name, art in (("fp32", fp32), ("combined", small)):
            edgecomp("eval", str(art), "--json", str(art / "eval.json"))
            result.setdefault("eval", {})[name] = _load(art / "eval.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{model}.json").write_text(json.dumps(result, indent=2) + "\n")


def _ratio(bench: dict, engine: str) -> str:
    r = bench["ratios"][f"{engine}/edgecomp"]
    return f"{r['p50_ratio']:.2f}x ({r['ci'][0]:.2f}-{r['ci'][1]:.2f})"


def table() -> str:
    rows = ["| model | compressed with | edgecomp p50 ms | onnxruntime fp32 p50 ms (uncompressed) | speed-up vs "
            "onnxruntime fp32 (95 % CI) | vs edgecomp fp32 (95 % CI) | params.bin fp32 -> compressed | quality fp32 -> "
            "compressed |", "|---|---|---|---|---|---|---|---|"]
    for f in sorted(RESULTS.glob("*.json")):
        r = _load(f)
        res = r["bench"]["results"]
        ev = r.get("eval")
        quality = (f"{ev['fp32']['metric']} {ev['fp32']['value']:.4f} -> {ev['combined']['value']:.4f}" if ev
                   else "– (random weights)")
        mb = {k: v / 1e6 for k, v in r["params"].items()}
        rows.append(f"| {r['model']} | `{' '.join(r['flags'])}` | {res['edgecomp']['p50_ms']:.2f} | "
                    f"{res['onnxruntime@baseline']['p50_ms']:.2f} | {_ratio(r['bench'], 'onnxruntime@baseline')} | "
                    f"{_ratio(r['bench'], 'edgecomp@baseline')} | {mb['fp32']:.1f} -> {mb['combined']:.1f} MB | "
                    f"{quality} |")
    return ("\n".join(rows) + "\n\nBatch 1, 2 threads, p50; all four timings (edgecomp and onnxruntime, each on the "
            "uncompressed and the compressed build) in the same interleaved rounds of one `edgecomp bench "
            "--baseline` run. Regenerate: `python bench/combined_results.py` (JSON in `bench/results/combined/`).")


def main() -> None:
    run_then_table(__doc__, "models", SETTINGS, ROOT / "out" / "combined", run, table, BEGIN, END)


if __name__ == "__main__":
    main()
