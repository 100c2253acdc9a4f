"""Provenance: every field present, "unknown" where the machine does not say, remote records of one shape."""

from __future__ import annotations

from edgecomp.bench import provenance as prov
from edgecomp.bench.measure import BenchPolicy
from edgecomp.bench.remote import remote_provenance
from edgecomp.bench.tracker import Device

FIELDS = {"host", "os", "arch", "cpu", "cores", "affinity", "frequency", "thermal", "loadavg", "versions",
          "tvm_num_threads"}


def test_machine_reports_every_field_and_the_versions():
    m = prov.machine()
    assert set(m) == FIELDS
    assert isinstance(m["cores"], int) and m["cores"] >= 1
    assert m["versions"]["edgecomp"] != prov.UNKNOWN and m["versions"]["tvm"].startswith("0.27")
    assert set(m["versions"]) >= {"edgecomp", "tvm", "onnxruntime", "torch", "python"}
    assert m["affinity"] == prov.UNKNOWN or set(m["affinity"]) <= set(range(1024))


def test_unreadable_sysfs_reads_unknown(monkeypatch):
    monkeypatch.setattr(prov, "_read", lambda path: None)
    monkeypatch.setattr(prov.Path, "glob", lambda self, pattern: iter(()))
    m = prov.machine()
    assert m["frequency"] == {"governor": "unknown", "mhz": "unknown"} and m["thermal"] == "unknown"


def test_local_provenance_has_load_before_and_after_and_the_policy():
    from edgecomp.bench.measure import provenance

    p = provenance(BenchPolicy(warmup=3, rounds=4, per_round=2))
    assert p["warmup"] == 3 and p["rounds"] == 4 and p["per_round"] == 2
    assert {"loadavg_before", "loadavg_after", "thermal_before", "thermal_after", "versions", "cpu"} <= set(p)


def test_remote_provenance_says_unknown_when_the_server_reports_nothing():
    dev = Device.parse("rpc://127.0.0.1:9190/board")
    p = remote_provenance({"remote_before": None, "remote_after": None}, dev, BenchPolicy())
    assert p["cpu"] == "unknown" and p["loadavg_before"] == "unknown" and "stock tvm rpc_server" in p["reported_by"]
    assert p["device"] == "rpc://127.0.0.1:9190/board" and p["warmup"] == BenchPolicy().warmup
    full = remote_provenance({"remote_before": prov.machine(), "remote_after": prov.machine()}, dev, BenchPolicy())
    assert full["cpu"] == prov.machine()["cpu"] and isinstance(full["loadavg_after"], list)
