"""Sizes of arm64 bundles (``edgecomp package``): what a device ships, per file, stripped.

    python bench/bundle_sizes.py                       # the committed grid (below)
    python bench/bundle_sizes.py --runs vit-fmnist     # some of it
    python bench/bundle_sizes.py --table-only          # README table from the JSON

Each run is the CLI itself: ``edgecomp build MODEL --target arm64`` (one lowering check feed: the check runs
under qemu and says nothing about size), ``edgecomp package ART --target arm64 --static``, then both example
programs cross-built with the bundle's own Makefile and stripped. One JSON per run in bench/results/bundle/:
the bundle's size.json, the example programs' stripped bytes and the commands that produced them.
Sizes only: nothing here is timed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from readme_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "bundle"
RUNS = {  # name -> build arguments after the model
    "vit-fmnist": ("vit-fmnist",),
    "vit-fmnist-w4a8": ("vit-fmnist", "--quant", "w4a8", "--quant-method", "rtn"),
    "minilm-l6": ("minilm-l6",),
    "efficientnet-lite0": ("efficientnet-lite0",),
}
BEGIN, END = "<!-- bundle-sizes:begin -->", "<!-- bundle-sizes:end -->"
GCC, STRIP = "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-strip"


def sh(*cmd: str) -> list[str]:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return list(cmd)


def run(name: str, work: Path) -> None:
    art, bundle = work / f"{name}-art", work / f"{name}-bundle"
    build_args = RUNS[name]
    commands = [
        sh("edgecomp", "build", *build_args, "--target", "arm64", "--set", "lower.check_samples=1", "-o", str(art)),
        sh("edgecomp", "package", str(art), "--target", "arm64", "--static", "-o", str(bundle)),
        sh("make", "-C", str(bundle / "example"), f"CC={GCC}", "example", "example-static"),
    ]
    examples = {}
    for exe in ("example", "example-static"):
        stripped = work / f"{name}-{exe}"
        commands.append(sh(STRIP, "--strip-unneeded", "-o", str(stripped), str(bundle / "example" / exe)))
        examples[exe] = stripped.stat().st_size
    manifest = json.loads((art / "manifest.json").read_text())
    gcc = subprocess.run([GCC, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    result = {"run": name, "build_args": list(build_args), "size": json.loads((bundle / "size.json").read_text()),
              "example_programs_stripped_bytes": examples, "toolchain": {**manifest["toolchain"], "cross_gcc": gcc},
              "recipe_quantize": manifest["recipe"]["quantize"]["scheme"],
              "commands": [" ".join(c).replace(str(work), "$WORK") for c in commands]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def table() -> str:
    rows = ["| model | scheme | model.so | libedgecomp.so | libtvm_runtime.so | libtvm_ffi.so "
            "| **runtime + model code** | params.bin | static: app + model + C API | static: + runtime .so |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name in RUNS:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        f, static_app = r["size"]["files"], r["example_programs_stripped_bytes"]["example-static"]
        runtime = f["lib/libtvm_runtime.so"] + f["lib/libtvm_ffi.so"]
        scheme = "fp32" if r["recipe_quantize"] == "none" else r["recipe_quantize"].upper()
        rows.append(f"| {r['size']['model']} | {scheme} | {_mb(f['lib/model.so'])} "
                    f"| {_mb(f['lib/libedgecomp.so'])} | {_mb(f['lib/libtvm_runtime.so'])} "
                    f"| {_mb(f['lib/libtvm_ffi.so'])} | **{_mb(r['size']['runtime_and_code_bytes'])}** "
                    f"| {_mb(f['params.bin'])} | {_mb(static_app)} | {_mb(static_app + runtime)} |")
    return ("\n".join(rows) + "\n\nMB = 10^6 bytes, aarch64, stripped (`aarch64-linux-gnu-strip --strip-unneeded`). "
            "Static: the bundle's `example-static` (example program + model + C API in one executable), "
            "stripped; it loads only libtvm_runtime.so and libtvm_ffi.so.\n\n"
            "Regenerate: `python bench/bundle_sizes.py` (JSON with the commands in `bench/results/bundle/`).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=",".join(RUNS), help="comma-separated names from the grid")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if not args.table_only:
        for tool in ("edgecomp", GCC, STRIP, "make"):
            if shutil.which(tool) is None:
                sys.exit(f"{tool} is not on PATH (activate .venv; `make cross` installs the aarch64 toolchain)")
        with tempfile.TemporaryDirectory(prefix="edgecomp-bundle-sizes-") as work:
            for name in args.runs.split(","):
                run(name, Path(work))
    body = table()
    print(body)
    if not replace_section(BEGIN, END, body):
        print(f"README.md has no {BEGIN} section; table not written", file=sys.stderr)


if __name__ == "__main__":
    main()
