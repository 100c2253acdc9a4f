"""A real farm: TVM's tracker and two RPC servers on 127.0.0.1 (free ports), benched through, torn down.

Everything is bounded: each command has a timeout, and the farm is stopped in the fixture's ``finally``
even when starting it or a test failed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from edgecomp.bench import farm
from edgecomp.errors import DeviceError

FAST = ["--rounds", "3", "--per-round", "3", "--warmup", "1"]


def edgecomp(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "edgecomp", *args], capture_output=True, text=True,
                          timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_free_ports(avoid: int) -> int:
    """A port p such that p and p + 1 are free now and neither is ``avoid`` (the servers' fixed ports, as
    behind an ssh tunnel; ``avoid`` is the tracker's, free too until it starts: the kernel hands out
    neighbouring ephemeral ports, and a server that took it first left the tracker unable to bind)."""
    for _ in range(50):
        p = _free_port()
        if avoid in (p, p + 1):
            continue
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
    raise RuntimeError("no two consecutive free ports")


@pytest.fixture(scope="module")
def running_farm(tmp_path_factory):
    state = tmp_path_factory.mktemp("farm")
    port = _free_port()
    server_port = _two_free_ports(avoid=port)
    try:
        r = edgecomp("farm", "up", "--servers", "2", "--port", str(port), "--server-port", str(server_port),
                     "--state-dir", str(state), timeout=150)
        assert r.returncode == 0, r.stderr
        assert f"rpc://127.0.0.1:{port}/local-1  server port {server_port + 1}" in r.stdout
        yield port, state
    finally:
        recorded = farm.read_state(state)
        r = edgecomp("farm", "down", "--state-dir", str(state), timeout=60)
        if recorded:
            assert r.returncode == 0, r.stderr
            assert not [p for p in recorded["processes"] if os.path.exists(f"/proc/{p['pid']}")
                        and farm._alive(p["pid"])], "farm processes survived `farm down`"


def test_bench_two_devices_in_parallel(running_farm, tiny_artifact, tmp_path):
    port, _ = running_farm
    out = tmp_path / "f.json"
    r = edgecomp("bench", str(tiny_artifact), "--farm", f"127.0.0.1:{port}", "--keys", "local-0,local-1",
                 *FAST, "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "local-0" in r.stdout and "local-1" in r.stdout
    res = json.loads(out.read_text())
    assert set(res["devices"]) == {"local-0", "local-1"} and res["farm"] == f"127.0.0.1:{port}"
    from edgecomp.artifact import file_sha256

    for key, dev in res["devices"].items():
        assert dev["device"] == f"rpc://127.0.0.1:{port}/{key}"
        e = dev["results"]["edgecomp"]
        assert e["n"] == 9 and len(e["samples_ms"]) == 9 and 0 < e["min_ms"] <= e["p50_ms"] <= e["p95_ms"]
        assert e["p50_ci_ms"][0] <= e["p50_ms"] <= e["p50_ci_ms"][1]
        p = dev["provenance"]
        assert p["reported_by"] == "the server's edgecomp.provenance function"
        assert p["cpu"] not in ("", "unknown") and isinstance(p["loadavg_before"], list)
        assert p["versions"]["tvm"].startswith("0.27") and p["warmup"] == 1 and p["rounds"] == 3
        assert p["artifact_manifest_sha256"] == file_sha256(tiny_artifact / "manifest.json")
        assert dev["outputs"][0]["shape"] == [1, 10]
        assert dev["output_check"]["finite"] and dev["output_check"]["max_abs_err_vs_local"] < 1e-5
    ratio = res["ratios"]["local-1/local-0"]
    assert ratio["ci"][0] <= ratio["p50_ratio"] <= ratio["ci"][1]
    assert res["provenance"]["client"]["cores"] >= 1 and res["provenance"]["one_lease_per_device"]


def test_one_device_gives_the_local_json_shape(running_farm, tiny_artifact):
    from edgecomp import api
    from edgecomp.bench.measure import BenchPolicy

    port, state = running_farm
    url = f"rpc://127.0.0.1:{port}/local-0"
    res = api.bench_remote(tiny_artifact, [url], BenchPolicy(warmup=1, rounds=2, per_round=2), timeout_s=120)
    assert {"model", "target", "device", "batch", "inputs", "results", "provenance", "warnings"} <= set(res)
    assert res["device"] == url and list(res["results"]) == ["edgecomp"] and res["results"]["edgecomp"]["n"] == 4
    q = farm.status(state)["queue"]  # the lease was given back
    assert q["local-0"] == {"total": 1, "free": 1, "pending": 0} and q["local-1"]["total"] == 1


def test_unknown_key_is_one_line_exit_2(running_farm, tiny_artifact):
    port, _ = running_farm
    r = edgecomp("bench", str(tiny_artifact), "--device", f"rpc://127.0.0.1:{port}/nosuch", *FAST, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == f"error: no device with key 'nosuch' at the tracker 127.0.0.1:{port}"
    assert lines[1].startswith("hint: keys there now: local-0, local-1")


def test_a_second_farm_on_the_same_state_or_port_is_refused(running_farm, tmp_path):
    port, state = running_farm
    with pytest.raises(DeviceError, match="already up"):
        farm.up(farm.FarmConfig(port=_free_port(), servers=1), state)
    with pytest.raises(DeviceError, match="cannot bind the tracker"):
        farm.up(farm.FarmConfig(port=port, servers=1), tmp_path / "other")


def test_an_artifact_for_another_arch_is_refused_on_the_device(running_farm, tiny_artifact, tmp_path):
    import shutil

    port, _ = running_farm
    art = tmp_path / "arm"
    shutil.copytree(tiny_artifact, art)
    manifest = json.loads((art / "manifest.json").read_text())  # not hashed: the artifact still verifies
    manifest["target"]["arch"] = "aarch64"
    (art / "manifest.json").write_text(json.dumps(manifest))
    r = edgecomp("bench", str(art), "--device", f"rpc://127.0.0.1:{port}/local-1", *FAST, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "built for aarch64" in r.stderr.splitlines()[0] and "local-1 is x86_64" in r.stderr.splitlines()[0]
