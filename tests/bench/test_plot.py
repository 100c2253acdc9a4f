"""`edgecomp plot`: pairing bench with eval JSON, the Pareto front, PNGs, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgecomp.bench import plot
from edgecomp.bench.stats import summarize
from edgecomp.errors import ConfigError, MissingDataError

PNG = b"\x89PNG\r\n\x1a\n"


def _bench(model, samples):
    return {"model": model, "target": "x86", "device": "local", "batch": 1, "inputs": [],
            "results": {"edgecomp": summarize(samples), "onnxruntime": summarize([s * 1.5 for s in samples])},
            "provenance": {"cpu": "test"}}


def _eval(model, value, higher=True):
    return {"model": model, "task": "t", "metric": "top1" if higher else "perplexity", "value": value, "n": 10,
            "higher_is_better": higher}


def _p(label, ms, value, higher=True):
    return plot.Point("m", label, "q", value, higher, ms)


def test_pareto_front_keeps_only_non_dominated_builds():
    pts = [_p("fast-bad", 1.0, 0.5), _p("slow-good", 3.0, 0.9), _p("dominated", 3.5, 0.8), _p("mid", 2.0, 0.7),
           _p("tie-slower", 2.5, 0.7)]
    assert [p.label for p in plot.pareto_front(pts)] == ["fast-bad", "mid", "slow-good"]
    lower = [_p("a", 1.0, 50.0, False), _p("b", 2.0, 30.0, False), _p("c", 2.5, 40.0, False)]
    assert [p.label for p in plot.pareto_front(lower)] == ["a", "b"]


def test_plot_pairs_bench_and_eval_by_name_and_writes_both_pngs(tmp_path):
    files = []
    for name, ms, value in (("a", 2.0, 0.80), ("b", 1.0, 0.70), ("c", 3.0, 0.60)):
        files.append(tmp_path / f"{name}-bench.json")
        files[-1].write_text(json.dumps(_bench("m", [ms + 0.01 * i for i in range(20)])))
        files.append(tmp_path / f"{name}-eval.json")
        files[-1].write_text(json.dumps(_eval("m", value)))
    (tmp_path / "other.json").write_text(json.dumps({"unrelated": 1}))
    loaded, skipped = plot.load([*files, tmp_path / "other.json"])
    points = plot.pair(loaded)
    assert sorted(p.label for p in points) == ["a", "b", "c"] and skipped == [tmp_path / "other.json"]
    assert all(p.ci_ms and p.ci_ms[0] <= p.p50_ms <= p.ci_ms[1] for p in points)
    assert [p.label for p in plot.pareto_front(points)] == ["b", "a"]
    written = plot.plot_files([*files, tmp_path / "other.json"], tmp_path / "out" / "pareto.png")
    assert (tmp_path / "out" / "pareto.png").read_bytes().startswith(PNG)
    assert (tmp_path / "out" / "pareto-dist.png").read_bytes().startswith(PNG)
    assert "Pareto front of 3 builds" in written[tmp_path / "out" / "pareto.png"]


def test_committed_results_give_a_front_per_model():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "bench" / "results"
    loaded, _ = plot.load(sorted([*root.glob("*.json"), *root.glob("prune/*.json"), *root.glob("merge/*.json")]))
    points = plot.pair(loaded)
    models = {p.model for p in points}
    assert {"vit-fmnist", "minilm-l6", "smollm2-135m"} <= models
    smol = [p for p in points if p.model == "smollm2-135m"]
    assert not smol[0].higher_is_better and len(plot.pareto_front(smol)) >= 2


def test_nothing_to_plot_and_bad_json_are_config_errors(tmp_path):
    (tmp_path / "e.json").write_text(json.dumps(_eval("m", 0.5)))
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot.plot_files([tmp_path / "e.json"], tmp_path / "p.png")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="is not JSON"):
        plot.plot_files([tmp_path / "bad.json"], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a-bench.json").write_text(json.dumps(_bench("m", [1.0, 1.1, 1.2])))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingDataError, match="needs matplotlib"):
        plot.plot_files([tmp_path / "a-bench.json"], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_cli_plot(tmp_path):
    (tmp_path / "a-bench.json").write_text(json.dumps(_bench("m", [1.0, 1.1, 1.2, 1.3])))
    (tmp_path / "a-eval.json").write_text(json.dumps(_eval("m", 0.9)))
    run = [sys.executable, "-m", "edgecomp", "plot", str(tmp_path / "a-bench.json"), str(tmp_path / "a-eval.json"),
           "-o", str(tmp_path / "p.png")]
    r = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p.png").read_bytes().startswith(PNG) and (tmp_path / "p-dist.png").exists()
    r = subprocess.run(run[:5] + ["-o", str(tmp_path / "q.png")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "distributions of 2 runs" in r.stdout  # edgecomp + onnxruntime samples
    r = subprocess.run([*run[:4], str(tmp_path / "missing.json"), "-o", str(tmp_path / "z.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
