"""Pruning results: quality, parameters and latency vs ratio, method against method (x86, real data).

    python bench/prune_results.py                                     # the committed grid
    python bench/prune_results.py --models vit-fmnist --ratios 0.3 --variants newton,flap
    python bench/prune_results.py --table-only                        # README table + plot from the JSON

A variant is a method with its allocation: ``newton`` (uniform, the default), ``newton-global``, ``flap``
(uniform), ``flap-global`` (FLAP's own global search), ``magnitude`` (uniform), ``magnitude-global``.
Rows in ``BUILT`` go through the CLI: ``edgecomp build MODEL --prune R --prune-method M --set
prune.allocation=A``, ``edgecomp eval`` and ``edgecomp bench --compare none``: the quality, parameters and
latency of the built artifact. Other rows (the baselines of the large models, to keep the grid within an
hour on 2 cores) prune the torch model in-process with the same code and calibration and evaluate it with
torch on the same task: quality and parameters, no latency. One JSON per row in bench/results/prune/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from readme_section import replace_section

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "prune"
GRID = {"vit-fmnist": (0.3, 0.5), "smollm2-135m": (0.1, 0.2, 0.3), "minilm-l6": (0.2, 0.4)}
VARIANTS = ("newton", "flap", "flap-global", "magnitude")
BUILT = {"vit-fmnist": VARIANTS, "minilm-l6": ("newton",), "smollm2-135m": ("newton",)}
BEGIN, END = "<!-- prune-results:begin -->", "<!-- prune-results:end -->"
ABL_BEGIN, ABL_END = "<!-- prune-ablation:begin -->", "<!-- prune-ablation:end -->"
BUD_BEGIN, BUD_END = "<!-- prune-budget:begin -->", "<!-- prune-budget:end -->"


def edgecomp(*args: str) -> None:
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "edgecomp", *args], check=True, cwd=ROOT)


def _art_dir(build_dir: Path, model: str, ratio: float, variant: str) -> Path:
    """Where a built row's artifact lives (the unpruned row is built under the name "newton")."""
    return build_dir / "prune" / f"{model}-{'newton' if ratio == 0 else variant}-{ratio}"


def _split(variant: str) -> tuple[str, str]:
    method, _, alloc = variant.partition("-")
    return method, alloc or "uniform"


def run_built(model: str, ratio: float, variant: str, build_dir: Path, extra: tuple[str, ...] = ()) -> dict:
    art = _art_dir(build_dir, model, ratio, variant)
    prune = [] if ratio == 0 else ["--prune", str(ratio), "--prune-method", _split(variant)[0],
                                   "--set", f'prune.allocation="{_split(variant)[1]}"',
                                   *(a for e in extra for a in ("--set", e))]
    edgecomp("build", model, "--target", "x86", *prune, "-o", str(art))
    # the fp32 reference is the unpruned row's own value: run it once, not per pruned row
    edgecomp("eval", str(art), "--json", str(art / "eval.json"), *([] if ratio == 0 else ["--no-reference"]))
    edgecomp("bench", str(art), "--compare", "none", "--json", str(art / "bench.json"))
    stages = {s["stage"]: s for s in json.loads((art / "report.json").read_text())["stages"]}
    timings = json.loads((art / "timings.json").read_text())
    files = json.loads((art / "manifest.json").read_text())["files"]
    return {"built": True, "eval": json.loads((art / "eval.json").read_text()),
            "p50_ms": json.loads((art / "bench.json").read_text())["results"]["edgecomp"]["p50_ms"],
            "params_bin_bytes": files["params.bin"]["bytes"], "prune": stages["prune"],
            "prune_seconds": timings.get("prune")}


def run_torch(model: str, ratio: float, variant: str, extra: tuple[str, ...] = ()) -> dict:
    """Prune in-process with the build's defaults (calibration 32 samples, seed 0) and evaluate with torch;
    ``extra`` are further ``--set`` overrides (the ablations)."""
    from edgecomp import api, zoo
    from edgecomp.config import BuildConfig
    from edgecomp.stages import prune as prune_stage
    from edgecomp.stages.importer import load
    from edgecomp.targets import load_target

    method, alloc = _split(variant)
    cfg = BuildConfig().with_overrides([f"prune.ratio={ratio}", f'prune.method="{method}"',
                                        f'prune.allocation="{alloc}"', *extra])
    imported = load(model, cfg.calib_samples, cfg.seed)
    t0 = time.perf_counter()
    pruned = prune_stage.run(imported, cfg.prune, load_target("x86"))
    seconds = time.perf_counter() - t0
    entry = zoo.get(model)
    ev = api.evaluate_module(pruned.payload, model, entry.inputs, entry.task)
    return {"built": False, "eval": ev, "p50_ms": None, "prune": pruned.reports[-1].to_dict(),
            "prune_seconds": round(seconds, 1)}


def run(model: str, ratio: float, variant: str, build_dir: Path, skip_done: bool, extra: tuple[str, ...] = ()) -> None:
    out = RESULTS / f"{model}-{variant if ratio else 'unpruned'}-{ratio}.json"
    if skip_done and out.exists():
        return
    built = ratio == 0 or variant in BUILT[model] or variant == "upop"  # upop trains: build it once, for real
    result = (run_built(model, ratio, variant, build_dir, extra) if built
              else run_torch(model, ratio, variant, extra))
    result.update({"model": model, "ratio": ratio, "variant": variant if ratio else "unpruned",
                   "overrides": list(extra)})
    RESULTS.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


# Design choices measured in torch on the same calibration and task: (model, ratio, name, overrides).
ABLATIONS = (
    ("vit-fmnist", 0.3, "newton rank=mask (the paper's Newton mask), global", ("prune.rank=\"mask\"",
                                                                              "prune.allocation=\"global\"")),
    ("vit-fmnist", 0.3, "newton rank=loss, global", ("prune.allocation=\"global\"",)),
    ("vit-fmnist", 0.3, "newton rank=mask, uniform", ("prune.rank=\"mask\"",)),
    ("vit-fmnist", 0.3, "newton rank=loss, uniform, one pass", ("prune.sequential=false",)),
    ("smollm2-135m", 0.2, "newton rank=loss, global", ("prune.allocation=\"global\"",)),
    ("smollm2-135m", 0.2, "newton rank=loss, uniform, one pass", ("prune.sequential=false",)),
    ("smollm2-135m", 0.2, "newton rank=mask, uniform", ("prune.rank=\"mask\"",)),
    ("smollm2-135m", 0.2, "newton, heads=yes (GQA slices cut too)", ("prune.heads=\"yes\"",)),
    ("smollm2-135m", 0.2, "newton, compensate_to=original", ("prune.compensate_to=\"original\"",)),
)


def run_ablations(skip_done: bool, models: list[str]) -> None:
    out_dir = RESULTS / "ablation"
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (model, ratio, name, extra) in enumerate(ABLATIONS):
        out = out_dir / f"{model}-{i}.json"
        if model not in models or (skip_done and out.exists()):
            continue
        allocation = "global" if any("global" in e for e in extra) else "uniform"
        result = run_torch(model, ratio, "newton" if allocation == "uniform" else "newton-global",
                           tuple(e for e in extra if "allocation" not in e))
        result.update({"model": model, "ratio": ratio, "name": name, "overrides": list(extra)})
        out.write_text(json.dumps(result, indent=2) + "\n")


def ablation_table() -> str:
    rows = ["| model | ratio | variant | quality |", "|---|---|---|---|"]
    for f in sorted((RESULTS / "ablation").glob("*.json"), key=lambda f: (f.stem.rsplit("-", 1)[0],
                                                                           int(f.stem.rsplit("-", 1)[1]))):
        r = json.loads(f.read_text())
        ev = r["eval"]
        rows.append(f"| {r['model']} | {r['ratio']} | {r['name']} | {_quality(ev)} |")
    return ("Design ablations (Newton's ranking, allocation, layer-by-layer pruning, GQA heads, refit target):"
            "\n\n" + "\n".join(rows) +
            "\n\nTorch evaluation, same calibration and data as the table above; the default "
            "(rank=loss, uniform, layer by layer) is the `newton` row there. Regenerate: "
            "`python bench/prune_results.py --ablations` (JSON in `bench/results/prune/ablation/`).")


def rebench(build_dir: Path) -> None:
    """Time every built row again (``edgecomp bench --compare none``), one after another on a quiet machine."""
    for f in sorted(RESULTS.glob("*.json")):
        r = json.loads(f.read_text())
        if not r["built"]:
            continue
        art = _art_dir(build_dir, r["model"], r["ratio"], r["variant"])
        edgecomp("bench", str(art), "--compare", "none", "--json", str(art / "bench.json"))
        r["p50_ms"] = json.loads((art / "bench.json").read_text())["results"]["edgecomp"]["p50_ms"]
        f.write_text(json.dumps(r, indent=2) + "\n")


def run_budget(model: str, budget_ms: float, build_dir: Path) -> None:
    """``edgecomp build MODEL --prune-budget-ms X``, then ``edgecomp bench`` on the result: does it meet X?"""
    art = build_dir / "budget" / f"{model}-{budget_ms}ms"
    edgecomp("build", model, "--target", "x86", "--prune-budget-ms", str(budget_ms), "-o", str(art))
    edgecomp("bench", str(art), "--compare", "none", "--json", str(art / "bench.json"))
    stages = {s["stage"]: s for s in json.loads((art / "report.json").read_text())["stages"]}
    p50 = json.loads((art / "bench.json").read_text())["results"]["edgecomp"]["p50_ms"]
    out = RESULTS / "budget" / f"{model}-{budget_ms}ms.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": model, "budget_ms": budget_ms, "search": stages["prune"]["budget"],
                               "params": stages["prune"].get("params"), "bench_p50_ms": p50,
                               "meets_budget": p50 <= budget_ms,
                               "timings": json.loads((art / "timings.json").read_text())}, indent=2) + "\n")


def budget_table() -> str:
    rows = ["| model | budget ms | chosen ratio | search trials (ratio: p50 ms) | `edgecomp bench` p50 ms after "
            "| met |",
            "|---|---|---|---|---|---|"]
    for f in sorted((RESULTS / "budget").glob("*.json")):
        r = json.loads(f.read_text())
        trials = ", ".join(f"{t['ratio']}: {t['p50_ms']:.1f}" for t in r["search"]["trials"])
        rows.append(f"| {r['model']} | {r['budget_ms']} | {r['search']['chosen_ratio']} | {trials} | "
                    f"{r['bench_p50_ms']:.2f} | {'yes' if r['meets_budget'] else 'no'} |")
    return ("\n".join(rows) + "\n\nRegenerate: `python bench/prune_results.py --budget MODEL:MS` "
            "(JSON in `bench/results/prune/budget/`).")


def _rows() -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(RESULTS.glob("*.json"))]


def _quality(ev: dict) -> str:
    """The row's quality: the task metric, with the secondary sets (enwiki, WS353 / SL999) where measured."""
    quality = f"{ev['metric']} {ev['value']:.4f}"
    if "enwiki_perplexity" in ev["details"]:
        quality += f" (enwiki {ev['details']['enwiki_perplexity']:.2f})"
    if "wordsim353_spearman" in ev["details"]:
        quality += (f" (WS353 {ev['details']['wordsim353_spearman']:.3f}, SL999 "
                    f"{ev['details'].get('simlex999_spearman', float('nan')):.3f})")
    return quality


def table() -> str:
    rows = ["| model | ratio | method (allocation) | quality | params | removed of prunable | GFLOPs | "
            "params.bin MB | edgecomp p50 ms |", "|---|---|---|---|---|---|---|---|---|"]
    runs = _rows()
    for model in GRID:
        mine = [r for r in runs if r["model"] == model]
        order = {v: i for i, v in enumerate(("unpruned", *VARIANTS, "newton-global", "magnitude-global", "upop"))}
        for r in sorted(mine, key=lambda r: (r["ratio"], order.get(r["variant"], 99))):
            ev, p = r["eval"], r["prune"]
            quality = _quality(ev)
            params = p["params"][1] if "params" in p else None
            removed = f"{p['removed_share_of_prunable']:.1%}" if "removed_share_of_prunable" in p else "–"
            gflops = f"{p['flops'][1] / 1e9:.2f}" if "flops" in p else "–"
            ms = f"{r['p50_ms']:.2f}" if r.get("p50_ms") else "– (torch eval)"
            size = f"{r['params_bin_bytes'] / 1e6:.2f}" if r.get("params_bin_bytes") else "–"
            method = r["variant"] if r["variant"] == "unpruned" else r["variant"].replace("-global", " (global)")
            if r.get("overrides"):
                method += " (" + ", ".join(r["overrides"]) + ")"
            rows.append(f"| {model} | {r['ratio']} | {method} | {quality} | {params if params else '–'} | {removed} "
                        f"| {gflops} | {size} | {ms} |")
    return ("\n".join(rows) + "\n\nQuality: vit-fmnist top-1 on the 10k Fashion-MNIST test images; minilm-l6 Lee-50 "
            "Pearson (WordSim353 / SimLex999 Spearman); smollm2-135m perplexity on held-out Austen (enwiki). "
            "Rows with a latency are built artifacts (quality through TVM); the others are the same pruning "
            "evaluated in torch. Regenerate: `python bench/prune_results.py` (JSON in `bench/results/prune/`, "
            "plot `bench/results/prune/quality_vs_ratio.png`).")


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _rows()
    fig, axes = plt.subplots(1, len(GRID), figsize=(5 * len(GRID), 4))
    for ax, model in zip(axes, GRID, strict=True):
        mine = [r for r in runs if r["model"] == model]
        base = next((r for r in mine if r["ratio"] == 0), None)
        for variant in sorted({r["variant"] for r in mine} - {"unpruned"}):
            pts = sorted((r["ratio"], r["eval"]["value"]) for r in mine if r["variant"] == variant)
            if base:
                pts = [(0.0, base["eval"]["value"]), *pts]
            ax.plot(*zip(*pts, strict=True), marker="o", label=variant)
        if mine:
            ax.set_title(model)
            ax.set_xlabel("ratio of prunable parameters removed")
            ax.set_ylabel(f"{mine[0]['eval']['metric']}")
            if not mine[0]["eval"]["higher_is_better"]:
                ax.set_yscale("log")
            ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "quality_vs_ratio.png", dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(GRID))
    ap.add_argument("--ratios", default="", help="comma list (default: the model's grid)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--build-dir", default="build/bench", type=Path)
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--redo", action="store_true", help="re-run rows whose JSON exists")
    ap.add_argument("--ablations", action="store_true", help="run the design ablations instead of the grid")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="extra build overrides for the pruned rows (recorded in the JSON)")
    ap.add_argument("--rebench", action="store_true", help="re-time the built rows only")
    ap.add_argument("--budget", default="", help="MODEL:MS, build to that latency budget instead of the grid")
    args = ap.parse_args()
    args.build_dir = args.build_dir if args.build_dir.is_absolute() else ROOT / args.build_dir
    if args.rebench:
        rebench(args.build_dir)
    elif args.budget and not args.table_only:
        model, ms = args.budget.split(":")
        run_budget(model, float(ms), args.build_dir)
    elif args.ablations and not args.table_only:
        run_ablations(not args.redo, args.models.split(","))
    elif not args.table_only:
        for model in args.models.split(","):
            ratios = [float(r) for r in args.ratios.split(",")] if args.ratios else GRID[model]
            run(model, 0, "newton", args.build_dir, not args.redo)
            for ratio in ratios:
                for variant in args.variants.split(","):
                    try:
                        run(model, ratio, variant, args.build_dir, not args.redo, tuple(args.extra))
                    except subprocess.CalledProcessError as e:
                        print(f"!! {model} {variant} {ratio} failed: {e}", flush=True)
    plot()
    replace_section(BEGIN, END, table())
    if (RESULTS / "ablation").exists():
        replace_section(ABL_BEGIN, ABL_END, ablation_table())
    if (RESULTS / "budget").exists():
        replace_section(BUD_BEGIN, BUD_END, budget_table())


if __name__ == "__main__":
    main()
