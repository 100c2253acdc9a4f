from __future__ import annotations

import numpy as np

from edgecomp.bench.measure import BenchPolicy, provenance, summarize


def test_summarize_percentiles():
    s = summarize([float(x) for x in range(1, 101)])
    assert s["n"] == 100 and s["p50_ms"] == 50.5 and s["mean_ms"] == 50.5 and s["min_ms"] == 1.0
    assert s["p95_ms"] == float(np.percentile(np.arange(1, 101), 95).round(4))


def test_provenance_records_policy():
    p = provenance(BenchPolicy(threads=2, rounds=3))
    assert p["threads"] == 2 and p["rounds"] == 3 and p["interleaved"] and p["cores"] >= 1
