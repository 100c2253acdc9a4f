"""Execute a partitioned graph: host segments through onnxruntime, partitions through a callback.

The host graph (``partition.partition``) keeps the original node order, which is topological. Maximal runs of
host nodes between two partitions become one onnxruntime session each (a *segment*); a partition is a call
``gemm(name, x) -> y``. Segment inputs are typed from the graph inputs, from earlier segments' outputs and
from partitions (float32); a partition with two inputs (``MatMulQ``) is called ``gemm(name, a, b)``.
``trace=True`` also returns every value's shape and dtype (the cost model's op sizes) from one run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from edgecomp.asic.partition import is_partition


@dataclass(frozen=True)
class Segment:
    nodes: tuple  # onnx NodeProto, host ops in graph order
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Call:
    name: str  # partition (layer) name
    inputs: tuple[str, ...]  # x (Gemm) or a, b (MatMulQ)
    out: str


def _onnx_type(dtype: np.dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def plan(graph: onnx.ModelProto) -> list:
    """Steps in order: ``Segment`` or ``Call``."""
    g = graph.graph
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(g.node):
        for v in n.input:
            consumers.setdefault(v, []).append(i)
    outputs = {o.name for o in g.output}
    inits = {t.name for t in g.initializer}
    steps, run = [], []

    def close():
        if not run:
            return
        idx = {i for i, _ in run}
        produced = {o for _, n in run for o in n.output}
        ins: list[str] = []
        for _, n in run:
            for v in n.input:
                if v and v not in produced and v not in inits and v not in ins:
                    ins.append(v)
        outs = [o for _, n in run for o in n.output
                if o in outputs or any(c not in idx for c in consumers.get(o, []))]
        steps.append(Segment(tuple(n for _, n in run), tuple(ins), tuple(outs)))
        run.clear()

    for i, n in enumerate(g.node):
        if is_partition(n):
            close()
            steps.append(Call(n.name, tuple(n.input), n.output[0]))
        else:
            run.append((i, n))
    close()
    return steps


class HostGraph:
    """``HostGraph(graph)(feeds, gemm) -> list of graph outputs``; ``gemm(name, *inputs) -> y`` runs a partition."""

    def __init__(self, graph: onnx.ModelProto, threads: int = 1, trace: bool = False):
        import onnxruntime as ort

        self.graph = graph
        self.steps = plan(graph)
        self.outputs = [o.name for o in graph.graph.output]
        self.trace = trace
        types = {v.name: v.type.tensor_type.elem_type for v in graph.graph.input}
        inits = {t.name: t for t in graph.graph.initializer}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # same numerics as the reference
        opts.log_severity_level = 3
        self.sessions = []
        for step in self.steps:
            if isinstance(step, Call):
                types[step.out] = onnx.TensorProto.FLOAT
                self.sessions.append(None)
                continue
            outs = list(step.outputs)
            if trace:
                outs += [o for n in step.nodes for o in n.output if o and o not in outs]
            used = {v for n in step.nodes for v in n.input}
            m = _segment_model(graph, step, outs, types, [inits[v] for v in used if v in inits])
            sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
            for o in sess.get_outputs():
                types[o.name] = _ORT_TYPES[o.type]
            self.sessions.append((sess, outs))

    def __call__(self, feeds: dict, gemm: Callable[..., np.ndarray],
                 shapes: dict | None = None) -> list[np.ndarray]:
        env = dict(feeds)
        for step, sess in zip(self.steps, self.sessions, strict=True):
            if isinstance(step, Call):
                env[step.out] = gemm(step.name, *(env[v] for v in step.inputs))
                continue
            s, outs = sess
            vals = s.run(outs, {v: env[v] for v in step.inputs})
            env.update(zip(outs, vals, strict=True))
        if shapes is not None:
            shapes.update({k: (tuple(v.shape), str(v.dtype)) for k, v in env.items()})
        return [env[o] for o in self.outputs]


def _segment_model(graph, step: Segment, outs: list[str], types: dict, inits: list) -> onnx.ModelProto:
    """A model of the segment's nodes; outputs are left untyped (onnxruntime infers them; ONNX's own type
    inference stops at contrib ops)."""
    ins = [helper.make_tensor_value_info(v, types[v], None) for v in step.inputs]
    g = helper.make_graph(list(step.nodes), "segment", ins, [onnx.ValueInfoProto(name=o) for o in outs], inits)
    return helper.make_model(g, opset_imports=list(graph.opset_import), ir_version=graph.ir_version)


_ORT_TYPES = {"tensor(float)": onnx.TensorProto.FLOAT, "tensor(int64)": onnx.TensorProto.INT64,
              "tensor(int32)": onnx.TensorProto.INT32, "tensor(bool)": onnx.TensorProto.BOOL,
              "tensor(float16)": onnx.TensorProto.FLOAT16, "tensor(int8)": onnx.TensorProto.INT8,
              "tensor(uint8)": onnx.TensorProto.UINT8, "tensor(double)": onnx.TensorProto.DOUBLE}
