"""vit-fmnist W4A4 through build -> run -> bench -> eval on the asic-sim target: bit-exact against the integer
reference, the same top-1 as the fake-quant graph, a simulated cost report, and host fallback reported."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.zoo


@pytest.fixture(scope="module")
def vit_w4a4(tmp_path_factory):
    from edgecomp import api
    from edgecomp.config import BuildConfig

    cfg = BuildConfig().with_overrides(['quantize.scheme="w4a4"', 'quantize.method="rtn"', "calib_samples=8"])
    return api.build("vit-fmnist", "asic-sim", tmp_path_factory.mktemp("asic") / "vit-w4a4", cfg)


def test_run_is_bit_exact_against_the_integer_reference(vit_w4a4):
    from edgecomp import api
    from edgecomp.artifact import Artifact
    from edgecomp.asic.runtime import SimRunner

    art = Artifact.open(vit_w4a4)
    ref = SimRunner(art.path, art.inputs, art.manifest["target"]["asic"], reference_only=True)
    rng = np.random.default_rng(0)
    feeds = [art.example_inputs()] + [{"pixels": rng.standard_normal((1, 1, 28, 28)).astype(np.float32)}]
    for f in feeds:
        sim = api.run(vit_w4a4, f)["logits"]
        assert np.array_equal(sim.view(np.uint32), ref(f)[0].view(np.uint32))
    lower = next(s for s in art.report()["stages"] if s["stage"] == "lower")
    assert lower["bit_exact_vs_reference"] and lower["on_accelerator"] == lower["partitions"] == 37
    # 6 blocks: QKᵀ and P·V of each run as integer products on the MMU (model.onnx holds their fake-quant)
    assert lower["attention"] == {"mode": "int8", "quantized": 6} and lower["attention_on_accelerator"] == 12
    assert lower["vs_onnxruntime_rel_l2"] < 1e-4  # float rounding only, against the fake-quant graph
    assert "Conv" in lower["host_ops"]  # the patch embedding has no accelerator support: listed


def test_eval_matches_the_fake_quant_graph(vit_w4a4, or_skip):
    from edgecomp import api
    from edgecomp.artifact import Artifact
    from edgecomp.runtime.engines import OrtEngine

    art = Artifact.open(vit_w4a4)
    sim = or_skip(lambda: api.evaluate(vit_w4a4, limit=64, reference=False))
    ort = api._evaluate(OrtEngine(art, 1), None, art.inputs, art.name, art.manifest["task"], 64, "onnxruntime")
    assert sim["value"] == ort["value"] and sim["n"] == 64


def test_bench_costs_the_artifacts_own_programs(vit_w4a4, monkeypatch):
    """An artifact keeps the schedule it was built with: bench times program.bin, it never re-runs codegen (an
    artifact from an older codegen would otherwise fail the executed-vs-estimated cycle check)."""
    from edgecomp import api
    from edgecomp.asic import codegen

    cycles = api.bench(vit_w4a4)["simulated"]["cycles"]
    monkeypatch.setattr(codegen, "build_program", lambda *a: pytest.fail("bench regenerated a program"))
    assert api.bench(vit_w4a4)["simulated"]["cycles"] == cycles


def test_bench_reports_simulated_cost(vit_w4a4):
    from edgecomp import api

    res = api.bench(vit_w4a4)
    r = res["simulated"]
    assert res["results"]["edgecomp"]["simulated"] and res["results"]["edgecomp"]["p50_ms"] == r["latency_ms"] > 0
    gemms = [row for row in r["layers"] if row["kind"] == "gemm"]
    assert len(gemms) == 37 and all(row["cycles"] >= row["roofline_cycles"] for row in gemms)
    assert r["energy_uj"] > 0 and r["dram_bytes"] > 0 and 0 < r["mmu_utilization"] <= 1
    assert {"Conv", "Gather"} <= {h["op"] for h in r["host_ops"]}


def test_partition_without_a_datapath_falls_back_to_the_host(vit_w4a4):
    """A configuration with no W4A4 datapath: every partition runs on the host, is reported, and the outputs
    are still the integer reference's."""
    import copy

    import onnx

    from edgecomp import api
    from edgecomp.artifact import Artifact
    from edgecomp.asic.build import compile_asic
    from edgecomp.asic.config import AsicConfig
    from edgecomp.asic.runtime import Executor

    art = Artifact.open(vit_w4a4)
    table = copy.deepcopy(art.manifest["target"]["asic"])
    del table["datapath"]["w4a4"]
    model = onnx.load(str(art.path / "model.onnx"))
    feed = art.example_inputs()
    compiled, summary = compile_asic(model, [feed], table)
    assert summary["on_accelerator"] == 0 and summary["partitions"] == 37
    assert summary["attention_on_accelerator"] == 12  # int8 x int8: the W8A8 datapath is still there
    assert sum(h["op"] == "Gemm partition" for h in compiled.cost["host_ops"]) == 37
    assert all("no datapath for W4A4" in h["why"] for h in compiled.cost["host_ops"] if h["op"] == "Gemm partition")
    host = Executor(compiled.host, compiled.layers, compiled.programs, compiled.images, AsicConfig.from_table(table))
    sim = api.run(vit_w4a4, feed)["logits"]
    assert np.array_equal(host(feed)[0].view(np.uint32), sim.view(np.uint32))


def test_scalesim_topology_and_fusion(vit_w4a4):
    """asic/topology.csv is SCALE-Sim v2's GEMM topology (Layer, M, N, K) with one row per partition; the
    streamed GELU chain between fc1 and fc2 never touches DRAM."""
    import json

    from edgecomp.artifact import Artifact

    art = Artifact.open(vit_w4a4)
    lines = (art.path / "asic" / "topology.csv").read_text().splitlines()
    assert lines[0] == "Layer, M, N, K,"
    rows = [line.split(", ") for line in lines[1:]]
    fc1 = next(r for r in rows if r[0] == "/blocks.0/mlp/fc1/MatMulNBits")
    assert fc1[1:] == ["50", "576", "192,"]  # M tokens, N outputs, K inputs
    cost = json.loads((art.path / "asic" / "cost.json").read_text())
    gemm_rows = [r for r in rows if "#h" not in r[0]]  # attention products: one row per head, name#h<i>
    assert len(gemm_rows) == 37 == sum(r["kind"] == "gemm" for r in cost["layers"])
    assert len(rows) - len(gemm_rows) == sum(r["batch"] for r in cost["layers"] if r["kind"] == "matmul") > 0
    erf = next(r for r in cost["layers"] if r["kind"] == "Erf" and "blocks.0" in r["name"])
    assert erf["dram_bytes"] == 0
