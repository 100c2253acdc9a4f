"""Where and how a latency number was measured: the machine, its load and temperature, the software.

Contract: ``machine()`` uses the standard library only, never raises, and writes ``"unknown"`` for any
field this machine does not expose (no cpufreq in a VM, no thermal zones in a container). It is also
what a remote RPC server started by ``edgecomp farm`` reports through the global function
``edgecomp.provenance`` (see ``edgecomp.bench.rpc_server``), so local and remote records have one shape.
"""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path

UNKNOWN = "unknown"
REMOTE_FUNC = "edgecomp.provenance"  # global function an edgecomp farm server registers
PACKAGES = {"edgecomp": "edgecomp", "tvm": "apache-tvm", "tvm_ffi": "apache-tvm-ffi",
            "onnxruntime": "onnxruntime", "torch": "torch", "numpy": "numpy"}


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or UNKNOWN


def _frequency() -> dict:
    base = Path("/sys/devices/system/cpu/cpu0/cpufreq")
    governor = _read(base / "scaling_governor") or UNKNOWN
    cur = _read(base / "scaling_cur_freq")
    mhz: float | str = round(int(cur) / 1000, 1) if cur and cur.isdigit() else UNKNOWN
    if mhz == UNKNOWN:  # VMs often have no cpufreq; /proc/cpuinfo may still say what the host reports
        for line in (_read("/proc/cpuinfo") or "").splitlines():
            if line.startswith("cpu MHz") and ":" in line:
                mhz = float(line.split(":", 1)[1])
                break
    return {"governor": governor, "mhz": mhz}


def _thermal() -> list[dict] | str:
    zones = []
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        temp = _read(zone / "temp")
        if temp and temp.lstrip("-").isdigit():
            zones.append({"zone": zone.name, "type": _read(zone / "type") or UNKNOWN,
                          "celsius": round(int(temp) / 1000, 1)})
    return zones or UNKNOWN


def load_average() -> list[float] | str:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return UNKNOWN


def versions() -> dict:
    """Installed versions of the packages that shape a measurement (read from metadata, not imported)."""
    out = {"python": platform.python_version()}
    for name, dist in PACKAGES.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[name] = UNKNOWN
    return out


def machine() -> dict:
    """The machine this process runs on, as far as it can tell (stdlib only, never raises)."""
    try:
        affinity: list[int] | str = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = UNKNOWN
    return {"host": platform.node() or UNKNOWN, "os": f"{platform.system()} {platform.release()}",
            "arch": platform.machine() or UNKNOWN, "cpu": _cpu_model(), "cores": os.cpu_count() or UNKNOWN,
            "affinity": affinity, "frequency": _frequency(), "thermal": _thermal(),
            "loadavg": load_average(), "versions": versions(),
            "tvm_num_threads": os.environ.get("TVM_NUM_THREADS", "unset")}


def machine_json() -> str:
    """``machine()`` as a JSON string: the body of the remote ``edgecomp.provenance`` function."""
    return json.dumps(machine())


def policy_record(policy) -> dict:
    """The warm-up / repeat policy of a run (a ``BenchPolicy``), as provenance fields."""
    return {"threads": policy.threads, "warmup": policy.warmup, "rounds": policy.rounds,
            "per_round": policy.per_round, "settle_s": policy.settle_s}


def artifact_record(art) -> dict:
    """What identifies the measured artifact: manifest and model library hashes, its toolchain."""
    from edgecomp.artifact import file_sha256

    files = art.manifest.get("files", {})
    return {"artifact_manifest_sha256": file_sha256(art.path / "manifest.json"),
            "model_so_sha256": files.get("model.so", {}).get("sha256", UNKNOWN),
            "params_sha256": files.get("params.bin", {}).get("sha256", UNKNOWN),
            "toolchain": art.manifest.get("toolchain", {})}
