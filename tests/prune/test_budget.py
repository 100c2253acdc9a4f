"""Pruning to a latency budget: the search's ends (no pruning needed / budget out of reach) on a tiny ViT.

The bisection in between is exercised by `bench/prune_results.py`-style runs on vit-s16, which take minutes.
"""

from __future__ import annotations

import json

import pytest

from edgecomp import api
from edgecomp.config import BuildConfig
from edgecomp.errors import ConfigError


def test_generous_budget_keeps_the_model_whole(tiny_vit, tmp_path):
    module, spec, feeds = tiny_vit
    cfg = BuildConfig().with_overrides(["prune.budget_ms=10000"])
    out = api.build(module, "x86", tmp_path / "b", cfg, inputs=spec, calibration=feeds)
    prune = {s["stage"]: s for s in json.loads((out / "report.json").read_text())["stages"]}["prune"]
    assert prune["status"] == "skipped" and prune["budget"]["chosen_ratio"] == 0
    assert prune["budget"]["trials"][0]["p50_ms"] > 0
    assert json.loads((out / "manifest.json").read_text())["recipe"]["prune"]["ratio"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no scratch artifacts left


def test_unreachable_budget_names_the_best_latency(tiny_vit, tmp_path):
    module, spec, feeds = tiny_vit
    cfg = BuildConfig().with_overrides(["prune.budget_ms=0.0001"])
    with pytest.raises(ConfigError, match=r"cannot meet 0.0001 ms on x86: the best reachable p50 is .* ms"):
        api.build(module, "x86", tmp_path / "b", cfg, inputs=spec, calibration=feeds)
    assert list(tmp_path.iterdir()) == []


def test_budget_needs_a_local_target(tiny_vit, tmp_path):
    module, spec, feeds = tiny_vit
    cfg = BuildConfig().with_overrides(["prune.budget_ms=5"])
    with pytest.raises(ConfigError, match="runs on this machine"):
        api.build(module, "arm64", tmp_path / "b", cfg, inputs=spec, calibration=feeds)
