"""Addresses of TVM RPC trackers and devices, and a bounded-time query of a tracker's queue.

``rpc://HOST:PORT/KEY`` names one device (a key) behind a tracker; ``HOST:PORT`` names a tracker.
``summary(host, port)`` speaks TVM's tracker protocol itself (magic, then ``[SUMMARY]``) on a socket with
a timeout: ``tvm.rpc.connect_tracker`` retries for 60 s and then blocks without limit, which is wrong for
a command that must fail fast on a typo.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from dataclasses import dataclass

from edgecomp.errors import ConfigError, DeviceError

_URL = re.compile(r"^rpc://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})/(?P<key>[A-Za-z0-9._:-]+)$")
_ADDR = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9._-]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Tracker:
    host: str  # tracker host name or IP
    port: int  # tracker TCP port

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ConfigError(f"tracker port {self.port} is not in 1..65535", hint="e.g. 127.0.0.1:9190")

    @classmethod
    def parse(cls, text: str) -> "Tracker":
        m = _ADDR.match(text.strip())
        if not m:
            raise ConfigError(f"{text!r} is not a tracker address HOST:PORT", hint="e.g. --farm 127.0.0.1:9190")
        return cls(m["host"].strip("[]"), int(m["port"]))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Device:
    tracker: Tracker  # where the device is leased
    key: str  # the device key its servers registered under

    @classmethod
    def parse(cls, url: str) -> "Device":
        m = _URL.match(url.strip())
        if not m:
            raise ConfigError(f"{url!r} is not a device URL rpc://HOST:PORT/KEY",
                              hint="e.g. --device rpc://127.0.0.1:9190/local-0 (see `edgecomp farm status`)")
        return cls(Tracker(m["host"].strip("[]"), int(m["port"])), m["key"])

    @property
    def url(self) -> str:
        return f"rpc://{self.tracker}/{self.key}"


def is_loopback(host: str) -> bool:
    """True when ``host`` resolves to a loopback address only (127.0.0.0/8, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def summary(tracker: Tracker, timeout_s: float = 5.0) -> dict:
    """The tracker's ``{"queue_info": {key: {"free", "pending"}}, "server_info": [...]}`` within ``timeout_s``."""
    from tvm.rpc import base

    where = f"the RPC tracker at {tracker}"
    try:
        with socket.create_connection((tracker.host, tracker.port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
            magic = struct.unpack("<i", base.recvall(sock, 4))[0]
            if magic != base.RPC_TRACKER_MAGIC:
                raise DeviceError(f"{tracker} answers, but not as a TVM RPC tracker",
                                  hint="check the port (`edgecomp farm status`)")
            base.sendjson(sock, [base.TrackerCode.SUMMARY])
            code, value = base.recvjson(sock)
    except TimeoutError:
        raise DeviceError(f"{where} did not answer within {timeout_s:g} s",
                          hint="is it a tracker? check the address, or the ssh tunnel") from None
    except OSError as e:
        raise DeviceError(f"cannot reach {where}: {e.strerror or e}",
                          hint="start one with `edgecomp farm up`, or check HOST:PORT and the ssh tunnel") from None
    except (ValueError, struct.error) as e:
        raise DeviceError(f"{where} sent an unreadable answer: {e}", hint="is it a TVM RPC tracker?") from None
    if code != base.TrackerCode.SUCCESS:
        raise DeviceError(f"{where} refused the summary request (code {code})", hint="is it a TVM RPC tracker?")
    return value


def queue(info: dict) -> dict[str, dict]:
    """``{key: {"total", "free", "pending"}}`` from a tracker summary (servers counted per key)."""
    total: dict[str, int] = {}
    for s in info.get("server_info", []):
        key = s["key"].split(":", 1)[1] if ":" in s["key"] else s["key"]
        total[key] = total.get(key, 0) + 1
    keys = sorted(set(total) | set(info.get("queue_info", {})))
    q = info.get("queue_info", {})
    return {k: {"total": total.get(k, 0), "free": q.get(k, {}).get("free", 0),
                "pending": q.get(k, {}).get("pending", 0)} for k in keys}


def check_keys(tracker: Tracker, keys: list[str], timeout_s: float = 5.0) -> dict[str, dict]:
    """Raise ``DeviceError`` unless every key has at least one server registered at ``tracker``."""
    have = {k: v for k, v in queue(summary(tracker, timeout_s)).items() if v["total"] > 0}
    missing = [k for k in keys if k not in have]
    if missing:
        known = ", ".join(sorted(have)) or "none"
        raise DeviceError(f"no device with key {', '.join(map(repr, missing))} at the tracker {tracker}",
                          hint=f"keys there now: {known} (`edgecomp farm status`)")
    return have
