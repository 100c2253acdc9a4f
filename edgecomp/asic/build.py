"""Compile a quantized ONNX model for the simulated accelerator, check it bit-exact, write its files.

``compile_asic(model, inputs, feeds, target)``: partition (``partition.py``), trace one feed for static shapes,
tile and lower every partition (``codegen.py``), run the simulator on the check feeds and require outputs
bit-identical to the numpy integer reference (``reference.py``) running the same host graph, and estimate
the whole model's cost (``estimate.py``). Files under ``OUT/asic/``:

- ``host.onnx``: the host graph (one ``edgecomp.asic.Gemm`` node per partition);
- ``program.bin``: every partition's instructions, 16 bytes each (``isa.encode_program``);
- ``layers.json``: per partition its spec, M, tiling, slice of program.bin, fused DRAM tensors;
- ``dram.npz``: the DRAM image of the constant tensors (packed int4 weights, scales, zero points, bias);
- ``cost.json``: the simulated cost (``estimate.estimate``), ``topology.csv``: SCALE-Sim GEMM topology.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgecomp.asic import codegen, isa, reference
from edgecomp.asic.config import AsicConfig
from edgecomp.asic.estimate import datapath_for, estimate, on_chip_values, scalesim_topology
from edgecomp.asic.hostgraph import HostGraph
from edgecomp.asic.partition import MatMulLayer, Partitioned, partition
from edgecomp.errors import NumericsError


@dataclass
class AsicCompiled:
    host: object  # onnx.ModelProto
    layers: list[dict]
    programs: list[list[isa.Instruction]]
    images: list[dict[int, np.ndarray]]
    cost: dict
    onnx: object = None  # the quantized model (model.onnx), set by the lower stage
    params: list = field(default_factory=list)  # no TVM parameters

    def export_files(self, directory: Path) -> tuple[Path, Path]:
        import onnx

        d = Path(directory) / "asic"
        d.mkdir(parents=True, exist_ok=True)
        onnx.save(self.host, str(d / "host.onnx"))
        blob, start = [], 0
        layers = []
        for meta, prog in zip(self.layers, self.programs, strict=True):
            layers.append({**meta, "program": [start, len(prog)]})
            blob.append(isa.encode_program(prog))
            start += len(prog)
        (d / "program.bin").write_bytes(b"".join(blob))
        (d / "layers.json").write_text(json.dumps(layers, indent=1, sort_keys=True) + "\n")
        arrays = {f"L{i}_{t}": a for i, img in enumerate(self.images) for t, a in sorted(img.items())}
        _write_npz(d / "dram.npz", arrays)
        (d / "cost.json").write_text(json.dumps(self.cost, indent=1, sort_keys=True) + "\n")
        (d / "topology.csv").write_text(scalesim_topology(self.cost))
        return d / "program.bin", d / "dram.npz"


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` with fixed zip timestamps, so the same build gives the same bytes (np.savez stamps now)."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())


def trace(P: Partitioned, feed: dict) -> tuple[dict, dict]:
    """(value shapes, partition name -> (LayerSpec, M)) from one run of the host graph with the reference
    partitions (a matmul partition's K, N and batch come from its operands' shapes)."""
    by_name = {layer.name: layer for layer in P.layers}
    mm_by_name = {layer.name: layer for layer in P.matmuls}
    specs: dict[str, tuple] = {}

    def gemm(name, *xs):
        if name in mm_by_name:
            layer, (a, b) = mm_by_name[name], xs
            y = reference.matmul(layer, a, b)  # raises InputError unless a batched product
            batch = int(a.size // (a.shape[-2] * a.shape[-1]))
            specs[name] = (codegen.LayerSpec.of_matmul(layer, a.shape[-1], b.shape[-1], batch), int(a.shape[-2]))
            return y
        layer = by_name[name]
        specs[name] = (codegen.LayerSpec.of(layer), int(xs[0].size // layer.K))
        return reference.gemm(layer, xs[0])

    shapes: dict = {}
    HostGraph(P.graph, trace=True)(feed, gemm, shapes)
    return shapes, specs


def compile_asic(model, feeds: list[dict], asic_table: dict) -> tuple[AsicCompiled, dict]:
    """Returns (compiled, summary for report.json). ``feeds``: check feeds (the first one is traced)."""
    from edgecomp.asic.runtime import Executor

    cfg = AsicConfig.from_table(asic_table)
    P = partition(model)
    shapes, specs = trace(P, feeds[0])
    fused = on_chip_values(P.graph, specs, shapes, cfg, 4)
    metas, programs, images = [], [], []
    for layer in (*P.layers, *P.matmuls):
        spec, M = specs[layer.name]
        dp = datapath_for(spec, cfg)
        io = _io(layer)
        meta = {"spec": asdict(spec), **{k: v for k, (_, v) in io.items()}, "flat": getattr(layer, "flat", False),
                "M": M, "datapath": dp.name if dp else None}
        prog: list = []
        if dp is not None:
            t = codegen.layer_tiling(spec, M, dp, cfg)
            prog = codegen.build_program(spec, t)
            meta["tiling"] = t.to_dict()
            meta["on_chip"] = sorted({i for i, v in io.values() if v in fused} | set(codegen.on_chip_tensors(spec)))
        metas.append(meta)
        programs.append(prog)
        images.append(codegen.dram_image(layer) if spec.kind == "gemm" else {})
    cost = estimate(P.graph, specs, shapes, cfg)
    compiled = AsicCompiled(P.graph, metas, programs, images, cost)
    sim = Executor(P.graph, metas, programs, images, cfg)
    ref = Executor(P.graph, metas, programs, images, cfg, layers=(*P.layers, *P.matmuls))
    mismatches = []
    for i, f in enumerate(feeds):
        a, b = sim(f), ref(f)
        if not all(x.shape == y.shape and np.array_equal(x.view(np.uint8), y.view(np.uint8))
                   for x, y in zip(a, b, strict=True)):
            mismatches.append(i)
    if mismatches:
        raise NumericsError(f"the accelerator simulator differs from the integer reference on feeds {mismatches}",
                            hint="report this with the model: codegen or the simulator has a bug")
    summary = {
        "partitions": len(P.layers), "attention_matmuls": len(P.matmuls),
        "on_accelerator": sum(m["datapath"] is not None for m in metas[:len(P.layers)]),
        "attention_on_accelerator": sum(m["datapath"] is not None for m in metas[len(P.layers):]),
        "datapaths": sorted({m["datapath"] for m in metas if m["datapath"]}),
        "host_ops": _host_summary(cost["host_ops"]), "skipped_layers": P.skipped,
        "bit_exact_vs_reference": True, "check_feeds": len(feeds),
        "simulated": {k: cost[k] for k in ("latency_ms", "energy_uj", "dram_bytes", "mmu_utilization",
                                            "busy_cycles", "cycles_by_op")},
        "area_mm2": cost["area_mm2"]["total"], "instructions": sum(len(p) for p in programs),
    }
    return compiled, summary


def _io(layer) -> dict[str, tuple[int, str]]:
    """Meta key -> (DRAM tensor id, graph value) of a partition's activations."""
    if isinstance(layer, MatMulLayer):
        return {"a": (codegen.X, layer.a), "b": (codegen.XB, layer.b), "out": (codegen.Y, layer.out)}
    return {"x": (codegen.X, layer.x), "out": (codegen.Y, layer.out)}


def _host_summary(host_ops: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for h in host_ops:
        e = out.setdefault(h["op"], {"count": 0, "flops": 0.0, "nodes": [], "why": h["why"]})
        e["count"] += 1
        e["flops"] += h["flops"]
        e["nodes"].append(h["name"])
    return out
