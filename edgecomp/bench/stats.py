"""Latency statistics that say how far a number can be trusted: percentiles, a bootstrap confidence
interval on the median, and bootstrap intervals on the ratio of two engines' (or devices') medians.

Contract: every function takes raw per-call samples in milliseconds and is deterministic for a given
``StatsPolicy`` (the resampling generator is seeded). A ratio is *supported* when its interval lies on one
side of 1.0 and is narrower than ``max_rel_width`` of the ratio; otherwise the comparison carries a warning
that goes into the bench JSON and onto stderr.

Example::

    s = summarize(samples_ms)                       # p50/p95/mean/min/n + p50 CI + raw samples
    r = ratio("onnxruntime", ort_ms, "edgecomp", tvm_ms)   # ort p50 / edgecomp p50, with CI and warning
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecomp.errors import ConfigError


@dataclass(frozen=True)
class StatsPolicy:
    resamples: int = 2000  # bootstrap resamples per interval
    confidence: float = 0.95  # two-sided coverage of every interval
    seed: int = 0  # seed of the resampling generator: same samples -> same intervals
    max_rel_width: float = 0.2  # a ratio CI wider than this fraction of the ratio is "too noisy"

    def __post_init__(self):
        if self.resamples < 100:
            raise ConfigError(f"bootstrap resamples {self.resamples} is too few", hint="use 1000 or more")
        if not 0.5 < self.confidence < 1.0:
            raise ConfigError(f"confidence {self.confidence} is not in (0.5, 1)", hint="e.g. 0.95")
        if self.max_rel_width <= 0:
            raise ConfigError(f"max_rel_width {self.max_rel_width} must be positive", hint="e.g. 0.2")


def _boot_medians(a: np.ndarray, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Medians of ``resamples`` resamples (with replacement) of ``a``: shape [resamples]."""
    idx = rng.integers(0, a.size, size=(resamples, a.size))
    return np.median(a[idx], axis=1)


def _interval(values: np.ndarray, confidence: float) -> list[float]:
    tail = (1.0 - confidence) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def median_ci(ms, policy: StatsPolicy = StatsPolicy()) -> list[float]:
    """Percentile-bootstrap interval [lo, hi] (ms) on the median of ``ms`` (n >= 1)."""
    a = np.asarray(ms, dtype=np.float64)
    if a.size == 0:
        raise ConfigError("no latency samples to summarize", hint="run more rounds")
    rng = np.random.default_rng(policy.seed)
    return _interval(_boot_medians(a, rng, policy.resamples), policy.confidence)


def summarize(ms, policy: StatsPolicy = StatsPolicy(), keep_samples: bool = True) -> dict:
    """p50 / p95 / mean / min / n of ``ms``, the bootstrap CI on the median, and the raw samples."""
    a = np.asarray(ms, dtype=np.float64)
    lo, hi = median_ci(a, policy)
    out = {"p50_ms": round(float(np.percentile(a, 50)), 4), "p95_ms": round(float(np.percentile(a, 95)), 4),
           "mean_ms": round(float(a.mean()), 4), "min_ms": round(float(a.min()), 4), "n": int(a.size),
           "p50_ci_ms": [round(lo, 4), round(hi, 4)], "ci_level": policy.confidence}
    if keep_samples:
        out["samples_ms"] = [round(float(x), 4) for x in a]
    return out


def noise_warning(name: str, summary: dict, policy: StatsPolicy = StatsPolicy()) -> str | None:
    """A warning when the CI on ``name``'s median (a ``summarize`` result) is wider than ``max_rel_width``."""
    lo, hi = summary["p50_ci_ms"]
    rel = (hi - lo) / summary["p50_ms"] if summary["p50_ms"] > 0 else float("inf")
    if rel <= policy.max_rel_width:
        return None
    return (f"{name}: the {100 * policy.confidence:g} % CI on its p50 ({lo:.3f}-{hi:.3f} ms) is {100 * rel:.0f} % "
            f"of the p50 wide (limit {100 * policy.max_rel_width:.0f} %): a noisy run")


def ratio(num_name: str, num_ms, den_name: str, den_ms, policy: StatsPolicy = StatsPolicy()) -> dict:
    """p50(num) / p50(den) with a bootstrap CI (the two sample sets resampled independently).

    A ratio above 1 means ``num`` is slower than ``den``. ``warning`` is None when the interval supports
    the claim (it excludes 1.0 and is narrower than ``policy.max_rel_width`` of the ratio).
    """
    a, b = np.asarray(num_ms, dtype=np.float64), np.asarray(den_ms, dtype=np.float64)
    rng = np.random.default_rng(policy.seed)
    boot = _boot_medians(a, rng, policy.resamples) / _boot_medians(b, rng, policy.resamples)
    value = float(np.median(a) / np.median(b))
    lo, hi = _interval(boot, policy.confidence)
    rel_width = (hi - lo) / value
    warning = None
    level = f"{100 * policy.confidence:g} %"
    if lo <= 1.0 <= hi:
        warning = (f"{num_name}/{den_name} = {value:.3f}x but its {level} CI [{lo:.3f}, {hi:.3f}] contains 1.0: "
                   f"this run cannot tell which is faster")
    elif rel_width > policy.max_rel_width:
        warning = (f"{num_name}/{den_name} = {value:.3f}x but its {level} CI [{lo:.3f}, {hi:.3f}] is "
                   f"{100 * rel_width:.0f} % of the ratio wide (limit {100 * policy.max_rel_width:.0f} %): "
                   f"too noisy to quote; rerun on a quieter machine or with more rounds")
    return {"numerator": num_name, "denominator": den_name, "p50_ratio": round(value, 4),
            "ci": [round(lo, 4), round(hi, 4)], "ci_level": policy.confidence,
            "rel_width": round(rel_width, 4), "supported": warning is None, "warning": warning}


def ratios(samples: dict[str, list[float]], base: str, policy: StatsPolicy = StatsPolicy()) -> dict[str, dict]:
    """``{"<other>/<base>": ratio(...)}`` for every entry of ``samples`` other than ``base``."""
    return {f"{name}/{base}": ratio(name, ms, base, samples[base], policy)
            for name, ms in samples.items() if name != base}
