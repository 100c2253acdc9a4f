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


def edgecomp(*args: str) -> None:
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "edgecomp", *args], check=True, cwd=ROOT)


def _split(variant: str) -> tuple[str, str]:
    method, _, alloc = variant.partition("-")
    return method, alloc or "uniform"


def run_built(model: str, ratio: float, variant: str, build_dir: Path) -> dict:
    name = f"{model}-{variant}-{ratio}"
    art = build_dir / "prune" / name
    prune = [] if ratio == 0 else ["--prune", str(ratio), "--prune-method", _split(variant)[0],
                                   "--set", f'prune.allocation="{_split(variant)[1]}"']
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
    import numpy as np
    import torch

    from edgecomp import zoo
    from edgecomp.config import BuildConfig
    from edgecomp.eval import get_task
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
    module, entry = pruned.payload, zoo.get(model)

    def engine(feeds):
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.asarray(feeds[s.name])) for s in entry.inputs))
        return [out.numpy()]

    res = get_task(entry.task)(engine, None, entry.inputs, None)
    ev = {"model": model, "task": res.task, "metric": res.metric, "value": res.value, "n": res.n, "engine": "torch",
          "higher_is_better": res.higher_is_better, "details": res.details}
    return {"built": False, "eval": ev, "p50_ms": None, "prune": pruned.reports[-1].to_dict(),
            "prune_seconds": round(seconds, 1)}


def run(model: str, ratio: float, variant: str, build_dir: Path, skip_done: bool) -> None:
    out = RESULTS / f"{model}-{variant if ratio else 'unpruned'}-{ratio}.json"
    if skip_done and out.exists():
        return
    built = ratio == 0 or variant in BUILT[model]
    result = run_built(model, ratio, variant, build_dir) if built else run_torch(model, ratio, variant)
    result.update({"model": model, "ratio": ratio, "variant": variant if ratio else "unpruned"})
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
)


def run_ablations(skip_done: bool) -> None:
    out_dir = RESULTS / "ablation"
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, (model, ratio, name, extra) in enumerate(ABLATIONS):
        out = out_dir / f"{model}-{i}.json"
        if skip_done and out.exists():
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
        rows.append(f"| {r['model']} | {r['ratio']} | {r['name']} | {ev['metric']} {ev['value']:.4f} |")
    return ("\n".join(rows) + "\n\nTorch evaluation, same calibration and data as the table above; the default "
            "(rank=loss, uniform, layer by layer) is the `newton` row there. Regenerate: "
            "`python bench/prune_results.py --ablations` (JSON in `bench/results/prune/ablation/`).")


def _rows() -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(RESULTS.glob("*.json"))]


def table() -> str:
    rows = ["| model | ratio | method (allocation) | quality | params | removed of prunable | GFLOPs | "
            "edgecomp p50 ms |", "|---|---|---|---|---|---|---|---|"]
    runs = _rows()
    for model in GRID:
        mine = [r for r in runs if r["model"] == model]
        order = {v: i for i, v in enumerate(("unpruned", *VARIANTS, "newton-global", "magnitude-global"))}
        for r in sorted(mine, key=lambda r: (r["ratio"], order.get(r["variant"], 99))):
            ev, p = r["eval"], r["prune"]
            quality = f"{ev['metric']} {ev['value']:.4f}"
            if "enwiki_perplexity" in ev["details"]:
                quality += f" (enwiki {ev['details']['enwiki_perplexity']:.2f})"
            if "wordsim353_spearman" in ev["details"]:
                quality += (f" (WS353 {ev['details']['wordsim353_spearman']:.3f}, SL999 "
                            f"{ev['details'].get('simlex999_spearman', float('nan')):.3f})")
            params = p["params"][1] if "params" in p else None
            removed = f"{p['removed_share_of_prunable']:.1%}" if "removed_share_of_prunable" in p else "–"
            gflops = f"{p['flops'][1] / 1e9:.2f}" if "flops" in p else "–"
            ms = f"{r['p50_ms']:.2f}" if r.get("p50_ms") else "– (torch eval)"
            method = r["variant"] if r["variant"] == "unpruned" else r["variant"].replace("-global", " (global)")
            rows.append(f"| {model} | {r['ratio']} | {method} | {quality} | {params if params else '–'} | {removed} "
                        f"| {gflops} | {ms} |")
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
    args = ap.parse_args()
    args.build_dir = args.build_dir if args.build_dir.is_absolute() else ROOT / args.build_dir
    if args.ablations and not args.table_only:
        run_ablations(not args.redo)
    elif not args.table_only:
        for model in args.models.split(","):
            ratios = [float(r) for r in args.ratios.split(",")] if args.ratios else GRID[model]
            run(model, 0, "newton", args.build_dir, not args.redo)
            for ratio in ratios:
                for variant in args.variants.split(","):
                    try:
                        run(model, ratio, variant, args.build_dir, not args.redo)
                    except subprocess.CalledProcessError as e:
                        print(f"!! {model} {variant} {ratio} failed: {e}", flush=True)
    plot()
    replace_section(ROOT / "README.md", BEGIN, END, table())
    if (RESULTS / "ablation").exists():
        replace_section(ROOT / "README.md", ABL_BEGIN, ABL_END, ablation_table())


if __name__ == "__main__":
    main()
