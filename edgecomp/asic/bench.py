"""``edgecomp bench`` for an asic-sim artifact: simulated latency, energy, utilization, DRAM traffic.

Wall-clock time of the simulator means nothing, so the artifact is run once through the simulator with
timing on (example inputs), every value's shape is traced, and ``estimate.estimate`` costs the whole model.
The per-partition cycles of the executed run must equal the estimate's (timing does not depend on data);
``datapath`` re-costs the same programs on another datapath (e.g. "fp16", cost only: the functional
simulator runs the integer datapaths).
"""

from __future__ import annotations

from edgecomp.asic import codegen
from edgecomp.asic.config import AsicConfig
from edgecomp.asic.estimate import estimate
from edgecomp.asic.hostgraph import HostGraph
from edgecomp.asic.runtime import Executor, load
from edgecomp.errors import NumericsError


def simulate(path, feeds: dict, asic_table: dict, datapath: str = "auto", act_bits: int | None = None) -> dict:
    """The simulated cost report of the artifact at ``path`` on ``feeds`` (``act_bits``: estimate.estimate's
    cost-only what-if)."""
    host, metas, programs, images = load(path)
    cfg = AsicConfig.from_table(asic_table)
    ex = Executor(host, metas, programs, images, cfg, timing=True)
    shapes: dict = {}
    HostGraph(host, trace=True)(feeds, ex.gemm, shapes)
    specs = {m["spec"]["name"]: (codegen.LayerSpec(**m["spec"]), m["M"]) for m in metas}
    own = {m["spec"]["name"]: p for m, p in zip(metas, programs, strict=True) if p} if datapath == "auto" else None
    report = estimate(host, specs, shapes, cfg.with_datapath(datapath), act_bits, own)
    if datapath == "auto" and act_bits is None:
        est = {r["name"]: r["cycles"] for r in report["layers"] if r["kind"] in ("gemm", "matmul")}
        ran = {name: st.cycles for name, st in ex.stats.items()}
        if est != ran:
            raise NumericsError("simulated cycles of the executed run differ from the cost estimate",
                                hint="report this: the timing model depends on data where it must not")
    return report


def bench_json(art, datapath: str = "auto") -> dict:
    """The ``edgecomp bench`` JSON for an asic-sim artifact (``results.edgecomp`` in simulated ms)."""
    rep = simulate(art.path, art.example_inputs(), art.manifest["target"]["asic"], datapath)
    ms = rep["latency_ms"]
    return {"model": art.name, "target": art.manifest["target"]["name"], "device": "asic-sim (simulated)",
            "batch": 1, "inputs": art.manifest["inputs"],
            "results": {"edgecomp": {"p50_ms": ms, "p95_ms": ms, "mean_ms": ms, "min_ms": ms, "n": 1,
                                     "simulated": True}},
            "simulated": rep}


def print_summary(res: dict) -> None:
    """The simulated report as a few lines: totals, per-unit busy cycles, the costliest layers."""
    import click

    r = res["simulated"]
    click.echo(f"{res['model']} on {res['target']} (simulated, batch 1): latency {r['latency_ms']:.4f} ms, "
               f"energy {r['energy_uj']:.2f} uJ, DRAM {r['dram_bytes'] / 1e6:.3f} MB, "
               f"MMU utilization {r['mmu_utilization']:.1%}, area proxy {r['area_mm2']['total']:.2f} mm^2")
    click.echo("busy cycles: " + ", ".join(f"{k} {v:,.0f}" for k, v in r["busy_cycles"].items())
               + f" (total {r['cycles']:,.0f})")
    click.echo("cycles by op: " + ", ".join(f"{k} {v:,.0f}" for k, v in list(r["cycles_by_op"].items())[:6]))
    click.echo(f"{'layer':<40} {'unit':>5} {'cycles':>10} {'DRAM B':>10} {'energy nJ':>10} {'util':>6}")
    for row in sorted(r["layers"], key=lambda x: -x["cycles"])[:12]:
        util = f"{row['mmu_utilization']:.0%}" if "mmu_utilization" in row else ""
        click.echo(f"{row['name'][:40]:<40} {row['unit']:>5} {row['cycles']:>10,.0f} {row['dram_bytes']:>10,.0f} "
                   f"{row['energy_pj'] / 1e3:>10.1f} {util:>6}")
    for h in r["host_ops"]:
        click.echo(f"on host CPU: {h['name']} ({h['op']}: {h['why']})")
