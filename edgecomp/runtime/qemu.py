"""Run a cross-compiled model on the build machine: the C++ host program under a user-mode emulator.

``QemuRunner(model_so, params_bin, inputs, cross, arch)`` has the call shape of ``VMRunner``
(``runner(feeds) -> list[np.ndarray]``) plus ``run_many(list of feeds)``, which loads the model once for
all of them. Each call starts one emulator process (``qemu-aarch64 -L SYSROOT run_model MODEL PARAMS DIR``);
inputs go to it and outputs come back as raw files in a temporary directory (protocol: the header of
``host/run_model.cc``).

This checks what the target computes, not how fast: the emulator translates every instruction, so its
timings say nothing about the device. ``prepare``/``invoke`` (what benchmarks time) therefore refuse.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgecomp.errors import ConfigError
from edgecomp.runtime import cross as cross_tools
from edgecomp.specs import Feeds, TensorSpec
from edgecomp.targets import Cross


class QemuRunner:
    """Runs ``model_so`` with ``params_bin`` under ``cross.emulator``; numpy in, numpy out."""

    def __init__(self, model_so: Path, params_bin: Path, inputs: tuple[TensorSpec, ...], cross: Cross, arch: str):
        self.model_so, self.params_bin = Path(model_so).resolve(), Path(params_bin).resolve()
        self.inputs, self.cross, self.arch = inputs, cross, arch
        self.emulator = cross_tools.require_tool(cross.emulator, cross.emulator_package)
        self.host = cross_tools.host_program(cross, arch)  # fetches the runtime and builds the host once

    def __call__(self, feeds: Feeds) -> list[np.ndarray]:
        return self.run_many([feeds])[0]

    def run_many(self, feeds_list: list[Feeds]) -> list[list[np.ndarray]]:
        """Outputs for each feed, in order, from one emulator process."""
        checked = [[s.check(feeds[s.name]) for s in self.inputs] for feeds in feeds_list]
        with tempfile.TemporaryDirectory(prefix="edgecomp-qemu-") as tmp:
            d = Path(tmp)
            lines = ["edgecomp-run 1", f"runs {len(checked)} inputs {len(self.inputs)}"]
            lines += [f"{s.dtype} {len(s.shape)} {' '.join(map(str, s.shape))}".rstrip() for s in self.inputs]
            (d / "request.txt").write_text("\n".join(lines) + "\n")
            for r, arrays in enumerate(checked):
                for k, a in enumerate(arrays):
                    a.tofile(d / f"in-{r}-{k}.bin")
            # -E sets the guest's environment only (the emulator itself is an x86 program)
            cmd = [self.emulator, "-L", self.cross.sysroot, "-E", f"LD_LIBRARY_PATH={self.host.parent}",
                   str(self.host), str(self.model_so), str(self.params_bin), str(d)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                why = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
                raise cross_tools.ToolchainError(f"{self.model_so.name} failed under {self.cross.emulator}: {why}",
                                                 hint=f"command: {' '.join(cmd)}")
            return _read_outputs(d, len(checked))

    def prepare(self, feeds: Feeds):
        raise no_timings(self.arch, self.cross.emulator)

    def invoke(self, prepared):
        raise no_timings(self.arch, self.cross.emulator)


def no_timings(arch: str, emulator: str) -> ConfigError:
    """The error for any attempt to time an emulated artifact."""
    return ConfigError(f"this {arch} artifact runs under {emulator} here, so its timings would measure the "
                       "emulator, not the target", hint=f"benchmark it on an {arch} device; `edgecomp run` and "
                       "`edgecomp eval` (slowly) check its outputs here")


def _read_outputs(d: Path, runs: int) -> list[list[np.ndarray]]:
    outs: list[list[np.ndarray]] = [[] for _ in range(runs)]
    for line in (d / "outputs.txt").read_text().splitlines():
        r, j, dtype, ndim, *dims = line.split()
        assert int(j) == len(outs[int(r)]) and len(dims) == int(ndim), f"malformed outputs.txt line {line!r}"
        shape = tuple(int(x) for x in dims)
        outs[int(r)].append(np.fromfile(d / f"out-{r}-{j}.bin", dtype=np.dtype(dtype)).reshape(shape))
    return outs
