"""Token-merging results: quality and batch-1 latency of built artifacts vs schedule and method (x86).

    python bench/merge_results.py                                  # the committed grid
    python bench/merge_results.py --models vit-fmnist --methods tome,crossget --schedules 4,8@-1
    python bench/merge_results.py --table-only                     # README table from the JSON
    python bench/merge_results.py --rebench --models minilm-l6     # time the built artifacts again (quiet machine)

Each run is the CLI itself: ``edgecomp build MODEL --merge-method M --merge-schedule S``, then ``edgecomp eval``
(models with a quality metric) and ``edgecomp bench --compare onnxruntime --baseline UNMERGED``: the unmerged
build (schedule "0", built first) is timed in the same interleaved rounds, so the speed-up is one measurement
with a confidence interval, not the ratio of two runs minutes apart. One JSON per run in bench/results/merge/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from readme_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "merge"
GRID = {  # model -> schedules; vit-s16 has random weights: latency only
    "vit-fmnist": ("0", "4", "8@-1"),
    "vit-s16": ("0", "13", "16@-1"),
    # inputs padded to 256; Lee documents hold 53-154 tokens: "16" (256 -> 160) merges only padding, which
    # is exact; the second schedule ends at 64 tokens, so every document above 64 tokens merges real tokens
    "minilm-l6": ("0", "16", "64,48,32,24,16,8"),
}
METHODS = ("tome", "crossget", "random", "pool")
BEGIN, END = "<!-- merge-results:begin -->", "<!-- merge-results:end -->"


def edgecomp(*args: str) -> None:
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "edgecomp", *args], check=True, cwd=ROOT)


def _name(model: str, method: str, schedule: str) -> str:
    return f"{model}-{method}-{schedule.replace('@', 'at').replace(',', '_')}"


def run(model: str, method: str, schedule: str, build_dir: Path, skip_done: bool) -> None:
    name = _name(model, method, schedule)
    out = RESULTS / f"{name}.json"
    if skip_done and out.exists():
        return
    art = build_dir / "merge" / name
    merge = [] if schedule == "0" else ["--merge-method", method, "--merge-schedule", schedule]
    edgecomp("build", model, "--target", "x86", *merge, "-o", str(art))
    _bench(art, build_dir / "merge" / _name(model, "tome", "0"), schedule)
    result = {"model": model, "method": method if schedule != "0" else "none", "schedule": schedule,
              "bench": json.loads((art / "bench.json").read_text())}
    if model != "vit-s16":
        edgecomp("eval", str(art), "--json", str(art / "eval.json"))
        result["eval"] = json.loads((art / "eval.json").read_text())
    stages = {s["stage"]: s for s in json.loads((art / "report.json").read_text())["stages"]}
    m = stages.get("merge", {})
    result["tokens_per_layer"] = m.get("tokens_per_layer")
    result["merge_share_eager"] = m.get("merge_share_eager")
    out.write_text(json.dumps(result, indent=2) + "\n")


def _bench(art: Path, unmerged: Path, schedule: str) -> None:
    baseline = [] if schedule == "0" else ["--baseline", str(unmerged)]
    edgecomp("bench", str(art), "--compare", "onnxruntime", *baseline, "--json", str(art / "bench.json"))


def rebench(models: list[str], build_dir: Path) -> None:
    """Time the built artifacts of ``models`` again, one after another (for a quiet machine)."""
    for f in sorted(RESULTS.glob("*.json")):
        r = json.loads(f.read_text())
        if r["model"] not in models:
            continue
        art = build_dir / "merge" / _name(r["model"], "tome" if r["schedule"] == "0" else r["method"], r["schedule"])
        _bench(art, build_dir / "merge" / _name(r["model"], "tome", "0"), r["schedule"])
        r["bench"] = json.loads((art / "bench.json").read_text())
        f.write_text(json.dumps(r, indent=2) + "\n")


def table() -> str:
    rows = ["| model | method | schedule | tokens after last layer | quality | edgecomp p50 ms | speed-up vs unmerged "
            "(95 % CI) | onnxruntime p50 ms (same graph) |", "|---|---|---|---|---|---|---|---|"]
    runs = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("*.json"))]
    for model in GRID:
        base = next((r for r in runs if r["model"] == model and r["schedule"] == "0"), None)
        if base is None:
            continue
        base_ms = base["bench"]["results"]["edgecomp"]["p50_ms"]
        order = {m: i for i, m in enumerate(("none", *METHODS))}
        for r in sorted((r for r in runs if r["model"] == model),
                        key=lambda r: (GRID[model].index(r["schedule"]) if r["schedule"] in GRID[model] else 99,
                                       order.get(r["method"], 9))):
            res = r["bench"]["results"]
            ms = res["edgecomp"]["p50_ms"]
            ev = r.get("eval")
            quality = f"{ev['metric']} {ev['value']:.4f}" if ev else "– (random weights)"
            tokens = r["tokens_per_layer"][-1] if r.get("tokens_per_layer") else "all"
            same = r["bench"].get("ratios", {}).get("edgecomp@baseline/edgecomp")
            speedup = (f"{same['p50_ratio']:.2f}x ({same['ci'][0]:.2f}-{same['ci'][1]:.2f})" if same
                       else f"{base_ms / ms:.2f}x" + ("" if r["schedule"] == "0" else " (separate runs)"))
            rows.append(f"| {model} | {r['method']} | {r['schedule']} | {tokens} | {quality} | {ms:.2f} | "
                        f"{speedup} | {res['onnxruntime']['p50_ms']:.2f} |")
    return ("\n".join(rows) + "\n\n![quality vs latency](bench/results/merge/quality_vs_latency.png)\n\n"
            "Schedules: `r` per layer, `r@-1` ToMe's decreasing schedule (2r down to 0). "
            "Batch 1, 2 threads, p50 (edgecomp bench); speed-ups from `edgecomp bench --baseline` (the unmerged "
            "build timed in the same interleaved rounds). Regenerate: `python bench/merge_results.py` "
            "(JSON in `bench/results/merge/`).")


def plot() -> None:
    """bench/results/merge/quality_vs_latency.png: one panel per model with a quality metric; a line per method
    through its schedules, starting at the unmerged build."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.loads(f.read_text()) for f in sorted(RESULTS.glob("*.json"))]
    models = [m for m in GRID if any(r["model"] == m and r.get("eval") for r in runs)]
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        mine = [r for r in runs if r["model"] == model]
        base = next((r for r in mine if r["schedule"] == "0"), None)
        for method in METHODS:
            pts = [(r["bench"]["results"]["edgecomp"]["p50_ms"], r["eval"]["value"])
                   for r in mine if r["method"] == method and r["schedule"] != "0"]
            if base:
                pts.append((base["bench"]["results"]["edgecomp"]["p50_ms"], base["eval"]["value"]))
            ax.plot(*zip(*sorted(pts), strict=True), marker="o", label=method)
        ax.set_title(f"{model} (x86, batch 1)")
        ax.set_xlabel("edgecomp p50 latency, ms")
        ax.set_ylabel(mine[0]["eval"]["metric"])
        ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "quality_vs_latency.png", dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(GRID))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--schedules", default="", help="override the grid's schedules (comma-free forms only)")
    ap.add_argument("--build-dir", type=Path, default=ROOT / "out")
    ap.add_argument("--skip-done", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--rebench", action="store_true", help="re-time the built artifacts of --models only")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.rebench:
        rebench(args.models.split(","), args.build_dir)
    elif not args.table_only:
        for model in args.models.split(","):
            schedules = args.schedules.split(",") if args.schedules else GRID[model]
            for schedule in schedules:
                for method in (("tome",) if schedule == "0" else args.methods.split(",")):
                    run(model, method, schedule, args.build_dir, args.skip_done)
    plot()
    if not replace_section(BEGIN, END, table()):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} section")


if __name__ == "__main__":
    main()
