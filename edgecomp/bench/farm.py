"""A local device farm: TVM's RPC tracker and N RPC servers as detached processes.

``up`` starts ``python -m tvm.exec.rpc_tracker`` and N servers (``edgecomp.bench.rpc_server``: TVM's
``rpc.Server`` plus the ``edgecomp.provenance`` function; ``plain=True`` starts stock
``tvm.exec.rpc_server`` instead) registered under the keys ``<prefix>-0 .. <prefix>-<N-1>``, waits until
every key is free at the tracker, and writes the pids and ports to ``<state_dir>/farm.json``. ``status``
asks the tracker for keys / free / pending; ``down`` stops every process group it started.

Security: TVM RPC is unauthenticated and runs whatever a client uploads. The farm binds loopback unless
``allow_remote`` is set; reach a real farm through an ssh tunnel (README).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecomp.bench.tracker import Tracker, is_loopback, queue, summary
from edgecomp.errors import ConfigError, DeviceError, MissingDataError

STATE_FILE = "farm.json"
FARM_MODULES = ("tornado", "cloudpickle", "psutil")  # what TVM's tracker / server import beyond tvm


@dataclass(frozen=True)
class FarmConfig:
    host: str = "127.0.0.1"  # address the tracker and the servers bind
    port: int = 9190  # tracker port (exactly this one; the servers take free ports)
    servers: int = 2  # RPC servers to start, one device key each
    key_prefix: str = "local"  # keys are <prefix>-0, <prefix>-1, ...
    allow_remote: bool = False  # permit a non-loopback host (TVM RPC runs uploaded code, unauthenticated)
    server_port: int | None = None  # servers listen on exactly this port and the next ones (None: free ports)
    threads: int | None = None  # TVM_NUM_THREADS of every server (None: TVM's default, the physical cores)
    plain: bool = False  # stock tvm.exec.rpc_server (no edgecomp.provenance function)
    start_timeout_s: float = 90.0  # how long to wait for every key to register

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ConfigError(f"--port {self.port} is not in 1..65535", hint="e.g. --port 9190")
        if not 1 <= self.servers <= 64:
            raise ConfigError(f"--servers {self.servers} is not in 1..64", hint="e.g. --servers 2")
        if not self.key_prefix.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"key prefix {self.key_prefix!r} must be letters, digits, - or _", hint="e.g. local")
        if self.server_port is not None and not 0 < self.server_port <= 65535 - self.servers:
            raise ConfigError(f"--server-port {self.server_port} leaves no room for {self.servers} servers",
                              hint="e.g. --server-port 9091")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads {self.threads} must be at least 1", hint="e.g. --threads 1")
        if not self.allow_remote and not is_loopback(self.host):
            raise ConfigError(f"refusing to bind the farm to {self.host}: not a loopback address, and TVM RPC runs "
                              "any uploaded code without authentication",
                              hint="keep --host 127.0.0.1 and tunnel with `ssh -L 9190:localhost:9190 HOST`, "
                                   "or pass --allow-remote on a network you trust")

    def keys(self) -> list[str]:
        return [f"{self.key_prefix}-{i}" for i in range(self.servers)]


def state_dir(path: str | Path | None = None) -> Path:
    """``path``, else $EDGECOMP_FARM_DIR, else ~/.cache/edgecomp/farm."""
    if path:
        return Path(path)
    return Path(os.environ.get("EDGECOMP_FARM_DIR") or Path.home() / ".cache" / "edgecomp" / "farm")


def _alive(pid: int) -> bool:
    try:  # reap it if it is our own exited child (tests start farms in-process)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ours(pid: int, marker: str) -> bool:
    """True when ``pid`` is alive and still the process we started (its command line holds ``marker``)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return _alive(pid) and marker in cmdline


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise DeviceError(f"cannot bind the tracker to {host}:{port}: {e.strerror or e}",
                              hint="another farm? `edgecomp farm status`, or choose --port") from None


def read_state(directory: Path) -> dict | None:
    f = directory / STATE_FILE
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except (json.JSONDecodeError, OSError):
        raise DeviceError(f"{f} is unreadable", hint=f"stop stray servers by hand and remove {f}") from None


def _spawn(argv: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "ab") as out:  # NOTE: the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # own process group: down() kills it whole


def _log_tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def up(cfg: FarmConfig, directory: str | Path | None = None) -> dict:
    """Start the tracker and servers, wait until every key is free, write and return the state."""
    missing = [m for m in FARM_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDataError(f"`edgecomp farm` needs {', '.join(missing)} (TVM's RPC tracker and server import "
                               "them), which is not installed", hint="pip install 'edgecomp[farm]'")
    d = state_dir(directory)
    old = read_state(d)
    if old and any(_ours(p["pid"], p["marker"]) for p in old["processes"]):
        raise DeviceError(f"a farm is already up at {old['tracker']} (state in {d})",
                          hint="`edgecomp farm down` first, or pass another --state-dir")
    d.mkdir(parents=True, exist_ok=True)
    _check_port_free(cfg.host, cfg.port)
    tracker = Tracker(cfg.host, cfg.port)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("TVM_NUM_THREADS", None)
    if cfg.threads is not None:
        env["TVM_NUM_THREADS"] = str(cfg.threads)
    procs: list[dict] = []
    state = {"tracker": str(tracker), "host": cfg.host, "port": cfg.port, "config": asdict(cfg),
             "processes": procs, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "state_dir": str(d)}
    try:
        log = d / "tracker.log"
        p = _spawn([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", cfg.host, "--port", str(cfg.port),
                    "--port-end", str(cfg.port + 1), "--silent"], log, env)
        procs.append({"role": "tracker", "pid": p.pid, "port": cfg.port, "log": str(log), "marker": "rpc_tracker"})
        module = "tvm.exec.rpc_server" if cfg.plain else "edgecomp.bench.rpc_server"
        for i, key in enumerate(cfg.keys()):
            log = d / f"server-{key}.log"
            port = _free_port(cfg.host) if cfg.server_port is None else cfg.server_port + i
            end = port + 50 if cfg.server_port is None else port + 1  # a fixed port (ssh tunnels) or a free one
            p = _spawn([sys.executable, "-m", module, "--host", cfg.host, "--port", str(port),
                        "--port-end", str(end), "--tracker", str(tracker), "--key", key, "--silent"], log, env)
            procs.append({"role": "server", "key": key, "pid": p.pid, "log": str(log), "marker": module})
        (d / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")  # `down` can stop a half-started farm
        _wait_registered(tracker, cfg, procs)
        info = summary(tracker)
        ports = {s["key"].split(":", 1)[-1]: s["addr"][1] for s in info.get("server_info", [])}
        for p in procs:
            if p["role"] == "server":
                p["port"] = ports.get(p["key"])
        (d / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        return state
    except BaseException:
        _stop(procs)
        (d / STATE_FILE).unlink(missing_ok=True)
        raise


def _wait_registered(tracker: Tracker, cfg: FarmConfig, procs: list[dict]) -> None:
    deadline = time.monotonic() + cfg.start_timeout_s
    want = set(cfg.keys())
    while True:
        dead = [p for p in procs if not _alive(p["pid"])]
        if dead:
            p = dead[0]
            raise DeviceError(f"the farm's {p['role']} {p.get('key', '')} exited while starting: "
                              f"{_log_tail(Path(p['log'])) or 'no output'}", hint=f"see {p['log']}")
        try:
            free = {k for k, v in queue(summary(tracker, 2.0)).items() if v["free"] > 0}
        except DeviceError:  # the tracker is not listening yet
            free = set()
        if want <= free:
            return
        if time.monotonic() > deadline:
            raise DeviceError(f"the farm did not come up within {cfg.start_timeout_s:g} s: keys ready "
                              f"{sorted(free & want) or 'none'} of {sorted(want)}",
                              hint=f"see the logs in {Path(procs[0]['log']).parent}")
        time.sleep(0.3)


def _stop(procs: list[dict], grace_s: float = 5.0) -> list[dict]:
    """SIGTERM each process group we started, then SIGKILL what is left after ``grace_s``."""
    stopped = []
    for p in procs:
        if _ours(p["pid"], p["marker"]):
            try:
                os.killpg(p["pid"], signal.SIGTERM)
                stopped.append(p)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    while any(_alive(p["pid"]) for p in stopped) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in procs:
        try:  # the group also holds TVM's server worker and its session forks: kill any survivor
            os.killpg(p["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _alive(p["pid"])  # reap
    return stopped


def down(directory: str | Path | None = None) -> dict:
    """Stop the farm recorded in the state directory; returns ``{"tracker", "stopped": [...]}``."""
    d = state_dir(directory)
    state = read_state(d)
    if state is None:
        raise DeviceError(f"no farm is recorded in {d}", hint="nothing to stop (or pass the --state-dir it used)")
    stopped = _stop(state["processes"])
    (d / STATE_FILE).unlink(missing_ok=True)
    return {"tracker": state["tracker"], "stopped": [p.get("key", p["role"]) for p in stopped]}


def status(directory: str | Path | None = None, tracker: Tracker | None = None) -> dict:
    """The recorded farm's processes (if any) and the tracker's queue: ``{key: {total, free, pending}}``."""
    d = state_dir(directory)
    state = read_state(d) if tracker is None else None
    if tracker is None and state is None:
        raise DeviceError(f"no farm is recorded in {d}", hint="`edgecomp farm up`, or pass --tracker HOST:PORT")
    tracker = tracker or Tracker.parse(state["tracker"])
    procs = [{**p, "alive": _ours(p["pid"], p["marker"])} for p in (state or {}).get("processes", [])]
    try:
        q, error = queue(summary(tracker)), None
    except DeviceError as e:
        if state is None:  # asked about a tracker by address: not reaching it is the answer
            raise
        q, error = {}, e.message  # a recorded farm whose tracker died: still show its processes
    return {"tracker": str(tracker), "processes": procs, "queue": q, "tracker_error": error,
            "state_dir": str(d) if state else None}
