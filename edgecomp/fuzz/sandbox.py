"""A worker process that runs fuzz cases one at a time, so a crash or a hang is observed, not suffered.

``Sandbox(fixtures, timeout_s)`` starts ``python -m edgecomp.fuzz.sandbox FIXTURES`` and talks to it in JSON
lines (one case in, one outcome out). ``sandbox.run(target, payload) -> dict`` returns the worker's outcome
(``{"outcome": "ok" | "error" | "traceback", "detail": one line}``), or, when the worker died on the case,
``{"outcome": "crash", "detail": "signal 11 ..."}``, or, when it did not answer within ``timeout_s``,
``{"outcome": "hang"}`` (the worker is killed). A dead worker is restarted on the next case.

Why a process and not threads: a segfault inside TVM, onnx or onnxruntime kills the interpreter that holds
it, and a hang inside C++ cannot be interrupted from Python. The worker keeps its imports warm between
cases (about 0.1-0.2 s per ONNX build instead of 3 s with a fresh interpreter).

Protocol: the worker writes its answers to a duplicate of its original stdout and points fds 1 and 2 at a
log file, so whatever TVM or a library prints cannot corrupt the protocol; the log's tail is kept for a
crash's detail.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STARTUP_S = 180.0  # importing torch/tvm/onnxruntime and building the fixtures on a loaded 2-core machine


class Sandbox:
    """One worker process; ``run`` is time-bounded per case (see the module doc)."""

    def __init__(self, fixtures: Path, timeout_s: float = 60.0):
        self.fixtures, self.timeout_s = Path(fixtures), timeout_s
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="edgecomp-fuzz-", suffix=".log")[1])
        self.starts = 0

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edgecomp.fuzz.sandbox", str(self.fixtures),
                                      str(self.log)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        line = self._read(STARTUP_S)
        if not line or json.loads(line).get("ready") is not True:
            code = self._kill()
            raise RuntimeError(f"fuzz worker did not start (exit {code}): {self._log_tail()}")

    def _read(self, timeout_s: float) -> str | None:
        """One line from the worker; "" when its stdout closed (it died), None when it said nothing in time."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            return None
        return self.proc.stdout.readline().decode()

    def _kill(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self.proc = None
        return code

    def _log_tail(self, n: int = 400) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " ".join(text[-n:].split())

    def run(self, target: str, payload: dict, timeout_s: float | None = None) -> dict:
        """The outcome of one case (module doc); ``timeout_s`` overrides the sandbox's bound for this case."""
        timeout_s = timeout_s or self.timeout_s
        if self.proc is None:
            self._start()
            self.starts += 1
        self.log.write_bytes(b"")
        t0 = time.perf_counter()
        try:
            self.proc.stdin.write((json.dumps({"target": target, "payload": payload}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker is gone: _read sees EOF
        line = self._read(timeout_s)
        seconds = round(time.perf_counter() - t0, 3)
        if line:
            return {**json.loads(line), "seconds": seconds}
        timed_out = line is None  # "" is EOF: the worker is dying (poll() may not see it exit yet)
        if not timed_out:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        code = self._kill()
        if timed_out:
            return {"outcome": "hang", "detail": f"no answer in {timeout_s} s", "seconds": seconds}
        how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
        return {"outcome": "crash", "detail": f"worker died ({how}): {self._log_tail()}", "seconds": seconds}

    def close(self) -> None:
        self._kill()
        self.log.unlink(missing_ok=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve(fixtures: Path, log: Path) -> None:
    """The worker loop (runs in the child): answer each case line with one outcome line."""
    from edgecomp.fuzz import targets

    proto = os.fdopen(os.dup(1), "w")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ctx = targets.Context.prepare(fixtures)
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        case = json.loads(line)
        result = targets.execute(case["target"], case["payload"], ctx)
        proto.write(json.dumps(result) + "\n")
        proto.flush()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
