"""Interleaved, per-process latency measurement of several engines on one artifact.

Each engine runs in its own worker process with the same thread count (two runtimes' thread pools
in one process slow each other by up to 3x on small machines). After a warm-up, rounds alternate
between engines (rotating which goes first) so machine drift hits all of them alike. Both runtimes' pool
threads keep spinning for a while after a call, so each engine's turn starts after a short pause: without
it, on 2 cores, onnxruntime measured 30-90 ms on a model it runs in 30 ms alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgecomp.errors import ConfigError


@dataclass(frozen=True)
class BenchPolicy:
    threads: int = 2  # intra-op threads of every engine
    warmup: int = 5  # untimed calls per engine before the first round
    rounds: int = 10  # interleaved rounds
    per_round: int = 5  # timed calls per engine per round
    settle_s: float = 0.2  # pause before each engine's turn: the previous engine's pool threads stop spinning


def summarize(ms: list[float]) -> dict:
    """p50 / p95 / mean / min / n of ``ms`` (no interval, no samples: see ``stats.summarize`` for those)."""
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 4), "p95_ms": round(float(np.percentile(a, 95)), 4),
            "mean_ms": round(float(a.mean()), 4), "min_ms": round(float(a.min()), 4), "n": int(a.size)}


BASELINE = "@baseline"  # engine-name suffix: that engine runs the baseline artifact (``--baseline``)


class _Worker:
    def __init__(self, name: str, art_path: str, threads: int):
        engine = name.removesuffix(BASELINE)
        env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
        self.engine = name
        self.proc = subprocess.Popen([sys.executable, "-m", "edgecomp.bench.worker", engine, art_path, str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env)
        hello = self._read()
        if "error" in hello:
            self.close()
            raise ConfigError(f"the {engine} engine could not load the artifact: {hello['error']}",
                              hint=f"drop {engine} from --compare")

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise ConfigError(f"the {self.engine} benchmark worker died", hint="run with --debug, or drop it")
        return json.loads(line)

    def time(self, n: int) -> list[float]:
        self.proc.stdin.write(json.dumps({"op": "time", "n": n}) + "\n")
        self.proc.stdin.flush()
        return self._read()["ms"]

    def close(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self.proc.wait(timeout=30)


def measure(art_path: str, engines: list[str], policy: BenchPolicy,
            progress: Callable[[str, int, int], None] | None = None) -> dict[str, dict]:
    """``{engine: summarize(samples)}`` of ``measure_samples``."""
    return {name: summarize(ms) for name, ms in measure_samples(art_path, engines, policy, progress).items()}


def measure_samples(art_path: str, engines: list[str], policy: BenchPolicy,
                    progress: Callable[[str, int, int], None] | None = None,
                    baseline_path: str | None = None) -> dict[str, list[float]]:
    """Per-call latencies (ms) of every engine: ``policy.rounds * policy.per_round`` samples each. An engine
    named ``<engine>@baseline`` runs the artifact at ``baseline_path`` instead, in the same rounds."""
    workers: list[_Worker] = []
    try:
        for name in engines:
            if progress:
                progress(f"loading {name}", 0, policy.rounds)
            path = baseline_path if name.endswith(BASELINE) else art_path
            workers.append(_Worker(name, path, policy.threads))
        for w in workers:
            w.time(policy.warmup)
        times: dict[str, list[float]] = {w.engine: [] for w in workers}
        for r in range(policy.rounds):
            order = workers[r % len(workers):] + workers[: r % len(workers)]
            for w in order:
                time.sleep(policy.settle_s)  # ORT and TVM workers spin after a call; do not time against that
                times[w.engine] += w.time(policy.per_round)
            if progress:
                progress("timing", r + 1, policy.rounds)
        return times
    finally:
        for w in workers:
            w.close()


def provenance(policy: BenchPolicy, before: dict | None = None) -> dict:
    """Provenance of a local run: the machine (``before``: a ``provenance.machine()`` taken before timing),
    load and temperature after, the policy. Flat keys (cpu, cores, threads, rounds...) as bench JSON had."""
    from edgecomp.bench import provenance as prov

    before = before or prov.machine()
    after = prov.machine()
    return {"cpu": before["cpu"], "cores": before["cores"], "affinity": before["affinity"],
            "frequency": before["frequency"], "host": before["host"], "os": before["os"], "arch": before["arch"],
            "loadavg_before": before["loadavg"], "loadavg_after": after["loadavg"],
            "thermal_before": before["thermal"], "thermal_after": after["thermal"],
            "versions": before["versions"], **prov.policy_record(policy),
            "interleaved": True, "process_per_engine": True}
