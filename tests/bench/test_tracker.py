"""Device URLs and tracker queries fail fast, on one line, with a hint."""

from __future__ import annotations

import socket
import time

import pytest

from edgecomp.bench.tracker import Device, Tracker, is_loopback, queue, summary
from edgecomp.errors import ConfigError, DeviceError


def test_device_urls_parse():
    d = Device.parse("rpc://127.0.0.1:9190/local-0")
    assert (d.tracker.host, d.tracker.port, d.key) == ("127.0.0.1", 9190, "local-0")
    assert d.url == "rpc://127.0.0.1:9190/local-0"
    assert Device.parse("rpc://[::1]:9190/rpi5").tracker.host == "::1"
    assert Tracker.parse("localhost:9190") == Tracker("localhost", 9190)


@pytest.mark.parametrize("url", ["rpc://127.0.0.1/k", "127.0.0.1:9190/k", "rpc://h:99999/k", "rpc://h:9190/",
                                 "rpc://h:9190/a b", "http://h:9190/k"])
def test_malformed_device_urls_are_config_errors(url):
    with pytest.raises(ConfigError):
        Device.parse(url)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("no.such.host.invalid")


def test_unreachable_tracker_fails_fast():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.monotonic()
    with pytest.raises(DeviceError, match="cannot reach the RPC tracker"):
        summary(Tracker("127.0.0.1", port))
    assert time.monotonic() - t < 5


def test_silent_port_times_out():
    with socket.socket() as srv:  # accepts (backlog) but never answers the tracker handshake
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with pytest.raises(DeviceError, match="did not answer"):
            summary(Tracker("127.0.0.1", srv.getsockname()[1]), timeout_s=0.5)


def test_queue_counts_servers_per_key():
    info = {"queue_info": {"a": {"free": 1, "pending": 0}, "b": {"free": 0, "pending": 2}},
            "server_info": [{"key": "server:a", "addr": ["127.0.0.1", 1]}, {"key": "server:b", "addr": ["x", 2]},
                            {"key": "server:b", "addr": ["y", 3]}]}
    assert queue(info) == {"a": {"total": 1, "free": 1, "pending": 0}, "b": {"total": 2, "free": 0, "pending": 2}}
