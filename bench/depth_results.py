"""Regenerate the README's depth table and figure: depth-vit through every stage, built and measured by the CLI.

    python bench/depth_results.py                       # every run below, skipping runs with a JSON already
    python bench/depth_results.py --only fp32,w4a4-rtn  # some runs (rebuilt)
    python bench/depth_results.py --table-only          # README table + PNG from the JSON
    python bench/depth_results.py --bench-only          # re-measure the built artifacts, keep the rest

Each run is ``edgecomp build depth-vit ...`` then ``edgecomp eval ART --json`` (rendered test split: AbsRel,
δ1 against exact depth; the Middlebury scenes aligned in inverse depth), then ``edgecomp bench ART --json``
(x86: measured p50; asic-sim: simulated latency), or build only where no runner exists here (arm64).
One JSON per run lands in bench/results/depth/, the figure next to them.
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
RESULTS = ROOT / "bench" / "results" / "depth"
BUILD = ROOT / "out" / "depth"
MODEL = "depth-vit"
RECON = [
    "--set",
    "quantize.recon_seconds=30",
]  # QuartDepth reconstruction budget (the quant table used 60 s; 30 s fits this time box)
BEGIN, END = "<!-- depth-results:begin -->", "<!-- depth-results:end -->"


def _q(scheme: str, method: str) -> list[str]:
    return ["--quant", scheme, "--quant-method", method, *RECON]


# name -> (target, build arguments, what to measure: "bench" | "build")
RUNS: dict[str, tuple[str, list[str], str]] = {
    "fp32": ("x86", [], "bench"),
    "w4a8-quartdepth": ("x86", _q("w4a8", "quartdepth"), "bench"),
    "w4a4-quartdepth": ("x86", _q("w4a4", "quartdepth"), "bench"),
    "w4a4-rtn": ("x86", _q("w4a4", "rtn"), "bench"),
    "w8a8-rtn": ("x86", _q("w8a8", "rtn"), "bench"),
    "tome-r4": ("x86", ["--merge-r", "4", "--merge-method", "tome"], "bench"),
    "newton-0.3": ("x86", ["--prune", "0.3", "--prune-method", "newton"], "bench"),
    "w4a8-rtn": ("x86", _q("w4a8", "rtn"), "bench"),
    "w8a8-quartdepth": ("x86", _q("w8a8", "quartdepth"), "bench"),
    "asic-w4a8-rtn": ("asic-sim", _q("w4a8", "rtn"), "bench"),
    "arm64-w4a8-rtn": ("arm64", _q("w4a8", "rtn"), "build"),
}
FIGURE_RUNS = ("fp32", "w4a4-rtn", "w4a4-quartdepth")


def edgecomp(*args: str) -> None:
    print("+ edgecomp", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "edgecomp", *args], check=True, cwd=ROOT)


def _bench(name: str, art: Path, target: str) -> dict:
    """``edgecomp bench`` of ``art``; other x86 runs interleave their rounds with the fp32 build's (the VM's
    speed drifts by tens of percent between separate runs, so only the interleaved ratio compares builds).
    40 rounds of 5 calls: these builds take a few ms, and 50 calls left CIs as wide as ±40 %."""
    path = RESULTS / f"{name}-bench.json"
    baseline = ["--baseline", str(BUILD / "fp32")] if target == "x86" and name != "fp32" else []
    edgecomp("bench", str(art), "--compare", "none", "--rounds", "40", *baseline, "--json", str(path))
    out = json.loads(path.read_text())
    path.unlink()
    return out


def rebench(name: str) -> None:
    """Measure the existing artifact of ``name`` again; its build and eval records stay."""
    path = RESULTS / f"{name}.json"
    out = json.loads(path.read_text())
    if "bench" in out:
        out["bench"] = _bench(name, BUILD / name, out["target"])
        path.write_text(json.dumps(out, indent=2) + "\n")


def run(name: str) -> None:
    target, args, measure = RUNS[name]
    art = BUILD / name
    t0 = time.time()
    edgecomp("build", MODEL, "--target", target, *args, "-o", str(art))
    out = {
        "name": name,
        "model": MODEL,
        "target": target,
        "build_args": args,
        "build_wall_s": round(time.time() - t0, 1),
        "command": f"edgecomp build {MODEL} --target {target} {' '.join(args)}".strip(),
    }
    report = {s["stage"]: s for s in json.loads((art / "report.json").read_text())["stages"]}
    out["stages"] = {k: v.get("status") for k, v in report.items()}
    if measure != "build":
        ev_path = RESULTS / f"{name}-eval.json"
        edgecomp("eval", str(art), *(["--no-reference"] if name != "fp32" else []), "--json", str(ev_path))
        out["eval"] = json.loads(ev_path.read_text())
        ev_path.unlink()
        out["bench"] = _bench(name, art, target)
    files = json.loads((art / "manifest.json").read_text())["files"]
    out["params_bin_bytes"] = files.get("params.bin", {}).get("bytes")
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")


def _latency(r: dict) -> str:
    b = r.get("bench")
    if not b:
        return "built (no runner here)"
    if "simulated" in b:
        sim = b["simulated"]
        return f"{sim['latency_ms']:.3f} (simulated; {len(sim['host_ops'])} host-CPU ops listed, not timed)"
    cell = f"{b['results']['edgecomp']['p50_ms']:.2f}"
    ratio = b.get("ratios", {}).get("edgecomp@baseline/edgecomp")
    if ratio:  # fp32 p50 / this p50 in the same interleaved run: > 1 is faster than fp32
        cell += f" ({ratio['p50_ratio']:.2f}x, CI {ratio['ci'][0]:.2f}-{ratio['ci'][1]:.2f})"
    return cell


def table() -> str:
    runs = {n: json.loads((RESULTS / f"{n}.json").read_text()) for n in RUNS if (RESULTS / f"{n}.json").exists()}
    if "fp32" not in runs:
        return "(no depth results yet: run `python bench/depth_results.py`)\n"
    fp = runs["fp32"]["eval"]["details"]
    rows = [
        "| variant | target | test AbsRel | Δ vs fp32 | test δ1 | Δ vs fp32 | Motorcycle AbsRel / δ1 | "
        "Aloe AbsRel / δ1 | latency ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in runs.items():
        if "eval" not in r:
            rows.append(f"| {name} | {r['target']} | – | – | – | – | – | – | {_latency(r)} |")
            continue
        d = r["eval"]["details"]
        mb = " | ".join(
            f"{d[f'{s}_abs_rel']:.4f} / {d[f'{s}_delta1']:.4f}" if f"{s}_abs_rel" in d else "–"
            for s in ("motorcycle", "aloe")
        )
        rows.append(
            f"| {name} | {r['target']} | {d['test_abs_rel']:.4f} | {d['test_abs_rel'] - fp['test_abs_rel']:+.4f} "
            f"| {d['test_delta1']:.4f} | {d['test_delta1'] - fp['test_delta1']:+.4f} | {mb} | {_latency(r)} |"
        )
    torch_ref = runs["fp32"]["eval"]["details"].get("reference_test_abs_rel")
    note = f"\nfp32 torch on the same scenes: AbsRel {torch_ref:.4f}. " if torch_ref is not None else "\n"
    return (
        "\n".join(rows)
        + "\n"
        + note
        + f"Test split: {fp['test_scenes']} rendered scenes, metric depth, no alignment. Middlebury: centred "
        "square crop, prediction aligned by scale and shift in inverse depth. x86 latency: `edgecomp bench` "
        "p50, batch 1, 2 threads; in brackets the speed-up over the fp32 build measured in the same run, rounds "
        "interleaved (`--baseline`; > 1 is faster), with its 95 % CI; asic-sim: simulated. QuartDepth runs use "
        "`quantize.recon_seconds=30`.\n\n"
        "![depth maps](bench/results/depth/depth_maps.png)\n\n"
        "Regenerate: `python bench/depth_results.py` (JSON in `bench/results/depth/`).\n"
    )


def figure() -> None:
    """Input / ground truth / one column per FIGURE_RUNS artifact, for 3 test scenes and the two Middlebury
    scenes (inverse depth, each row on its ground truth's colour range; Middlebury predictions aligned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from edgecomp import api
    from edgecomp.eval import depth, depth_metrics
    from edgecomp.zoo.data import depth_scenes, middlebury

    arts = [n for n in FIGURE_RUNS if (BUILD / n / "manifest.json").exists()]
    x, d = depth._test_split(64, 3)
    rows = [(f"test {i}", x[i : i + 1], d[i], None, None) for i in range(3)]
    for s in middlebury.SCENES:
        sc = middlebury.crop_square(middlebury.load(s))
        rows.append((s, middlebury.model_input(sc, 64), sc.depth, sc.valid, sc.image))
    fig, axes = plt.subplots(len(rows), 2 + len(arts), figsize=(2.2 * (2 + len(arts)), 2.2 * len(rows)))
    for r, (label, inp, gt, valid, img) in enumerate(rows):
        valid = np.ones_like(gt, bool) if valid is None else valid
        shown = (
            img if img is not None else ((inp[0].transpose(1, 2, 0) * depth_scenes.STD + depth_scenes.MEAN).clip(0, 1))
        )
        inv = np.where(valid, 1 / np.where(valid, gt, 1), np.nan)
        lo, hi = np.nanpercentile(inv, 1), np.nanpercentile(inv, 99)
        panels = [("input", shown, None), ("ground truth", inv, None)]
        for a in arts:
            pred = api.run(BUILD / a, {"pixels": inp})["depth"][0, 0].astype(np.float64)
            if pred.shape != gt.shape:
                pred = np.maximum(depth._resize(pred, gt.shape[0]), 1e-6)
                pred = depth_metrics.align_inverse_depth(pred, gt, valid)
            m = depth_metrics.image_metrics(pred, gt, valid)
            panels.append((f"{a}\nAbsRel {m['abs_rel']:.3f} δ1 {m['delta1']:.2f}", 1 / pred, None))
        for c, (title, im, _) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(im, cmap=None if c == 0 else "magma", vmin=None if c == 0 else lo, vmax=None if c == 0 else hi)
            ax.set_title(f"{label}: {title}" if c == 0 else title, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(RESULTS / "depth_maps.png", dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated run names (rebuilt even if done)")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument("--bench-only", action="store_true", help="re-measure the built artifacts of --only (or all)")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    only = [n for n in args.only.split(",") if n]
    for n in only:
        if n not in RUNS:
            sys.exit(f"unknown run {n!r}: {', '.join(RUNS)}")
    if args.bench_only:
        for n in only or [n for n in RUNS if (RESULTS / f"{n}.json").exists()]:
            rebench(n)
    elif not args.table_only:
        for n in only or [n for n in RUNS if not (RESULTS / f"{n}.json").exists()]:
            run(n)
    if not args.no_figure:
        figure()
    if not replace_section(BEGIN, END, table()):
        print(f"README has no {BEGIN} section: table not written", file=sys.stderr)


if __name__ == "__main__":
    main()
