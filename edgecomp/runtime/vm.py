"""Run a compiled Relax executable: ``main(*inputs, *params)`` on the CPU, numpy in and out."""

from __future__ import annotations

import numpy as np

from edgecomp.specs import Feeds, TensorSpec


class VMRunner:
    """Holds a loaded VM and its parameters on the device; ``runner(feeds) -> list[np.ndarray]``."""

    def __init__(self, lib, params: list[np.ndarray], inputs: tuple[TensorSpec, ...]):
        import tvm
        from tvm import relax

        self._tvm = tvm
        self.inputs = inputs
        self.vm = relax.VirtualMachine(lib, tvm.cpu())
        self.main = self.vm["main"]
        self.params = [tvm.runtime.tensor(np.require(p, requirements="C")) for p in params]  # keeps 0-d shapes

    def prepare(self, feeds: Feeds) -> list:
        """Validate and move ``feeds`` to the device once (benchmarks time ``invoke`` only)."""
        return [self._tvm.runtime.tensor(s.check(feeds[s.name])) for s in self.inputs] + self.params

    def invoke(self, prepared: list):
        return self.main(*prepared)

    def __call__(self, feeds: Feeds) -> list[np.ndarray]:
        out = self.invoke(self.prepare(feeds))
        return [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
