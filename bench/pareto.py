"""The README's latency / quality Pareto front of the zoo builds, from the committed JSON only.

    python bench/pareto.py            # writes bench/results/pareto.png

Builds: the zoo runs (``bench/results/*-bench.json`` + ``*-eval.json``), the pruning grid
(``prune/*.json``: eval + p50), the token-merging grid (``merge/*.json``: bench + eval) and the quantized
speed runs (``speed/<model>-<scheme>.json``, RTN weights) paired with their quality
(``quant/<model>-<scheme>-rtn-eval.json``, ``quant/<model>-fp32-eval.json``). The same pairing by file
name serves ``edgecomp plot``; only the speed/quant pairing, which crosses directories, is spelled out here.
The rows come from separate sessions on a shared 2-core machine: latencies of one build measured twice
differ by up to ~20 %, so read the front as a map of the trade-off, not as a ranking within that noise.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edgecomp.bench import plot

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUT = RESULTS / "pareto.png"


def speed_points() -> list[plot.Point]:
    """Quantized (and fp32) speed runs paired with the quality of the same scheme (RTN weights)."""
    points = []
    for f in sorted((RESULTS / "speed").glob("*.json")):
        d = json.loads(f.read_text())
        scheme = d["scheme"]
        ev = RESULTS / "quant" / (f"{d['model']}-fp32-eval.json" if scheme == "fp32"
                                  else f"{d['model']}-{scheme}-rtn-eval.json")
        if not ev.exists():
            continue
        q = json.loads(ev.read_text())
        label = "fp32" if scheme == "fp32" else f"{scheme} rtn"
        points.append(plot.Point(d["model"], label, q["metric"], float(q["value"]), bool(q["higher_is_better"]),
                                 float(d["results"]["edgecomp"]["p50_ms"])))
    return points


def main() -> None:
    files = [*RESULTS.glob("*-bench.json"), *RESULTS.glob("*-eval.json"), *RESULTS.glob("prune/*.json"),
             *RESULTS.glob("merge/*.json")]
    loaded, _ = plot.load(sorted(files))
    points = [dataclasses.replace(p, label="fp32 (zoo run)") if p.label == p.model else p
              for p in plot.pair(loaded)] + speed_points()
    plot.pareto_png(points, OUT, title="edgecomp builds of the zoo models, x86, batch 1, 2 threads: "
                                       "latency vs quality (committed bench/results JSON)")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(points)} builds")


if __name__ == "__main__":
    main()
