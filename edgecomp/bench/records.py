"""The bench JSON: one record per device (local or remote), and one record for several devices.

One device (the contract in ARCHITECTURE.md, extended)::

    {"model", "target", "device", "batch", "inputs",
     "results": {engine: {"p50_ms", "p95_ms", "mean_ms", "min_ms", "n", "p50_ci_ms", "ci_level", "samples_ms"}},
     "ratios": {"<engine>/edgecomp": {"p50_ratio", "ci", "supported", "warning", ...}},
     "warnings": [...], "provenance": {machine, load/thermal before and after, versions, policy, artifact}}

Several devices (``--farm``): ``{"model", "target", "batch", "inputs", "farm", "devices": {key: <one-device
record>}, "ratios": {"<key>/<first key>": ...}, "warnings": [...], "provenance": {client side}}``.
"""

from __future__ import annotations

from dataclasses import asdict

from edgecomp.bench import stats as st
from edgecomp.bench.provenance import artifact_record


def _head(art) -> dict:
    return {"model": art.name, "target": art.manifest["target"]["name"], "batch": 1,
            "inputs": art.manifest["inputs"]}


def _stats_record(stats: st.StatsPolicy) -> dict:
    return {"bootstrap": asdict(stats), "ci_on": "median (p50)", "method": "percentile bootstrap"}


def engines_record(art, device: str, samples: dict[str, list[float]], prov: dict, stats: st.StatsPolicy,
                   base: str = "edgecomp") -> dict:
    """The one-device record from per-engine samples (ms); ratios are ``<engine>/<base>``."""
    ratios = st.ratios(samples, base, stats) if base in samples else {}
    results = {name: st.summarize(ms, stats) for name, ms in samples.items()}
    warnings = [w for name, r in results.items() if (w := st.noise_warning(name, r, stats))]
    warnings += [r["warning"] for r in ratios.values() if r["warning"]]
    return {**_head(art), "device": device, "results": results, "ratios": ratios, "warnings": warnings,
            "provenance": {**prov, **artifact_record(art), "statistics": _stats_record(stats)}}


def farm_record(art, tracker: str, per_device: dict[str, dict], samples: dict[str, list[float]],
                client: dict, stats: st.StatsPolicy) -> dict:
    """Several devices' records under ``devices`` (by key), with ratios of every device to the first."""
    keys = list(per_device)
    ratios = st.ratios(samples, keys[0], stats) if len(keys) > 1 else {}
    warnings = [f"{k}: {w}" for k in keys for w in per_device[k]["warnings"]]
    warnings += [r["warning"] for r in ratios.values() if r["warning"]]
    return {**_head(art), "farm": tracker, "devices": per_device, "ratios": ratios, "warnings": warnings,
            "provenance": {"client": client, **artifact_record(art), "parallel": True,
                           "one_lease_per_device": True, "statistics": _stats_record(stats)}}

