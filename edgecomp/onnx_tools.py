"""ONNX helpers shared by the export and lower stages: load/validate, fold, run in onnxruntime."""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path

import numpy as np

from edgecomp.errors import MalformedModelError
from edgecomp.specs import Feeds, TensorSpec

_ONNX_DTYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64", 2: "uint8", 3: "int8"}
# The largest input accepted (elements): 256 Mi, 1 GiB of float32, far beyond any edge model's input. Larger
# (fuzzing found dims like 2**40) made the synthetic calibration feeds fail inside numpy with a traceback.
MAX_INPUT_ELEMENTS = 1 << 28


def load(path: str | Path):
    """Parse and check an ONNX file; MalformedModelError with the reason if it is not valid ONNX.

    External data (weights in side files) is read only from inside the model's directory: a location that
    is absolute, climbs out with ``..`` or passes through a symlink is refused before any file is opened
    (``check_external_data``), whatever the installed onnx's own checks do."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
        check_external_data(model, path.parent)
        onnx.load_external_data_for_model(model, str(path.parent))
    except FileNotFoundError as e:
        what = "ONNX file" if not path.exists() else "external data file of ONNX file"
        raise MalformedModelError(f"{what} {path} does not exist ({e.filename})", hint="check the path") from None
    except MalformedModelError:
        raise
    except Exception as e:  # protobuf raises DecodeError and friends for garbage bytes
        raise MalformedModelError(f"{path} is not a valid ONNX file ({type(e).__name__}: {e})",
                                  hint="re-export the model; the file may be truncated") from None
    check(model, str(path))
    return model


def _tensors(graph):
    """Every TensorProto of ``graph``: initializers, sparse initializers, attributes, subgraphs (recursively)."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(g)


def check_external_data(model, base: Path) -> None:
    """MalformedModelError unless every external-data location is a plain relative path to a regular file
    inside ``base`` (the model's directory), reached without a symlink."""
    from onnx import TensorProto

    root = Path(base).resolve()
    for t in _tensors(model.graph):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in t.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        escapes = (not location or Path(location).is_absolute() or location.startswith(("/", "\\"))
                   or ".." in Path(location.replace("\\", "/")).parts or not target.is_relative_to(root))
        if escapes or (root / location).is_symlink():
            raise MalformedModelError(f"tensor {t.name!r} has its data at {location!r}, outside the model's directory "
                                      f"{root} (or through a symlink)",
                                      hint="external data must be a relative path to a file beside the .onnx")


def check(model, where: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(model)
    except Exception as e:  # ValidationError, plus C++ errors surfacing as various types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MalformedModelError(f"{where} fails the ONNX checker: {first}", hint="re-export the model") from None


def input_specs(model) -> tuple[TensorSpec, ...]:
    """Static input specs of the graph (initializers excluded); MalformedModelError on dynamic dims."""
    init = {i.name for i in model.graph.initializer}
    specs = []
    for inp in model.graph.input:
        if inp.name in init:
            continue
        tt = inp.type.tensor_type
        dims = []
        for d in tt.shape.dim:
            if not d.HasField("dim_value") or d.dim_value <= 0:
                raise MalformedModelError(f"input {inp.name!r} has a dynamic dimension ({d.dim_param or '?'})",
                                          hint="export the model with static shapes (batch 1, fixed sequence length)")
            dims.append(d.dim_value)
        if math.prod(dims) > MAX_INPUT_ELEMENTS:
            raise MalformedModelError(f"input {inp.name!r} has shape {dims}: over {MAX_INPUT_ELEMENTS:,d} elements",
                                      hint="export the model with the shape it runs at on the device")
        dtype = _ONNX_DTYPES.get(tt.elem_type)
        if dtype is None:
            raise MalformedModelError(f"input {inp.name!r} has unsupported element type {tt.elem_type}",
                                      hint="inputs must be float32/float16/int64/int32/uint8/int8/bool")
        specs.append(TensorSpec(inp.name, tuple(dims), dtype))
    return tuple(specs)


@contextlib.contextmanager
def runtime_errors(where: str):
    """Turn onnxruntime's own exceptions (raised while creating a session on, or running, a model the user
    gave) into MalformedModelError naming ``where``: the ONNX checker passes graphs onnxruntime rejects
    (shape inference failures, bad initializers, out-of-range indices at run time)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    kinds = tuple(getattr(ort_state, n) for n in ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf",
                                                  "NotImplemented", "RuntimeException", "NoSuchFile", "EPFail")
                  if hasattr(ort_state, n))
    try:
        yield
    except kinds as e:
        text = " ".join(str(e).split())
        raise MalformedModelError(f"onnxruntime cannot run {where}: {text[:300]}",
                                  hint="the graph passes the ONNX checker but cannot run; re-export it") from None


def session(model_or_path, threads: int = 2, optimize: bool = True, exact: bool = True):
    """An onnxruntime CPU session with a fixed thread count. ``exact=False`` lets onnxruntime's QDQ fusions
    quantize activations (its fastest setting, for benchmarks only)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if exact:
        # Otherwise onnxruntime rewrites int8 DequantizeLinear -> MatMul into an 8-bit MatMulNBits that also
        # quantizes the activations (0.13 off on a test layer): keep the graph's own numerics as the reference.
        so.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    src = model_or_path.SerializeToString() if hasattr(model_or_path, "SerializeToString") else str(model_or_path)
    try:
        return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail type, not importable by a stable name
        if "Attempt to replace the existing tensor" not in str(e):
            raise
        # onnxruntime 1.32's MatMulAddFusion adds a shape initializer under a name the graph already holds
        # (seen on folded BERT graphs whose heads were pruned to 2 x 8): run without that one fusion
        return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=["MatMulAddFusion"])


def fold(model):
    """onnxruntime's BASIC offline optimisation: constant folding and pad/shape folding.

    TVM's ONNX importer needs this for the zoo models (computed pads in EfficientNet, mask graphs
    in BERT/Llama); the folded graph is what lower compiles and what the artifact ships.
    """
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgecomp-fold-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "folded.onnx"
        onnx.save(model, str(src))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(dst)
        so.log_severity_level = 3
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        folded = onnx.load(str(dst))
    folded.producer_name = "edgecomp"
    return folded


def run(sess, feeds: Feeds) -> list[np.ndarray]:
    return sess.run(None, feeds)


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    pairs = zip(a, b, strict=True)
    return max(_nan_is_inf(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))))
               for x, y in pairs)


def _nan_is_inf(v: float) -> float:
    """NaN compares false with everything, so max() would drop it: a NaN difference counts as infinite."""
    return float("inf") if v != v else v


def rel_l2_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """max over outputs of ‖a − b‖ / ‖b‖ (float64); 0 when both are zero."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        den = float(np.linalg.norm(y))
        num = float(np.linalg.norm(x - y))
        worst = max(worst, _nan_is_inf(num / den if den else (0.0 if num == 0 else float("inf"))))
    return worst


# Quantized graphs round activations at run time, so a last-ulp difference between two runtimes (another
# summation order) can flip a rounding and move one activation by a whole quantization step; at 4-bit
# activations one flip moved vit-fmnist's logits by 5 % on one feed in eight (the other seven agreed to
# 2e-7). A wrong graph (a transposed or mis-packed weight, a lost zero point) moves every feed by about the
# signal itself. Quantized builds are therefore checked on relative L2 error with the MEDIAN over the check
# feeds against the tolerance (the model's quantization noise vs fp32, at least 1e-2), and the worst feed
# against twice that.
QUANT_REL_TOLERANCE = 1e-2


def check_error(outs: list[list[np.ndarray]], refs: list[list[np.ndarray]], quantized: bool) -> dict:
    """Compare per-feed outputs with their references: {"metric", "value", "worst"}; ``value`` is what the
    tolerance bounds (max |diff| for float graphs, median relative L2 for quantized ones, see above)."""
    if not quantized:
        err = max(max_abs_diff(o, r) for o, r in zip(outs, refs, strict=True))  # NaN already counted as inf
        return {"metric": "max_abs_err", "value": err, "worst": err}
    errs = [rel_l2_diff(o, r) for o, r in zip(outs, refs, strict=True)]
    return {"metric": "rel_l2_err", "value": float(np.median(errs)), "worst": max(errs)}


def within(check: dict, tolerance: float) -> bool:
    """The check passes (NaN fails): value <= tolerance, and for quantized graphs worst <= 2 * tolerance."""
    limit = 2 * tolerance if check["metric"] == "rel_l2_err" else tolerance
    return bool(check["value"] <= tolerance and check["worst"] <= limit)
