"""Run an asic-sim artifact: host graph on the CPU, partitions through the simulator (or the reference).

``Executor(host, metas, programs, images, cfg)(feeds) -> outputs``: each partition's activation goes into
its program's DRAM tensor X, the simulator runs the program, Y comes back. With ``layers=`` (the
``GemmLayer`` records from partitioning the quantized ONNX again) partitions run through
``reference.gemm`` instead: the independent integer reference the simulator must match bit for bit. A
partition with no datapath in this configuration runs that reference on the host CPU (and the build
report lists it). An activation x activation partition (``MatMulQ``: a, b) runs every leading
index (batch x heads) in one program, with a's rows in X and bᵀ in XB (leading index by leading index).
``SimRunner(artifact_dir, inputs)`` is the runner ``Artifact.load_runner`` returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecomp.asic import codegen, isa, reference
from edgecomp.asic.config import AsicConfig
from edgecomp.asic.hostgraph import HostGraph
from edgecomp.asic.sim import Simulator, Stats
from edgecomp.errors import ArtifactError, InputError
from edgecomp.specs import Feeds, TensorSpec


class Executor:
    def __init__(self, host, metas: list[dict], programs: list, images: list[dict], cfg: AsicConfig,
                 layers=None, threads: int = 1, timing: bool = False):
        self.graph = HostGraph(host, threads=threads)
        self.cfg = cfg
        self.metas = {m["spec"]["name"]: (i, m) for i, m in enumerate(metas)}
        self.programs, self.images = programs, images
        self.layers = None if layers is None else {layer.name: layer for layer in layers}
        self.stats: dict[str, Stats] = {}  # per partition, from the last run (when timing)
        self.timing = timing

    def gemm(self, name: str, *xs: np.ndarray) -> np.ndarray:
        i, meta = self.metas[name]
        spec = codegen.LayerSpec(**meta["spec"])
        if spec.kind == "matmul":
            return self._matmul(i, meta, spec, *xs)
        x = xs[0]
        if self.layers is not None or meta["datapath"] is None:
            layer = self.layers[name] if self.layers is not None else _layer_from_image(spec, meta, self.images[i])
            return reference.gemm(layer, x)
        M = x.size // spec.K
        self._check_rows(name, meta, M)
        dram = dict(self.images[i])
        dram[codegen.X] = np.ascontiguousarray(x, np.float32).reshape(M, spec.K)
        dram[codegen.Y] = np.zeros((M, spec.N), np.float32)
        self.stats[name] = self._sim(i, meta, spec, dram)
        y = dram[codegen.Y]
        return y if meta["flat"] else y.reshape(*x.shape[:-1], spec.N)

    def _matmul(self, i: int, meta: dict, spec: codegen.LayerSpec, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        name = spec.name
        if self.layers is not None or meta["datapath"] is None:
            from edgecomp.asic.partition import MatMulLayer

            layer = self.layers[name] if self.layers is not None else MatMulLayer(
                name, meta["a"], meta["b"], meta["out"], spec.qmax, spec.unsigned, spec.qmax_b)
            return reference.matmul(layer, a, b)
        M, K, N = meta["M"], spec.K, spec.N
        if a.shape[-2:] != (M, K) or b.shape[-2:] != (K, N) or a.size != spec.batch * M * K or b.size != \
                spec.batch * K * N:
            raise InputError(f"partition {name} was compiled for [{spec.batch}, {M}, {K}] x [{spec.batch}, {K}, {N}], "
                             f"got {list(a.shape)} x {list(b.shape)}",
                             hint="asic-sim artifacts have static shapes; feed the shapes the model was built for")
        B = spec.batch
        bt = np.swapaxes(np.asarray(b, np.float32).reshape(B, K, N), 1, 2)
        dram = {codegen.X: np.ascontiguousarray(a, np.float32).reshape(B * M, K),
                codegen.XB: np.ascontiguousarray(bt).reshape(B * N, K), codegen.Y: np.empty((B * M, N), np.float32),
                **codegen.matmul_scratch(spec)}
        self.stats[name] = self._sim(i, meta, spec, dram)
        return dram[codegen.Y].reshape(*a.shape[:-1], N)

    def _sim(self, i: int, meta: dict, spec: codegen.LayerSpec, dram: dict) -> Stats:
        sim = Simulator(self.cfg, self.cfg.datapath_named(meta["datapath"]), timing=self.timing)
        return sim.run(self.programs[i], dram, codegen.tensor_bits(spec), frozenset(meta.get("on_chip", ())))

    @staticmethod
    def _check_rows(name: str, meta: dict, M: int) -> None:
        if M != meta["M"]:
            raise InputError(f"partition {name} was compiled for {meta['M']} rows, got {M}",
                             hint="asic-sim artifacts have static shapes; feed the shapes the model was built for")

    def __call__(self, feeds: dict) -> list[np.ndarray]:
        return self.graph(feeds, self.gemm)


def _layer_from_image(spec: codegen.LayerSpec, meta: dict, img: dict):
    """A GemmLayer rebuilt from its DRAM image (host fallback of a partition with no datapath)."""
    from edgecomp.asic.partition import GemmLayer

    w = img[codegen.W]
    if spec.wbits == 4:
        codes = np.empty((w.shape[0], w.shape[1] * 2), np.int32)
        codes[:, 0::2], codes[:, 1::2] = w & 0x0F, w >> 4
        zeros = img[codegen.Z].T.astype(np.int32)
    else:
        codes, zeros = w.astype(np.int32), None
    bias = img[codegen.BIAS][0] if codegen.BIAS in img else None
    return GemmLayer(spec.name, meta["x"], meta["out"], codes, np.ascontiguousarray(img[codegen.WS].T), zeros,
                     bias, spec.G, spec.wbits, spec.qmax, meta["flat"])


def load(path: Path):
    """(host graph, metas, programs, images) from an artifact's ``asic/`` directory."""
    import onnx

    d = Path(path) / "asic"
    if not (d / "program.bin").exists():
        raise ArtifactError(f"{path} has no asic/program.bin", hint="build it with --target asic-sim")
    host = onnx.load(str(d / "host.onnx"))
    metas = json.loads((d / "layers.json").read_text())
    words = isa.decode_program((d / "program.bin").read_bytes())
    programs = [words[m["program"][0]:m["program"][0] + m["program"][1]] for m in metas]
    with np.load(d / "dram.npz") as z:
        arrays = {k: z[k] for k in z.files}
    images = [{} for _ in metas]
    for k, a in arrays.items():
        i, t = k[1:].split("_")
        images[int(i)][int(t)] = a
    return host, metas, programs, images


class SimRunner:
    """The artifact runner for ``runner = "sim"``: ``runner(feeds) -> list[np.ndarray]``."""

    def __init__(self, path: Path, inputs: tuple[TensorSpec, ...], asic_table: dict, reference_only: bool = False):
        host, metas, programs, images = load(path)
        self.inputs = inputs
        layers = None
        if reference_only:
            import onnx

            from edgecomp.asic.partition import partition

            P = partition(onnx.load(str(Path(path) / "model.onnx")))
            layers = (*P.layers, *P.matmuls)
        self.executor = Executor(host, metas, programs, images, AsicConfig.from_table(asic_table), layers=layers)

    def prepare(self, feeds: Feeds) -> dict:
        return {s.name: s.check(feeds[s.name]) for s in self.inputs}

    def invoke(self, prepared: dict):
        return self.executor(prepared)

    def __call__(self, feeds: Feeds) -> list[np.ndarray]:
        return self.invoke(self.prepare(feeds))
