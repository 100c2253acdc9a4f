"""Engines that execute one artifact's model: edgecomp (TVM), onnxruntime and torch.

Every engine has ``prepare(feeds) -> prepared`` (validation and copies, not timed),
``invoke(prepared)`` (the timed call) and ``__call__(feeds) -> list[np.ndarray]``.
The torch engine exists only for sources edgecomp can reload (zoo names, model directories).
"""

from __future__ import annotations

import numpy as np

from edgecomp.artifact import Artifact
from edgecomp.errors import ConfigError
from edgecomp.registry import Registry
from edgecomp.specs import Feeds

ENGINES: Registry = Registry("engine")


@ENGINES.register("edgecomp")
class TVMEngine:
    def __init__(self, art: Artifact, threads: int):
        self.runner = art.load_runner()

    def prepare(self, feeds: Feeds):
        return self.runner.prepare(feeds)

    def invoke(self, prepared):
        return self.runner.invoke(prepared)

    def __call__(self, feeds: Feeds) -> list[np.ndarray]:
        return self.runner(feeds)


@ENGINES.register("onnxruntime")
class OrtEngine:
    def __init__(self, art: Artifact, threads: int):
        from edgecomp import onnx_tools

        self.inputs = art.inputs
        self.sess = onnx_tools.session(art.path / "model.onnx", threads=threads)

    def prepare(self, feeds: Feeds):
        return {s.name: s.check(feeds[s.name]) for s in self.inputs}

    def invoke(self, prepared):
        return self.sess.run(None, prepared)

    def __call__(self, feeds: Feeds) -> list[np.ndarray]:
        return self.invoke(self.prepare(feeds))


@ENGINES.register("onnxruntime-best")
class OrtBestEngine(OrtEngine):
    """onnxruntime at its fastest on a quantized graph, numerics aside: every ``MatMulNBits`` at
    ``accuracy_level`` 4 (int8 activations, its VNNI/AMX kernels) and its own QDQ fusions at their default
    (int8 ``DequantizeLinear -> MatMul`` becomes an 8-bit MatMulNBits that quantizes activations too).
    The numerics-preserving ``onnxruntime`` engine keeps both in fp32; on an fp32 graph the two are the same."""

    def __init__(self, art: Artifact, threads: int):
        import onnx

        from edgecomp import onnx_tools

        self.inputs = art.inputs
        model = onnx.load(str(art.path / "model.onnx"))
        for node in model.graph.node:
            if node.op_type == "MatMulNBits" and node.domain == "com.microsoft":
                kept = [a for a in node.attribute if a.name != "accuracy_level"]
                del node.attribute[:]
                node.attribute.extend([*kept, onnx.helper.make_attribute("accuracy_level", 4)])
        self.sess = onnx_tools.session(model, threads=threads, exact=False)


@ENGINES.register("torch")
class TorchEngine:
    def __init__(self, art: Artifact, threads: int):
        import torch

        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        self.torch = torch
        self.inputs = art.inputs
        self.module = reference_module(art.manifest)

    def prepare(self, feeds: Feeds):
        return [self.torch.from_numpy(s.check(feeds[s.name])) for s in self.inputs]

    def invoke(self, prepared):
        return self.module(*prepared)

    def __call__(self, feeds: Feeds) -> list[np.ndarray]:
        out = self.invoke(self.prepare(feeds))
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def reference_module(manifest: dict):
    """The fp32 torch model an artifact was built from (zoo or model directory sources only)."""
    source = manifest["source"]
    if source["kind"] == "zoo":
        from edgecomp import zoo

        return zoo.get(source["ref"]).load()
    if source["kind"] == "hf":
        from edgecomp.stages import importer

        return importer.load(source["ref"], 1, 0).payload
    raise ConfigError(f"no torch reference for a model imported from {source['kind']}",
                      hint="torch comparisons need a zoo name or a model directory as the build source")


def open_engine(name: str, art: Artifact, threads: int = 2):
    return ENGINES.get(name)(art, threads)
