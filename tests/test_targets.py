from __future__ import annotations

import pytest

from edgecomp.errors import UnknownTargetError
from edgecomp.targets import available, host_cpu, load_target


def test_x86_resolves_host_cpu():
    t = load_target("x86")
    assert load_target("x86_64") == t
    spec = t.resolved_tvm()
    assert spec["kind"] == "llvm" and spec["mcpu"] == host_cpu() != "host"
    assert str(t.tvm_target(2).kind.name) == "llvm"


def test_every_target_file_parses():
    names = [t.name for t in available()]
    assert "x86" in names and len(names) == len(set(names))


def test_unknown_target_lists_known_ones():
    with pytest.raises(UnknownTargetError) as e:
        load_target("jetsonn")
    assert "x86" in e.value.hint
