"""Remote bench, bad input: malformed URLs, unreachable trackers, option clashes -> exit 2, one line."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def edgecomp(*args):
    return subprocess.run([sys.executable, "-m", "edgecomp", *args], capture_output=True, text=True, timeout=120)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, message", [
    (["--device", "rpc://127.0.0.1/local-0"], "'rpc://127.0.0.1/local-0' is not a device URL"),
    (["--device", "tcp://h:1/k"], "'tcp://h:1/k' is not a device URL"),
    (["--farm", "127.0.0.1"], "--farm and --keys go together"),
    (["--farm", "nohostport", "--keys", "a"], "'nohostport' is not a tracker address"),
    (["--device", "rpc://127.0.0.1:9190/a", "--compare", "onnxruntime"], "--compare onnxruntime cannot run"),
    (["--device", "rpc://127.0.0.1:{closed}/local-0"], "cannot reach the RPC tracker at 127.0.0.1:{closed}"),
    (["--farm", "127.0.0.1:{closed}", "--keys", "a,b"], "cannot reach the RPC tracker at 127.0.0.1:{closed}"),
])
def test_bad_remote_bench_input_exits_2_with_one_line(tiny_artifact, args, message):
    closed = _closed_port()
    r = edgecomp("bench", str(tiny_artifact), *[a.format(closed=closed) for a in args])
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"error: {message.format(closed=closed)}"), lines
    assert lines[1].startswith("hint: ")


def test_farm_refuses_a_non_loopback_host_and_down_without_a_farm(tmp_path):
    r = edgecomp("farm", "up", "--host", "0.0.0.0", "--state-dir", str(tmp_path))
    assert r.returncode == 2 and "refusing to bind the farm to 0.0.0.0" in r.stderr and "--allow-remote" in r.stderr
    r = edgecomp("farm", "down", "--state-dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("error: no farm is recorded")
    assert list(tmp_path.iterdir()) == []


def test_farm_without_tornado_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    from edgecomp.bench import farm
    from edgecomp.errors import MissingDataError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tornado" else real(name, *a))
    with pytest.raises(MissingDataError, match="needs tornado") as e:
        farm.up(farm.FarmConfig(servers=1), tmp_path)
    assert "edgecomp[farm]" in e.value.hint and list(tmp_path.iterdir()) == []


def test_status_of_a_recorded_farm_whose_tracker_died(tmp_path):
    import json

    from edgecomp.bench import farm

    port = _closed_port()
    state = {"tracker": f"127.0.0.1:{port}", "processes": [
        {"role": "tracker", "pid": 2 ** 22 + 7, "port": port, "log": str(tmp_path / "t.log"), "marker": "rpc_tracker"}]}
    (tmp_path / farm.STATE_FILE).write_text(json.dumps(state))
    st = farm.status(tmp_path)
    assert st["queue"] == {} and "cannot reach" in st["tracker_error"] and not st["processes"][0]["alive"]
    assert farm.down(tmp_path)["stopped"] == [] and not (tmp_path / farm.STATE_FILE).exists()
