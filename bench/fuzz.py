"""The full fuzz campaigns (edgecomp.fuzz): >= 1000 generated cases per target, results as JSON.

    nice -n 10 .venv/bin/python bench/fuzz.py                  # all targets, 1000 cases each, seed 0
    .venv/bin/python bench/fuzz.py --targets onnx --cases 200   # one target, fewer cases
    .venv/bin/python bench/fuzz.py --readme                     # rewrite README's guarantees table from the JSON

Writes ``bench/results/fuzz/<target>.json`` (the campaign summary: cases, outcomes by class, EdgecompError
types, the first bad cases in full) and ``bench/results/fuzz/summary.json`` (totals, provenance and the
crashes found while building this suite, with their fixes). Exit status 1 when any case ended in a
traceback, crash or hang. ``make test`` runs a bounded sample of the same campaigns (tests/fuzz).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from edgecomp import __version__
from edgecomp.fuzz.campaign import BAD, campaign
from edgecomp.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "fuzz"
BEGIN, END = "<!-- fuzz:begin (bench/fuzz.py --readme) -->", "<!-- fuzz:end -->"

# What the campaigns found while this suite was written, and the fix of each (guarded in front, never by
# catching a crash): the README's "crashes found and fixed" figure counts these.
FOUND = [
    {"target": "onnx", "class": "traceback", "what": "onnxruntime rejects graphs the ONNX checker passes "
     "(shape-inference failures, bad initializers, out-of-range Gather indices at run time): its Fail/"
     "InvalidGraph exceptions escaped the export stage", "fix": "onnx_tools.runtime_errors -> MalformedModelError"},
    {"target": "onnx", "class": "traceback", "what": "inputs with absurd static dims (2**40 x 2**40) made the "
     "synthetic calibration feeds fail inside numpy (array is too big)",
     "fix": "onnx_tools.input_specs refuses inputs over MAX_INPUT_ELEMENTS (2**28)"},
    {"target": "recipe", "class": "traceback", "what": "seed = -1 passed validation and failed in "
     "numpy.random.default_rng (expected non-negative integer)", "fix": "BuildConfig and MergeConfig check seed >= 0"},
    {"target": "recipe", "class": "wrong error", "what": "lower.tolerance = nan was accepted and every build "
     "then failed its TVM check with 'tolerance nan'", "fix": "LowerConfig checks tolerance >= 0 (NaN fails)"},
    {"target": "npy", "class": "traceback", "what": "a damaged .npy header raised tokenize.TokenError from "
     "numpy's header parser (only OSError/ValueError were caught): 'internal error', exit 1",
     "fix": "edgecomp.inputs.load_npy reads and checks the header itself"},
    {"target": "npy", "class": "wrong error", "what": "an empty .npy file raised EOFError, which click turns "
     "into Abort: the CLI printed 'interrupted' and exited 130", "fix": "load_npy; cli.main reports an Abort "
     "caused by EOFError as an internal error, not an interrupt"},
    {"target": "params", "class": "traceback", "what": "a damaged params.bin (consistent manifest) reached the "
     "TVM runtime's reader, which raised InternalError 'Check failed ... Invalid parameters file format' and "
     "allocates whatever shape a header claims", "fix": "edgecomp.params_file.check walks the file first"},
    {"target": "params", "class": "traceback", "what": "a well-formed params.bin whose tensor has another dtype "
     "(uint32 for float32) loaded, and the compiled main raised TypeError 'Mismatched W.dtype' when called",
     "fix": "manifest param_specs (dtype, shape per tensor), compared by params_file.check before loading"},
]
FOUND.append(
    {"target": "onnx", "class": "hang", "what": "a chain of nested Sigmoid/Tanh (fused into one loop) hung the "
     "build: edgecomp's vectorised exp expansion copies its argument ~30 times and TVM's simplifier inlines Let "
     "bindings, so the TIR grew as 30**depth (depth 5: 25 s for 64 elements)", "fix": "cpu_schedule expands "
     "exp/erf/pow only for small arguments without other intrinsics; nested calls keep LLVM's intrinsic"})
# Found while writing tests/runtime/capi_abuse.c: the first by UBSan (x86 build with -fsanitize=address,undefined),
# the others by reading edgecomp.cc for the cases the program covers; all are now cases it checks.
CAPI_FOUND = [
    {"target": "capi", "class": "undefined behaviour", "what": "UBSan: edgecomp_set_input with a dtype outside "
     "the enum (-1) loaded an out-of-range edgecomp_dtype in C++ ('load of value 4294967295, which is not a valid "
     "value for type edgecomp_dtype')", "fix": "dtype arguments are read through their bytes as int"},
    {"target": "capi", "class": "use after free", "what": "a handle used after edgecomp_close (or closed twice) "
     "was dereferenced", "fix": "open handles are registered; others get EDGECOMP_ERR_ARGUMENT, a second close is "
     "a no-op"},
    {"target": "capi", "class": "wrong status", "what": "a truncated or damaged params.bin reached the TVM reader "
     "(EDGECOMP_ERR_RUNTIME with an internal check message, and a shape claimed by the file was allocated)",
     "fix": "params.bin walked with bounds checks first: EDGECOMP_ERR_FILE"},
    {"target": "capi", "class": "unbounded allocation", "what": "model.txt counts and dims were trusted ('inputs "
     "2000000000' allocated 2e9 signatures; dims overflowing size_t gave a wrong byte count)",
     "fix": "counts <= 4096, dims <= 2**31, tensors <= 64 GiB, checked before allocating"},
]


def _git_commit() -> str:
    res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def run(targets: list[str], cases: int, seed: int, timeout_s: float) -> dict:
    import hypothesis

    RESULTS.mkdir(parents=True, exist_ok=True)
    totals = {"cases": 0, "outcomes": {}}
    per_target = {}
    with tempfile.TemporaryDirectory(prefix="edgecomp-fuzz-") as fixtures:
        for target in targets:
            res = campaign(target, cases, seed, Path(fixtures), timeout_s)
            (RESULTS / f"{target}.json").write_text(json.dumps(res, indent=2) + "\n")
            per_target[target] = {k: res[k] for k in ("cases", "outcomes", "seconds", "max_case_s", "worker_starts")}
            totals["cases"] += res["cases"]
            for k, v in res["outcomes"].items():
                totals["outcomes"][k] = totals["outcomes"].get(k, 0) + v
            print(f"{target}: {res['cases']} cases in {res['seconds']} s: {res['outcomes']}", flush=True)
    summary = {"totals": totals, "targets": per_target, "bad": sum(totals["outcomes"].get(k, 0) for k in BAD),
               "found_and_fixed": FOUND, "capi_found_and_fixed": CAPI_FOUND,
               "provenance": {"edgecomp": __version__, "commit": _git_commit(), "hypothesis": hypothesis.__version__,
                              "seed": seed, "cases_per_target": cases, "timeout_s": timeout_s,
                              "command": "nice -n 10 .venv/bin/python bench/fuzz.py " + " ".join(sys.argv[1:])}}
    if set(targets) == set(TARGETS):
        (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def readme_table() -> str:
    """The README's guarantees table from the committed JSON."""
    summary = json.loads((RESULTS / "summary.json").read_text())
    lines = ["| target | cases | ok | EdgecompError (exit 2) | traceback | crash | hang |",
             "|---|---|---|---|---|---|---|"]
    for target, t in summary["targets"].items():
        o = t["outcomes"]
        lines.append(f"| {target} | {t['cases']} | {o.get('ok', 0)} | {o.get('error', 0)} | {o.get('traceback', 0)} "
                     f"| {o.get('crash', 0)} | {o.get('hang', 0)} |")
    p = summary["provenance"]
    lines.append("")
    lines.append(f"{summary['totals']['cases']:,d} cases (seed {p['seed']}, hypothesis {p['hypothesis']}, commit "
                 f"{p['commit'][:10]}). Found and fixed while writing these tests: {len(summary['found_and_fixed'])} "
                 f"faults by the campaigns and {len(summary['capi_found_and_fixed'])} in the C API (one by UBSan, the "
                 f"others while writing its abuse test); each is listed with its fix in "
                 f"`bench/results/fuzz/summary.json`.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--readme", action="store_true", help="only rewrite the README table from the JSON")
    args = ap.parse_args()
    if args.readme:
        from readme_section import replace_section

        if not replace_section(BEGIN, END, readme_table()):
            sys.exit(f"README.md lacks the markers {BEGIN} ... {END}")
        return
    summary = run([t.strip() for t in args.targets.split(",") if t.strip()], args.cases, args.seed, args.timeout)
    print(f"total: {summary['totals']}")
    sys.exit(1 if summary["bad"] else 0)


if __name__ == "__main__":
    main()
