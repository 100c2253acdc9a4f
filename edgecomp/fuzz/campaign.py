"""Run N generated cases of one target through a sandbox and count how each ended.

``campaign(target, n, seed, fixtures) -> dict``: ``{"target", "cases", "seed", "outcomes": {class: count},
"errors": {EdgecompError type: count}, "bad": [first cases that ended traceback/crash/hang, with payload],
"seconds", "max_case_s", "worker_starts"}``. Generation is hypothesis with a fixed seed and the generate
phase only (no shrinking, no example database), so a campaign is repeatable and runs exactly ``n`` cases.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgecomp.fuzz.sandbox import Sandbox

BAD = ("traceback", "crash", "hang")
KEEP_BAD = 20  # cases kept in full per campaign (the rest are only counted)


def campaign(target: str, n: int, seed: int, fixtures: Path, timeout_s: float = 60.0) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from edgecomp.fuzz import strategies

    summary = {"target": target, "cases": 0, "seed": seed, "timeout_s": timeout_s, "outcomes": {}, "errors": {},
               "bad": [], "max_case_s": 0.0}
    t0 = time.perf_counter()
    with Sandbox(fixtures, timeout_s) as box:
        box.run("cli", {"argv": ["--version"]})  # start the worker: it prepares the fixtures

        @hseed(seed)
        @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(strategies.strategy(target, fixtures))
        def one(payload):
            res = box.run(target, payload)
            summary["cases"] += 1
            summary["outcomes"][res["outcome"]] = summary["outcomes"].get(res["outcome"], 0) + 1
            summary["max_case_s"] = max(summary["max_case_s"], res["seconds"])
            if res["outcome"] == "error":
                summary["errors"][res["type"]] = summary["errors"].get(res["type"], 0) + 1
            if res["outcome"] in BAD and len(summary["bad"]) < KEEP_BAD:
                summary["bad"].append({**res, "payload": payload})

        one()
        summary["worker_starts"] = box.starts
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    summary["outcomes"] = dict(sorted(summary["outcomes"].items()))
    summary["errors"] = dict(sorted(summary["errors"].items()))
    return summary
