"""Every zoo model cross-built for arm64, run under qemu-aarch64 and compared with its x86 build.

    python bench/arm64_check.py                              # every zoo model, fp32 and W4A8 (RTN)
    python bench/arm64_check.py --models vit-fmnist --schemes fp32
    python bench/arm64_check.py --table-only                 # README table from the JSON

Each run is the CLI: ``edgecomp build MODEL --target x86`` and ``--target arm64`` with the same recipe (the
arm64 build's own lowering check already runs its cross-linked code under qemu against onnxruntime), then the
arm64 artifact's outputs on its example input (one qemu process) against the x86 artifact's. The tolerance is
``tests/runtime/test_qemu.py``'s: ``max |arm64 - x86| <= 1e-4 * max(1, max |x86|)`` for fp32 (the builds differ
in the order of float sums only); quantized builds may also differ where a per-token activation scale rounds
a value across a code boundary, so they are held to the lowering check's quantized tolerance instead and the
JSON keeps both numbers. Correctness only: qemu timings mean nothing and none are taken.
One JSON per run in bench/results/arm64/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from readme_section import model_scheme_results, replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "arm64"
MODELS = ("vit-fmnist", "vit-s16", "minilm-l6", "efficientnet-lite0", "smollm2-135m")
SCHEMES = ("fp32", "w4a8")
BEGIN, END = "<!-- arm64-check:begin -->", "<!-- arm64-check:end -->"
FP32_TOLERANCE = 1e-4  # x max(1, max |x86|), as in tests/runtime/test_qemu.py


def sh(*cmd: str) -> list[str]:
    print("+", " ".join(cmd), flush=True)
    subprocess.run([sys.executable, "-m", *cmd], check=True, cwd=ROOT)
    return ["edgecomp", *cmd[1:]]


def run(model: str, scheme: str, work: Path) -> None:
    from edgecomp.artifact import Artifact

    quant = [] if scheme == "fp32" else ["--quant", scheme, "--quant-method", "rtn"]
    arts, commands, seconds = {}, [], {}
    for target in ("x86", "arm64"):
        out = work / f"{model}-{scheme}-{target}"
        t0 = time.perf_counter()
        commands.append(sh("edgecomp", "build", model, "--target", target, *quant,
                           "--set", "lower.check_samples=1", "-o", str(out)))
        seconds[target] = round(time.perf_counter() - t0, 1)
        arts[target] = Artifact.open(out)
    x86, arm = arts["x86"], arts["arm64"]
    feeds = x86.example_inputs()
    want = x86.load_runner()(feeds)
    got = arm.load_runner().run_many([feeds])[0]
    outputs = {}
    for name, g, w in zip(arm.outputs, got, want, strict=True):
        scale = max(1.0, float(np.abs(w).max()))
        diff = np.asarray(g, np.float64) - w
        err = float(np.abs(diff).max())
        rel_l2 = float(np.linalg.norm(diff) / max(np.linalg.norm(w), 1e-30))
        outputs[name] = {"max_abs_diff": err, "scale": scale, "relative": err / scale, "rel_l2": rel_l2}
    lower = arm.report()["stages"][-1]
    # fp32: max |diff| / scale (the tests' metric); quantized: relative L2, the lowering check's own metric, held
    # to its own noise-derived tolerance (README: quantization; rounding flips differ between integer kernels)
    metric = "relative" if scheme == "fp32" else "rel_l2"
    worst = max(o[metric] for o in outputs.values())
    limit = FP32_TOLERANCE if scheme == "fp32" else lower.get("tolerance")
    result = {
        "model": model, "scheme": scheme, "outputs": outputs, "metric": metric, "worst": worst,
        "tolerance": limit, "passed": worst <= limit if limit is not None else None,
        "arm64_lowering_check": {k: lower.get(k) for k in ("checked_with", "checked_against", "tolerance",
                                                           "max_abs_err", "rel_l2_err", "naive")},
        "attention_kernels": lower.get("attention_kernels"), "int_kernels": lower.get("int_kernels"),
        "build_seconds": seconds, "commands": commands, "tvm_target": arm.manifest["target"]["tvm"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{model}-{scheme}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{model} {scheme}: worst {metric} arm64 vs x86 = {worst:.3g} (tolerance {limit})", flush=True)


def table() -> str:
    rows = ["| model | scheme | arm64 vs x86 | tolerance | arm64 lowering check (qemu vs onnxruntime) "
            "| naive functions | arm64 build s |", "|---|---|---|---|---|---|---|"]
    for model, scheme, d in model_scheme_results(RESULTS, MODELS, SCHEMES):
        check = d["arm64_lowering_check"]
        err = next((f"{k.removesuffix('_err').replace('_', ' ')} {check[k]:.3g}"
                    for k in ("max_abs_err", "rel_l2_err") if check.get(k) is not None), "–")
        what = "max abs diff / scale" if d["metric"] == "relative" else "rel L2"
        rows.append(f"| {model} | {scheme.upper() if scheme != 'fp32' else 'fp32'} | {what} {d['worst']:.2e} "
                    f"| {d['tolerance']:.3g} | {err} | {len(check.get('naive') or [])} "
                    f"| {d['build_seconds']['arm64']:.0f} |")
    return "\n".join(rows) + (
        "\n\nEach row: `python bench/arm64_check.py` (x86 and arm64 builds with `--set lower.check_samples=1`, the "
        "arm64 one run under qemu-aarch64 on the example input; correctness only, no timings). fp32 is held to the "
        "tests' 1e-4 x output scale; W4A8 to the lowering check's tolerance in relative L2 (integer kernels that "
        "sum in another order flip per-token rounding; README: quantization). JSON in `bench/results/arm64/`.\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--schemes", default=",".join(SCHEMES))
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if not args.table_only:
        with tempfile.TemporaryDirectory(prefix="edgecomp-arm64-") as tmp:
            for model in args.models.split(","):
                for scheme in args.schemes.split(","):
                    run(model, scheme, Path(tmp))
    replace_section(BEGIN, END, table())


if __name__ == "__main__":
    main()
