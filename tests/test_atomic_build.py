"""Atomic artifacts: `edgecomp build` SIGKILLed at random points (seeded) over an existing artifact leaves
the output path holding a complete artifact, the previous one or the new one (its manifest verifies every
file's sha256), never a mix or nothing.

A killed build leaves a hidden sibling ``.OUT.tmp-PID-…``; nothing reads it, and the next build into the
same path removes it (its process is gone). Half the kills fall anywhere in the build (uniform delay), half
inside the write itself: the test waits for the temporary directory to appear, then kills within 0.3 s.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgecomp import api
from edgecomp.artifact import Artifact
from edgecomp.config import BuildConfig
from edgecomp.fuzz.targets import tiny_onnx_bytes

KILLS = 6
SEED = 20261124
SETS = ["--set", "lower.tuning=\"none\"", "--set", "calib_samples=2"]


def _manifest(path: Path) -> bytes:
    Artifact.open(path)  # raises ArtifactError on a missing or modified file
    return (path / "manifest.json").read_bytes()


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_sigkill_leaves_previous_or_new_artifact(tmp_path):
    old_src, new_src = tmp_path / "old.onnx", tmp_path / "new.onnx"
    old_src.write_bytes(tiny_onnx_bytes(seed=0))
    new_src.write_bytes(tiny_onnx_bytes(seed=1))
    cfg = BuildConfig().with_overrides(SETS[1::2])
    previous = api.build(old_src, "x86", tmp_path / "previous", cfg)
    new_ref = api.build(new_src, "x86", tmp_path / "new-ref", cfg)  # the new build's bytes (builds reproduce)
    expected = {"previous": _manifest(previous), "new": _manifest(new_ref)}
    assert expected["previous"] != expected["new"]

    out = tmp_path / "work" / "art"
    cmd = [sys.executable, "-m", "edgecomp", "build", str(new_src), "-o", str(out), *SETS]
    rng = random.Random(SEED)
    t0 = time.perf_counter()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    full_s = time.perf_counter() - t0
    seen = []
    for i in range(KILLS):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(previous, out)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i % 2 == 0:
            time.sleep(rng.uniform(0.2, 1.1) * full_s)
        else:  # inside the write: wait for the temporary directory, then a little more
            deadline = time.perf_counter() + 4 * full_s
            while not any(n.startswith(f".{out.name}.tmp-") for n in _leftovers(out)) and proc.poll() is None \
                    and time.perf_counter() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = _manifest(out)  # a complete artifact is there, whole
        assert state in expected.values(), f"kill {i}: the artifact at {out} is neither the previous nor the new one"
        seen.append(next(k for k, v in expected.items() if v == state))
    assert "previous" in seen, seen  # some kills landed before the swap (the test does interrupt builds)
    # the next complete build removes what the killed ones left behind, and writes the new artifact
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert _manifest(out) == expected["new"]
    assert _leftovers(out) == [], _leftovers(out)
