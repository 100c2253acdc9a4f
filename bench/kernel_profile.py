"""Where an artifact's CPU time goes, kernel by kernel, and what per-call weight packing costs a GEMM.

    python bench/kernel_profile.py kernels out/efficientnet-lite0 --threads 2
    python bench/kernel_profile.py gemm-pack 49,192,1152,48 197,384,1536,64

``kernels``: one call of the artifact's VM with an instrument hook records every function's time and
call count (the hook adds its own overhead: compare shares, not the total), then each compiled function
is timed alone, 50 calls in a row on the arguments it got in that call (hot caches). The hot sum weighted
by call counts against the uninstrumented time per call says how much of the call is the kernels
themselves and how much the network around them (cold weights, activations that left the cache).

``gemm-pack``: ``rows x k -> n`` GEMMs scheduled by the tiler with per-call panel packing and with
``jt``-wide panels packed beforehand (``prepack``), each timed hot (one weight) and cold (40 weights in
turn, more than the caches hold).

JSON in bench/results/profile/ (TVM_NUM_THREADS is set from --threads).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "profile"


def _median_time(fn, calls: int = 50, repeats: int = 7) -> float:
    """Median seconds per call of ``fn()`` over ``repeats`` runs of ``calls`` calls (after a warm-up)."""
    for _ in range(min(calls, 20)):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t0) / calls)
    return float(np.median(runs))


def _compiled(modules, name: str):
    """The compiled function ``name`` in the library or its imports; None for the VM's builtins."""
    for m in modules:
        try:
            fn = m.get_function(name, True)
        except AttributeError:
            continue
        if fn is not None:
            return fn
    return None


def kernels(artifact: Path, threads: int) -> dict:
    import tvm

    from edgecomp.artifact import Artifact

    art = Artifact.open(artifact)
    runner = art.load_runner()
    rng = np.random.default_rng(0)
    feeds = {s.name: rng.random(s.shape).astype(s.dtype) for s in runner.inputs}
    prepared = runner.prepare(feeds)
    whole = _median_time(lambda: runner.invoke(prepared), calls=20)
    spent, calls, args, started = collections.defaultdict(float), collections.Counter(), {}, [0.0]

    def hook(func, name, before, ret, *fargs):
        if before:
            started[0] = time.perf_counter()
            if name not in args:  # the arguments of its first call, copied (buffers are reused later)
                args[name] = [tvm.runtime.tensor(a.numpy()) if hasattr(a, "numpy") else a for a in fargs]
        else:
            spent[name] += time.perf_counter() - started[0]
            calls[name] += 1
        return 0

    runner.vm.set_instrument(hook)
    runner.invoke(prepared)
    runner.vm.set_instrument(None)
    lib = tvm.runtime.load_module(str(artifact / "model.so"))
    modules = [lib, *lib.imports]
    rows = []
    for name, n in calls.items():
        fn = _compiled(modules, name)
        hot = None if fn is None else _median_time(lambda fn=fn, a=args[name]: fn(*a))
        rows.append({"function": name, "calls": n, "instrumented_ms": spent[name] * 1e3,
                     "isolated_hot_ms_per_call": None if hot is None else hot * 1e3,
                     "arg_shapes": [list(a.shape) for a in args[name] if hasattr(a, "shape")][:3]})
    rows.sort(key=lambda r: -(r["isolated_hot_ms_per_call"] or 0) * r["calls"])
    hot_sum = sum((r["isolated_hot_ms_per_call"] or 0) * r["calls"] for r in rows)
    return {"artifact": str(artifact), "threads": threads, "call_ms": whole * 1e3,
            "isolated_hot_sum_ms": hot_sum, "functions": rows}


def _gemm_ms(rows: int, k: int, n: int, jt: int, prepacked: bool, tgt) -> dict:
    """(hot, cold) ms of ``Y = X @ W + 1`` scheduled by the tiler, W packed per call or stored as panels."""
    import tvm
    from tvm import s_tir, te

    from edgecomp.tvm import cpu_schedule

    X = te.placeholder((rows, k), name="X")
    r = te.reduce_axis((0, k), "r")
    if prepacked:
        W = te.placeholder((n // jt, k, jt), name="W")
        P = te.compute((n // jt, rows, jt), lambda fo, i, fi: te.sum(X[i, r] * W[fo, r, fi], axis=r), name="P")
        Y = te.compute((rows, n), lambda i, j: P[j // jt, i, j % jt] + 1.0, name="Y")
    else:
        W = te.placeholder((k, n), name="W")
        P = te.compute((rows, n), lambda i, j: te.sum(X[i, r] * W[r, j], axis=r), name="P")
        Y = te.compute((rows, n), lambda i, j: P[i, j] + 1.0, name="Y")
    sch = s_tir.Schedule(te.create_prim_func([X, W, Y]))
    epi = sch.get_sblock("Y")
    if prepacked:
        sch.transform_block_layout(epi, lambda i, j: (j // jt, i, j % jt))
    cpu_schedule._gemm(sch, sch.get_sblock("P"), epi, tgt, pack=False if prepacked else None)
    fn = tvm.compile(sch.mod, target=tgt)["main"]
    x = tvm.runtime.tensor(np.random.default_rng(0).random((rows, k), dtype=np.float32))
    y = tvm.runtime.tensor(np.zeros((rows, n), np.float32))
    w_shape = tuple(int(d) for d in W.shape)
    ws = [tvm.runtime.tensor(np.random.default_rng(i).random(w_shape, dtype=np.float32)) for i in range(40)]
    turn = itertools.cycle(ws)
    hot = _median_time(lambda: fn(x, ws[0], y))
    cold = _median_time(lambda: fn(x, next(turn), y), calls=40)
    return {"hot_ms": hot * 1e3, "cold_ms": cold * 1e3}


def gemm_pack(shapes: list[tuple[int, int, int, int]]) -> dict:
    from edgecomp.targets import load_target

    tgt = load_target("x86").tvm_target()
    out = []
    for rows, k, n, jt in shapes:
        res = {"rows": rows, "k": k, "n": n, "jt": jt}
        for key, prepacked in (("packed_per_call", False), ("prepacked", True)):
            res[key] = _gemm_ms(rows, k, n, jt, prepacked, tgt)
            print(f"{rows}x{k}->{n} {key}: hot {res[key]['hot_ms']:.3f} ms, cold {res[key]['cold_ms']:.3f} ms")
        out.append(res)
    return {"target": "x86", "gemms": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    k = sub.add_parser("kernels")
    k.add_argument("artifact", type=Path)
    k.add_argument("--threads", type=int, default=2)
    k.add_argument("--name", help="JSON name (default: the artifact directory's)")
    g = sub.add_parser("gemm-pack")
    g.add_argument("shapes", nargs="+", help="rows,k,n,jt")
    g.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(a.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python bench/kernel_profile.py " + " ".join(sys.argv[1:])
    if a.what == "kernels":
        data = kernels(a.artifact, a.threads)
        path = RESULTS / f"{a.name or a.artifact.name}-{a.threads}t.json"
        print(f"call {data['call_ms']:.2f} ms, isolated hot kernels x calls {data['isolated_hot_sum_ms']:.2f} ms")
        for r in data["functions"][:8]:
            print(f"  {r['isolated_hot_ms_per_call']:.4f} ms x{r['calls']}  {r['function']}")
    else:
        data = gemm_pack([tuple(int(v) for v in s.split(",")) for s in a.shapes])
        path = RESULTS / f"gemm-pack-{a.threads}t.json"
    path.write_text(json.dumps({"command": command, "threads": a.threads, **data}, indent=2) + "\n")
    print("wrote", path.relative_to(ROOT))


if __name__ == "__main__":
    main()
