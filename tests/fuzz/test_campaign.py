"""A bounded sample of the fuzz campaigns (bench/fuzz.py runs >= 1000 cases per target): every generated
case must end ``ok`` or as a one-line EdgecompError, never a traceback, a crash of the worker or a hang.

The sample shares one fixtures directory (the tiny ONNX model and its artifact, built once). Each target
runs CASES cases with a fixed seed (another seed than bench/fuzz.py's, so the two cover different cases).
"""

from __future__ import annotations

import base64

import pytest

from edgecomp.fuzz import targets
from edgecomp.fuzz.campaign import BAD, campaign
from edgecomp.fuzz.sandbox import Sandbox

CASES = {"onnx": 60, "recipe": 60, "cli": 40, "npy": 60, "params": 60}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("target", targets.TARGETS)
def test_sample_ends_ok_or_in_one_line_errors(target, fixtures):
    res = campaign(target, CASES[target], seed=11, fixtures=fixtures, timeout_s=60)
    assert res["cases"] == CASES[target]
    bad = [f"{b['outcome']} {b.get('type')}: {b.get('detail')} <- {b['payload']}" for b in res["bad"]]
    assert not any(res["outcomes"].get(k) for k in BAD), "\n".join(bad)
    assert res["outcomes"].get("error", 0) > 0  # the generators do reach the error paths


def test_sandbox_counts_crashes_and_hangs(fixtures):
    """The harness itself: a segfault in the worker is a crash, a stuck case a hang, and the next case runs
    in a fresh worker."""
    with Sandbox(fixtures, timeout_s=120) as box:  # the runtime's segfault handler prints a backtrace first
        assert box.run("cli", {"argv": ["--version"]})["outcome"] == "ok"
        crash = box.run("selftest", {"do": "segfault"})
        assert crash["outcome"] == "crash" and "signal 11" in crash["detail"], crash
        assert box.run("selftest", {"do": "sleep"}, timeout_s=3)["outcome"] == "hang"
        assert box.run("selftest", {"do": "raise"})["outcome"] == "traceback"
        assert box.run("cli", {"argv": ["--version"]})["outcome"] == "ok"
        assert box.starts == 3  # the first, after the crash, after the hang


def test_known_findings_stay_fixed(fixtures):
    """One case per fault the campaigns found (bench/fuzz.py FOUND), each now a one-line EdgecompError."""
    with Sandbox(fixtures) as box:
        empty = base64.b64encode(b"").decode()
        bad_header = base64.b64encode(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'shape': #), }" + b" " * 80
                                      + b"\n").decode()
        for payload in ({"b64": empty}, {"b64": bad_header}):
            res = box.run("npy", payload)
            assert res["outcome"] == "error" and "is not a .npy file" in res["detail"], res
        res = box.run("recipe", {"b64": base64.b64encode(b"seed = -1\n").decode(), "overrides": []})
        assert res["outcome"] == "error" and "seed must be >= 0" in res["detail"], res
        res = box.run("params", {"b64": base64.b64encode(b"\xff" * 64).decode()})
        assert res["outcome"] == "error" and "not a valid params file" in res["detail"], res
        # eight nested sigmoid/tanh fused into one loop: the exp expansion used to grow as 30**depth (a hang)
        res = box.run("onnx", {"b64": base64.b64encode(_nested_activations(8)).decode()})
        assert res["outcome"] == "ok" and res["seconds"] < 30, res


def _nested_activations(depth: int) -> bytes:
    from onnx import TensorProto, helper

    names = ["x", *(f"v{i}" for i in range(depth - 1)), "y"]
    nodes = [helper.make_node("Sigmoid" if i % 3 else "Tanh", [names[i]], [names[i + 1]]) for i in range(depth)]
    graph = helper.make_graph(nodes, "nested", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 6, 6])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
