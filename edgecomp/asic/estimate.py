"""Whole-model simulated cost: every partition's program timed by the simulator, every host-graph op costed.

``estimate(graph, specs, shapes, cfg)`` walks the partitioned graph in order (ops run one after another; inside
a partition DMA, MMU and VCU overlap as the simulator schedules them) and returns the JSON the report and
``edgecomp bench`` show: totals, a per-unit breakdown, one row per layer, the ops left on the host CPU, the
GEMM roofline cross-check and an area proxy. ``specs``: partition name -> (LayerSpec, M). ``shapes``: value
name -> (shape, dtype) from one traced run. Host-CPU ops are listed, not timed: the latency is the
accelerator's. An activation x activation partition (attention products, kind "matmul") is one program over
every leading index (heads software pipelined, codegen.matmul_program).
"""

from __future__ import annotations

from edgecomp.asic import codegen
from edgecomp.asic.config import AsicConfig
from edgecomp.asic.cost import Energy, roofline, vector_op
from edgecomp.asic.partition import is_matmul, is_partition
from edgecomp.asic.sim import Simulator

ACCEL_UNITS = ("vcu", "mmu", "layout", "free")


def datapath_for(spec: codegen.LayerSpec, cfg: AsicConfig):
    return cfg.datapath(spec.wbits, 8 if spec.qmax > 7 else 4)


STREAM = frozenset({"elementwise", "exp2", "log2", "erf", "reduce", "softmax", "layernorm"})  # row-local VCU ops
ELEMENTWISE = frozenset({"elementwise", "exp2", "log2", "erf"})


VIEW_OPS = frozenset({"Reshape", "Flatten", "Unsqueeze", "Squeeze", "Identity"})  # same data, another shape
ROW_CONSUMERS = frozenset({"gemm", "amm"})  # partitions that quantize their (left) input row by row


def _kind(node, specs: dict, cfg: AsicConfig) -> str | None:
    """Fusion class of a host-graph node: "gemm" / "amm" (activation matmul) partition, a VECTOR_OPS class, or
    None (host CPU, or a partition without a datapath)."""
    from edgecomp.asic.cost import VECTOR_OPS

    if is_partition(node):
        if datapath_for(specs[node.name][0], cfg) is None:
            return None
        return "amm" if is_matmul(node) else "gemm"
    return VECTOR_OPS.get(node.op_type)


def on_chip_values(graph, specs: dict, shapes: dict, cfg: AsicConfig, float_bytes: int,
                   absorbed: set[str] | None = None) -> set[str]:
    """Values that stay in SRAM (fusion rules, docs/asic.md): produced and consumed only by accelerator ops, and
    either no larger than ``cfg.fuse_bytes``, or streamed: a row-local VCU op (elementwise, last-axis reduction,
    softmax, LayerNorm) feeding only row-local VCU ops or the left input of partitions (which quantize row by
    row), a GEMM partition feeding only elementwise ops (its output tiles are consumed as they are stored), or
    an attention-product partition feeding only row-local VCU ops (a block of rows is complete, every column,
    before the next block starts). The right operand of an attention product is quantized per column over all
    rows, so it is never streamed. View ops (Reshape, Flatten, (Un)Squeeze, Identity) are transparent: their
    output is the same data, so the decision looks through them (onnxruntime's Reshape -> Gemm -> Reshape form
    fuses like a plain MatMul); so are the head split / merge Transposes an attention product's DMA absorbs
    (``absorbed_layout``, computed unless the caller passes it: a head is a strided tile of the same data).
    Shape reads no data. Graph inputs and outputs always live in DRAM."""
    from edgecomp.asic.cost import _itemsize, _numel

    def kind(node) -> str | None:
        return _kind(node, specs, cfg)

    if absorbed is None:
        absorbed = absorbed_layout(graph, specs, cfg)
    g = graph.graph
    outputs = {v.name for v in g.output}
    boundary = {v.name for v in g.input} | outputs
    producer: dict[str, str | None] = {}
    direct: dict[str, list] = {}  # value -> consumer kinds, or ("view", output) for a view op reading it
    for node in g.node:
        k = kind(node)
        view = (node.op_type in VIEW_OPS and not is_partition(node)) or node.name in absorbed
        for v in node.output:
            producer[v] = producer.get(node.input[0]) if view and node.input else k
        for j, v in enumerate(node.input):
            if node.op_type == "Shape" or (view and j > 0):
                continue  # metadata only: a shape, or a Reshape's target shape
            direct.setdefault(v, []).append(("view", node.output[0]) if view else
                                            "amm_b" if k == "amm" and j == 1 else k)

    def effective(v: str) -> list:
        out = []
        for c in direct.get(v, []):
            if isinstance(c, tuple):
                out += effective(c[1]) + ([None] if c[1] in outputs else [])
            else:
                out.append(c)
        return out

    consumers = {v: effective(v) for v in direct}
    keep = set()
    for v, pk in producer.items():
        cons = consumers.get(v, [])
        if pk is None or v in boundary or v not in shapes or not cons or any(c is None for c in cons):
            continue
        s, dt = shapes[v]
        small = _numel(s) * _itemsize(dt, float_bytes) <= cfg.fuse_bytes
        streamed = (pk in STREAM and all(c in STREAM or c in ROW_CONSUMERS for c in cons)) or \
            (pk == "gemm" and all(c in ELEMENTWISE for c in cons)) or \
            (pk == "amm" and all(c in STREAM for c in cons))
        if small or streamed:
            keep.add(v)
    return keep


def absorbed_layout(graph, specs: dict, cfg: AsicConfig) -> set[str]:
    """Names of the Transposes an attention-product partition's DMA absorbs (a head split / merge is a strided
    2-D tile of the [tokens, heads x dim] tensor, docs/asic.md): a Transpose whose input such a partition
    writes, or whose every reader is such a partition or an elementwise op read only by such partitions."""
    g = graph.graph
    kinds = [_kind(n, specs, cfg) for n in g.node]
    producer = {v: i for i, n in enumerate(g.node) for v in n.output}
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(g.node):
        for v in n.input:
            readers.setdefault(v, []).append(i)

    def feeds_amm(v: str, depth: int = 0) -> bool:
        rs = readers.get(v, [])
        return bool(rs) and all(kinds[r] == "amm" or (depth == 0 and kinds[r] in ELEMENTWISE
                                                      and feeds_amm(g.node[r].output[0], 1)) for r in rs)

    out = set()
    for n in g.node:
        if n.op_type != "Transpose":
            continue
        p = producer.get(n.input[0])
        if (p is not None and kinds[p] == "amm") or feeds_amm(n.output[0]):
            out.add(n.name)
    return out


def _partition_row(node, spec: codegen.LayerSpec, M: int, dp, cfg: AsicConfig, fused: set,
                   act_bits: int | None = None, program: list | None = None) -> tuple[dict, object]:
    """(cost-report row, Stats) of one partition on datapath ``dp``: ``program`` if given (an artifact's own),
    else the one codegen builds now."""
    s = spec.as_fp16() if dp.weight_bits == 16 else spec
    t = codegen.layer_tiling(s, M, dp, cfg)
    io = ((codegen.X, node.input[0]), (codegen.XB, node.input[1]), (codegen.Y, node.output[0])) \
        if s.kind == "matmul" else ((codegen.X, node.input[0]), (codegen.Y, node.output[0]))
    on_chip = frozenset({i for i, v in io if v in fused} | set(codegen.on_chip_tensors(s)))
    bits = codegen.tensor_bits(s, act_bits)
    # a matmul program covers every leading index: one run is the whole partition
    st = Simulator(cfg, dp, functional=False).run(program or codegen.build_program(s, t), {}, bits, on_chip)
    b_bits = (16 if dp.weight_bits == 16 else 32) if codegen.XB not in on_chip else 0
    roof = roofline(M, s.K, s.N, b_bits if s.kind == "matmul" else s.wbits, dp.act_bits, dp, cfg,
                    codegen.X not in on_chip, codegen.Y not in on_chip)
    peak = cfg.rows * cfg.cols * dp.macs_per_pe
    row = {"name": node.name, "kind": s.kind, "unit": "mmu", "datapath": dp.name,
           "shape": [M, s.K, s.N], "batch": s.batch, "tiling": t.to_dict(), "cycles": st.cycles,
           "busy_cycles": st.busy, "macs": st.macs, "dram_bytes": st.dram_bytes,
           "energy_pj": st.energy.total, "mmu_utilization": st.macs / (st.cycles * peak),
           "roofline_cycles": roof["bound_cycles"] * s.batch, "roofline_bound": roof["bound"],
           "fused_io": sorted(codegen.TENSOR_NAMES[i] for i in on_chip)}
    return row, st


def estimate(graph, specs: dict, shapes: dict, cfg: AsicConfig, act_bits: int | None = None,
             programs: dict | None = None) -> dict:
    """The cost report (module docstring). ``act_bits``: a cost-only what-if width of activations in DRAM and
    SRAM copies (default 32, 16 on the fp16 datapath); the functional simulator keeps fp32. ``programs``:
    partition name -> the instructions an artifact holds (costed as they are, so an artifact built by an
    older codegen keeps its own schedule); without it codegen builds each program."""
    fp16 = cfg.gemm_datapath != "auto" and cfg.datapath_named(cfg.gemm_datapath).weight_bits == 16
    float_bytes = act_bits // 8 if act_bits else 2 if fp16 else 4
    mmu_float = cfg.datapath_named(cfg.gemm_datapath) if fp16 else None
    absorbed = absorbed_layout(graph, specs, cfg)
    fused = on_chip_values(graph, specs, shapes, cfg, float_bytes, absorbed)
    rows, host_ops, used = [], [], set()
    total = Energy()
    busy = {"dma": 0.0, "mmu": 0.0, "vcu": 0.0}
    cycles = macs = dram = 0.0
    gemm_cycles = 0.0
    floor = 0.0  # the latency if data movement were free: per partition its busier compute unit, per VCU op its lanes
    for node in graph.graph.node:
        if is_partition(node):
            spec, M = specs[node.name]
            dp = datapath_for(spec, cfg)
            if dp is None:
                host_ops.append({"name": node.name, "op": "MatMulQ partition" if spec.kind == "matmul"
                                 else "Gemm partition", "why": "no datapath for "
                                 f"W{spec.wbits}A{8 if spec.qmax > 7 else 4} in this configuration",
                                 "flops": 2.0 * M * spec.K * spec.N * spec.batch})
                continue
            used.add(dp.name)
            row, st = _partition_row(node, spec, M, dp, cfg, fused, act_bits, (programs or {}).get(node.name))
            row["bound"] = max(st.busy, key=st.busy.get)
            rows.append(row)
            floor += max(st.busy["mmu"], st.busy["vcu"])
            cycles += st.cycles
            gemm_cycles += st.cycles
            macs += st.macs
            dram += st.dram_bytes
            total.add(st.energy)
            for k in busy:
                busy[k] += st.busy[k]
            continue
        if node.name in absorbed:  # strided DMA of the attention partition next to it
            continue
        c = vector_op(node, shapes, cfg, lambda v: v in fused, float_bytes, mmu_float)
        if c.unit == "host":
            host_ops.append({"name": node.name, "op": node.op_type, "why": "no accelerator support",
                             "flops": c.flops})
            continue
        if c.unit == "free":
            continue
        dma_bound = c.unit == "layout" or c.dram_bytes / cfg.dram_bytes_per_cycle >= c.cycles * (1 - 1e-9)
        floor += c.lane_ops / cfg.vcu_lanes if c.unit == "vcu" else c.cycles if c.unit == "mmu" else 0.0
        rows.append({"name": node.name, "kind": node.op_type, "unit": c.unit, "cycles": c.cycles,
                     "dram_bytes": c.dram_bytes, "energy_pj": c.energy.total, "vcu_lane_ops": c.lane_ops,
                     "bound": "dma" if dma_bound else c.unit})
        cycles += c.cycles
        dram += c.dram_bytes
        total.add(c.energy)
        busy["mmu" if c.unit == "mmu" else "vcu" if c.unit == "vcu" else "dma"] += c.cycles
    seconds = cycles / (cfg.clock_ghz * 1e9)
    leakage_pj = cfg.leakage_mw * 1e-3 * seconds * 1e12
    by_kind: dict[str, float] = {}
    by_bound = {"dma": 0.0, "mmu": 0.0, "vcu": 0.0}
    for r in rows:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0.0) + r["cycles"]
        by_bound[r["bound"]] += r["cycles"]
    peak_any = max((cfg.rows * cfg.cols * d.macs_per_pe for d in cfg.datapaths if d.name in used), default=1)
    return {
        "config": {"gemm_datapath": cfg.gemm_datapath, "datapaths_used": sorted(used),
                   "array": [cfg.rows, cfg.cols], "clock_ghz": cfg.clock_ghz, "dram_gbps": cfg.dram_gbps},
        "latency_ms": seconds * 1e3, "cycles": cycles, "throughput_per_s": 1.0 / seconds if seconds else 0.0,
        "energy_uj": (total.total + leakage_pj) * 1e-6,
        "energy_breakdown_uj": {**{k.replace("_pj", ""): v * 1e-6 for k, v in total.to_dict().items()},
                                "leakage": leakage_pj * 1e-6},
        "dram_bytes": dram, "gemm_macs": macs,
        "mmu_utilization": macs / (gemm_cycles * peak_any) if gemm_cycles else 0.0,
        "busy_cycles": busy, "cycles_by_op": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "cycles_by_bound": by_bound, "compute_floor_cycles": floor,
        "fused_values": len(fused), "absorbed_transposes": len(absorbed), "area_mm2": area(cfg, used),
        "layers": rows, "host_ops": host_ops,
    }


def area(cfg: AsicConfig, used: set[str]) -> dict:
    """Area proxy, mm^2: the PE array of the largest datapath used, the VCU lanes, SRAM and control."""
    pe = max((d.pe_um2 for d in cfg.datapaths if d.name in used), default=0.0)
    sram_mib = (cfg.weight_bytes + cfg.act_bytes + cfg.acc_bytes + cfg.out_bytes) / 2**20
    parts = {"mmu": cfg.rows * cfg.cols * pe * 1e-6, "vcu": cfg.vcu_lanes * cfg.vcu_lane_um2 * 1e-6,
             "sram": sram_mib * cfg.sram_mm2_per_mib, "control": cfg.control_mm2}
    return {**parts, "total": sum(parts.values())}


def scalesim_topology(report: dict) -> str:
    """The report's GEMM layers as a SCALE-Sim topology CSV (GEMM form: Layer, M, N, K; SCALE-Sim v2's
    ``--gemm`` topology: M = rows of the activation, N = output channels, K = reduction). An attention product
    gives one row per leading index (``name#h<i>``)."""
    lines = ["Layer, M, N, K,"]
    for r in report["layers"]:
        if r["kind"] in ("gemm", "matmul"):
            M, K, N = r["shape"]
            names = [r["name"]] if r["kind"] == "gemm" else [f"{r['name']}#h{h}" for h in range(r["batch"])]
            lines += [f"{name}, {M}, {N}, {K}," for name in names]
    return "\n".join(lines) + "\n"
