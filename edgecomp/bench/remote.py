"""Latency of one artifact on devices leased from a TVM RPC tracker, one worker process per device.

For each device a worker process (``python -m edgecomp.bench.remote``) leases the key from the tracker,
uploads ``model.so``, loads it remotely, copies the parameters and example inputs to the remote device,
and times ``invoke_stateful("main")`` with TVM's time evaluator on the remote side (the Relax VM's
stateful API: a tuple-returning ``main`` called directly over RPC gives back an opaque reference).
Warm-up calls run first and are discarded; then ``rounds * per_round`` single calls are timed.

Devices run in parallel, each in its own process, so one device that hangs or dies is killed at the
deadline without taking the others down. What the remote machine is (CPU, load, versions) comes from
the global function ``edgecomp.provenance`` that ``edgecomp farm`` servers register; a stock
``tvm.exec.rpc_server`` has none, and its fields read ``"unknown"``.

Worker protocol: argv[1] is a JSON job ``{"art", "host", "port", "key", "policy", "session_timeout_s"}``;
the worker prints one JSON line, ``{"samples_ms": [...], "remote": {...}, "outputs": [...]}`` or
``{"error": "..."}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

from edgecomp.bench.measure import BenchPolicy
from edgecomp.bench.provenance import REMOTE_FUNC, UNKNOWN
from edgecomp.bench.tracker import Device, check_keys
from edgecomp.errors import DeviceError


def _remote_machine(sess) -> dict | None:
    """The remote ``provenance.machine()``, or None when the server does not register it."""
    try:
        f = sess.get_function(REMOTE_FUNC)
    except Exception:  # NOTE: a missing remote function raises a plain tvm error; its type is not stable
        return None
    return json.loads(f()) if f is not None else None


def _run_job(job: dict) -> dict:
    import numpy as np
    import tvm
    from tvm import relax, rpc

    from edgecomp.artifact import Artifact

    policy = BenchPolicy(**job["policy"])
    art = Artifact.open(job["art"], verify=False)  # the parent verified it
    feeds = art.example_inputs()
    # NOTE: the same model.so run here is the reference for the remote outputs (a cross-built one cannot run here)
    reference = art.load_runner()(feeds)[0] if art.runner == "local" else None
    tracker = rpc.connect_tracker(job["host"], job["port"])
    t0 = time.time()
    sess = tracker.request(job["key"], priority=1, session_timeout=job["session_timeout_s"])
    lease_wait_s = time.time() - t0
    before = _remote_machine(sess)
    want = art.manifest["target"].get("arch")
    if before and want and before.get("arch") not in (want, UNKNOWN):
        raise RuntimeError(f"the artifact is built for {want} ({art.manifest['target']['name']}) but "
                           f"{job['key']} is {before['arch']}: build for that device's target")
    name = f"edgecomp-{art.manifest['files']['model.so']['sha256'][:16]}.so"
    sess.upload(str(art.path / "model.so"), target=name)
    dev = sess.cpu()
    vm = relax.VirtualMachine(sess.load_module(name), dev)
    params = tvm.runtime.load_param_dict_from_file(str(art.path / "params.bin"))
    args = [tvm.runtime.tensor(s.check(feeds[s.name]), dev) for s in art.inputs]
    args += [tvm.runtime.tensor(params[f"p{i}"].numpy(), dev) for i in range(art.manifest["params"])]
    vm.set_input("main", *args)
    if policy.warmup:
        vm.time_evaluator("invoke_stateful", dev, number=1, repeat=policy.warmup)("main")
    timer = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=policy.per_round)
    samples: list[float] = []
    for _ in range(policy.rounds):
        samples += [float(s) * 1e3 for s in timer("main").results]
    outs = vm.get_outputs("main")
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    first = outs[0].numpy()
    after = _remote_machine(sess)
    return {"samples_ms": samples, "remote_before": before, "remote_after": after,
            "lease_wait_s": round(lease_wait_s, 3),
            "outputs": [{"name": n, "shape": list(o.shape), "dtype": str(o.dtype)}
                        for n, o in zip(art.outputs, outs, strict=False)],
            "output_check": {"finite": bool(np.isfinite(first).all()),
                             "max_abs_err_vs_local": None if reference is None
                             else float(np.abs(first.astype(np.float64) - reference).max()),
                             "reference": "the same model.so run on this machine" if reference is not None
                             else "none: a cross-built artifact does not run here"}}


def main() -> None:
    job = json.loads(sys.argv[1])
    protocol, sys.stdout = sys.stdout, sys.stderr  # NOTE: the protocol owns stdout; TVM logs go to stderr
    try:
        res = _run_job(job)
    except Exception as e:  # one line to the parent, whatever failed on the way
        res = {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
    print(json.dumps(res), file=protocol, flush=True)


def remote_provenance(res: dict, device: Device, policy: BenchPolicy) -> dict:
    """The provenance block of one device: what its server reported (or "unknown"), and the policy."""
    before, after = res.get("remote_before"), res.get("remote_after")
    if before is None:
        reported = {k: UNKNOWN for k in ("cpu", "cores", "affinity", "frequency", "host", "os", "arch",
                                         "versions", "tvm_num_threads")}
        reported.update(loadavg_before=UNKNOWN, loadavg_after=UNKNOWN, thermal_before=UNKNOWN,
                        thermal_after=UNKNOWN,
                        reported_by=f"nothing: the server registers no {REMOTE_FUNC} (a stock tvm rpc_server?)")
    else:
        after = after or {}
        reported = {k: before.get(k, UNKNOWN) for k in ("cpu", "cores", "affinity", "frequency", "host", "os",
                                                         "arch", "versions", "tvm_num_threads")}
        reported.update(loadavg_before=before.get("loadavg", UNKNOWN), loadavg_after=after.get("loadavg", UNKNOWN),
                        thermal_before=before.get("thermal", UNKNOWN), thermal_after=after.get("thermal", UNKNOWN),
                        reported_by=f"the server's {REMOTE_FUNC} function")
    from edgecomp.bench.provenance import policy_record

    rec = policy_record(policy)
    rec["threads"] = f"server's TVM_NUM_THREADS: {reported['tvm_num_threads']}"
    return {**reported, **rec, "device": device.url, "tracker": str(device.tracker),
            "timer": "tvm time_evaluator on the device, number=1 per sample",
            "lease_wait_s": res.get("lease_wait_s"), "interleaved": False, "process_per_engine": True}


def measure_devices(art_path: str, devices: list[Device], policy: BenchPolicy, timeout_s: float = 600.0,
                    progress=None) -> dict[str, dict]:
    """Run one worker per device in parallel; ``{device.url: worker result}``. Raises ``DeviceError`` on
    an unknown key, an unreachable tracker, a failed worker or one still running after ``timeout_s``."""
    for tracker in {d.tracker for d in devices}:
        check_keys(tracker, [d.key for d in devices if d.tracker == tracker])
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = {}
    try:
        for d in devices:
            job = {"art": art_path, "host": d.tracker.host, "port": d.tracker.port, "key": d.key,
                   "policy": asdict(policy), "session_timeout_s": int(timeout_s) + 30}
            procs[d.url] = subprocess.Popen([sys.executable, "-m", "edgecomp.bench.remote", json.dumps(job)],
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                            env=env, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        results: dict[str, dict] = {}
        for url, p in procs.items():
            try:
                out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise DeviceError(f"{url} did not finish within {timeout_s:g} s (device busy, leased by "
                                  f"someone else, or hung)", hint="`edgecomp farm status`; raise --timeout") from None
            line = (out or "").strip().splitlines()
            res = json.loads(line[-1]) if line else {"error": f"worker exited with code {p.returncode}"}
            if "error" in res:
                raise DeviceError(f"benchmark on {url} failed: {res['error']}",
                                  hint="rerun with --debug; check the server's log (`edgecomp farm status`)")
            results[url] = res
            if progress:
                progress(url, len(results), len(devices))
        return results
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)


if __name__ == "__main__":
    main()
