"""A benchmark worker: loads one engine for one artifact and times it on request.

Protocol (JSON lines): the parent writes ``{"op": "time", "n": N}`` and reads ``{"ms": [...]}``;
``{"op": "quit"}`` ends it. The first line the worker prints is ``{"ready": true}`` or ``{"error": ...}``.
Thread counts come from the environment the parent sets (TVM_NUM_THREADS, OMP_NUM_THREADS).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    engine_name, art_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # NOTE: the protocol owns stdout; anything a model loader prints (some do) goes to stderr instead.
    protocol, sys.stdout = sys.stdout, sys.stderr
    try:
        from edgecomp.artifact import Artifact
        from edgecomp.runtime.engines import open_engine

        art = Artifact.open(art_path, verify=False)  # the parent verified it once
        engine = open_engine(engine_name, art, threads)
        prepared = engine.prepare(art.example_inputs())
    except Exception as e:  # report any load failure to the parent as one line
        print(json.dumps({"error": f"{type(e).__name__}: {e}".splitlines()[0]}), file=protocol, flush=True)
        return
    print(json.dumps({"ready": True}), file=protocol, flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        times = []
        for _ in range(cmd["n"]):
            t = time.perf_counter()
            engine.invoke(prepared)
            times.append((time.perf_counter() - t) * 1e3)
        print(json.dumps({"ms": times}), file=protocol, flush=True)


if __name__ == "__main__":
    main()
