"""Bootstrap intervals: they cover the true median, they are seeded, and ratio warnings fire when they should."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.bench.stats import StatsPolicy, median_ci, noise_warning, ratio, ratios, summarize
from edgecomp.errors import ConfigError


def test_median_ci_contains_the_true_median_of_a_known_distribution():
    # lognormal(mu, sigma): median exp(mu) exactly; skewed like real latencies
    rng = np.random.default_rng(0)
    true_median = np.exp(1.0)
    lo, hi = median_ci(rng.lognormal(1.0, 0.4, size=400))
    assert lo < true_median < hi
    assert hi - lo < 0.2 * true_median  # 400 samples pin the median to well under +-10 %


def test_median_ci_coverage_is_near_its_level():
    rng = np.random.default_rng(11)
    policy = StatsPolicy(resamples=1000)
    hits = 0
    for _ in range(60):
        lo, hi = median_ci(rng.lognormal(0.0, 0.5, size=101), policy)
        hits += lo <= 1.0 <= hi
    assert hits >= 50  # 95 % nominal; the percentile bootstrap of a median runs a little under it


def test_intervals_are_seeded_and_summaries_keep_samples():
    x = np.random.default_rng(3).normal(10, 1, 50)
    assert median_ci(x) == median_ci(x)
    assert median_ci(x, StatsPolicy(seed=1)) != median_ci(x, StatsPolicy(seed=2))
    s = summarize(list(x))
    assert s["n"] == 50 and len(s["samples_ms"]) == 50 and s["p50_ci_ms"][0] <= s["p50_ms"] <= s["p50_ci_ms"][1]
    assert "samples_ms" not in summarize(list(x), keep_samples=False)


def test_ratio_warns_on_overlapping_distributions():
    rng = np.random.default_rng(5)
    a, b = rng.normal(10, 2, 50), rng.normal(10, 2, 50)  # the same engine twice
    r = ratio("a", a, "b", b)
    assert r["ci"][0] < 1.0 < r["ci"][1]
    assert not r["supported"] and "contains 1.0" in r["warning"]


def test_ratio_is_supported_on_clearly_separated_distributions():
    rng = np.random.default_rng(5)
    slow, fast = rng.normal(10, 0.3, 50), rng.normal(5, 0.15, 50)
    r = ratio("slow", slow, "fast", fast)
    assert r["supported"] and r["warning"] is None
    assert r["ci"][0] < 2.0 < r["ci"][1] and r["ci"][0] > 1.0
    assert ratios({"edgecomp": list(fast), "onnxruntime": list(slow)}, "edgecomp")["onnxruntime/edgecomp"]["supported"]


def test_ratio_warns_when_the_interval_is_too_wide_even_if_it_excludes_one():
    rng = np.random.default_rng(2)
    slow, fast = rng.lognormal(np.log(30), 0.6, 12), rng.lognormal(np.log(5), 0.6, 12)
    r = ratio("slow", slow, "fast", fast, StatsPolicy(max_rel_width=0.2))
    assert r["ci"][0] > 1.0 and r["rel_width"] > 0.2
    assert not r["supported"] and "too noisy" in r["warning"]


@pytest.mark.parametrize("kw", [{"resamples": 10}, {"confidence": 1.5}, {"max_rel_width": 0}])
def test_bad_policies_are_config_errors(kw):
    with pytest.raises(ConfigError):
        StatsPolicy(**kw)


def test_noise_warning_fires_on_a_wide_median_interval_only():
    rng = np.random.default_rng(4)
    quiet = summarize(list(rng.normal(10, 0.1, 50)))
    noisy = summarize(list(rng.lognormal(np.log(10), 0.8, 20)))
    assert noise_warning("edgecomp", quiet) is None
    assert "noisy run" in noise_warning("edgecomp", noisy)
