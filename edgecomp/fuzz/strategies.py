"""Hypothesis strategies: one per fuzz target, each drawing a JSON payload for ``targets.execute``.

Half of the ONNX cases are well-formed chains of up to 8 ops TVM lowers (conv, pooling, matmul, softmax,
transposes, reductions, casts, elementwise math) with constants that may be NaN, Inf or huge, so they reach
TVM's import and compile; a quarter start from small template graphs with odd attributes, dtypes and
shapes; a quarter are assembled from random parts
(unknown ops, missing inputs, duplicate names, cycles, absurd or negative dims, undefined dtypes,
truncated initializers). Any case may then be damaged at the byte level (truncated, bytes flipped,
garbage prepended, or random bytes outright). Recipes mix known sections and fields with unknown ones
and values of every TOML type (huge, negative, NaN/Inf, nested); argv mixes the CLI's real commands and
options with random words and fixture paths; .npy files mix dtypes, shapes, Fortran order, object
arrays (pickles), forged headers and truncation; params.bin files are a valid one damaged.
"""

from __future__ import annotations

import base64
import io
import json
import math

import numpy as np
from hypothesis import strategies as st

# ONNX element types: real ones, plus undefined (0), string (8), complex (14), 4-bit (21) and nonsense.
ELEM_TYPES = (1, 1, 1, 7, 6, 2, 3, 9, 10, 11, 16, 0, 8, 14, 21, 999)
DIMS = (1, 1, 2, 3, 4, 8, 0, -1, -7, 2 ** 31 - 1, 2 ** 40, 2 ** 62)
OPS = ("Relu", "Add", "Mul", "MatMul", "Gemm", "Conv", "Reshape", "Transpose", "Softmax", "Gather", "Concat",
       "Identity", "Cast", "ReduceMean", "Slice", "Shape", "Expand", "Where", "Sqrt", "Div", "LayerNormalization",
       "TopK", "NonZero", "Loop", "If", "FooBarOp", "MatMulNBits", "DequantizeLinear")
DOMAINS = ("", "", "", "", "com.microsoft", "edgecomp", "no.such.domain")
FLOATS = st.sampled_from([0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e38, -1e38, 1e-45, 3.5])
INTS = st.sampled_from([0, 1, -1, 2, 3, 7, -2 ** 63, 2 ** 63 - 1, 2 ** 31, -2 ** 31, 1 << 40])
NAMES = st.sampled_from(["x", "y", "W", "h", "h2", "b", "", "x ", "../x", "é"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@st.composite
def _damage(draw, data: bytes, intact: int = 3) -> bytes:
    """``data`` unchanged (``intact`` in ``intact + 4`` draws), truncated, with bytes flipped, garbage-prefixed,
    or replaced by random bytes."""
    how = draw(st.sampled_from(["none"] * intact + ["truncate", "flip", "prefix", "random"]))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        buf = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        return bytes(buf)
    if how == "prefix":
        return draw(st.binary(min_size=1, max_size=16)) + data
    if how == "random":
        return draw(st.binary(max_size=512))
    return data


def _tensor(name: str, data_type: int, dims: list[int], values: list[float], truncate: bool):
    from onnx import TensorProto, helper

    t = TensorProto(name=name, data_type=data_type, dims=dims)
    np_type = {1: np.float32, 10: np.float16, 11: np.float64, 7: np.int64, 6: np.int32, 3: np.int8, 2: np.uint8,
               9: np.bool_}.get(data_type)
    n = math.prod(dims) if all(0 <= d < 4096 for d in dims) and len(dims) < 6 else 4
    if np_type is not None and n <= 4096:
        with np.errstate(all="ignore"):
            arr = np.resize(np.array(values or [1.0], np.float64), n).astype(np_type)
        raw = arr.tobytes()
        t.raw_data = raw[: len(raw) // 2] if truncate else raw
    elif data_type == 8:
        t.string_data.extend([b"abc"] * min(n, 4))
    del helper
    return t


@st.composite
def _valid_graph(draw):
    """A small, checker-clean graph from one of a few templates, with drawn sizes, values and attributes."""
    from onnx import TensorProto, helper

    k, n = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    values = draw(st.lists(FLOATS | st.floats(-10, 10, width=32), min_size=1, max_size=8))
    w = _tensor("W", TensorProto.FLOAT, [k, n], values, truncate=False)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])
    template = draw(st.sampled_from(["matmul", "softmax", "gather", "reshape", "conv", "transpose"]))
    inits, inputs = [w], [x]
    if template == "matmul":
        nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
        out = [1, n]
    elif template == "softmax":
        axis = draw(INTS | st.integers(-3, 3))
        nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=axis)]
        out = [1, n]
    elif template == "gather":
        idx = helper.make_tensor_value_info("x", TensorProto.INT64, [1, k])
        inputs = [idx]
        axis = draw(st.sampled_from([0, 0, 1, -1, 5, 2 ** 40]))
        nodes = [helper.make_node("Gather", ["W", "x"], ["y"], axis=axis)]
        out = [1, k, n]
    elif template == "reshape":
        shape = draw(st.lists(INTS | st.integers(-1, 16), min_size=1, max_size=4))
        inits.append(helper.make_tensor("s", TensorProto.INT64, [len(shape)], shape))
        nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Reshape", ["h", "s"], ["y"])]
        out = [n, 1]
    elif template == "conv":
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, k + 2, k + 2])]
        kern = draw(st.sampled_from([1, 3, 5, 0, -1, 100]))
        inits = [_tensor("W", TensorProto.FLOAT, [n, 2, 3, 3], values, truncate=False)]
        nodes = [helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[kern, 3],
                                  pads=draw(st.lists(st.sampled_from([0, 1, -1, 2 ** 31]), min_size=4, max_size=4)),
                                  strides=[draw(st.sampled_from([1, 2, 0, -1])), 1])]
        out = [1, n, k, k]
    else:
        perm = draw(st.permutations([0, 1]) | st.lists(st.integers(-2, 3), min_size=1, max_size=3))
        nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Transpose", ["h"], ["y"], perm=perm)]
        out = [n, 1]
    y = helper.make_tensor_value_info("y", draw(st.sampled_from([TensorProto.FLOAT] * 4 + [TensorProto.INT64])), out)
    if draw(st.integers(0, 3)) == 0:  # the input mutated: another dtype or shape
        inputs = [helper.make_tensor_value_info("x", draw(st.sampled_from(ELEM_TYPES)),
                                                draw(st.lists(st.sampled_from(DIMS), max_size=5)))]
    graph = helper.make_graph(nodes, "fuzz", inputs, [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", draw(st.sampled_from([17, 17, 13, 21])))])


@st.composite
def _random_graph(draw):
    """Parts put together at random: unknown ops, missing inputs, duplicates, cycles, odd dims and dtypes."""
    from onnx import helper

    def dims():
        return draw(st.lists(st.sampled_from(DIMS) | st.sampled_from(["N", ""]), max_size=5))

    inputs = [helper.make_tensor_value_info(draw(NAMES), draw(st.sampled_from(ELEM_TYPES)), dims())
              for _ in range(draw(st.integers(0, 3)))]
    inits = []
    for _ in range(draw(st.integers(0, 3))):
        inits.append(_tensor(draw(NAMES), draw(st.sampled_from(ELEM_TYPES)), draw(st.lists(st.sampled_from(DIMS),
                             max_size=4)), draw(st.lists(FLOATS, max_size=4)), truncate=draw(st.booleans())))
    names = [i.name for i in inputs] + [t.name for t in inits]
    nodes = []
    for j in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(OPS))
        pool = names + ["missing", f"t{j + 1}"]  # a name never produced, and the next node's output (a cycle)
        ins = draw(st.lists(st.sampled_from(pool), max_size=3))
        out = draw(st.sampled_from([f"t{j}", f"t{j}", *names[:2]]) if names else st.just(f"t{j}"))
        attrs = draw(st.dictionaries(st.sampled_from(["axis", "perm", "to", "kernel_shape", "alpha", "bits"]),
                                     INTS | st.lists(st.integers(-3, 5), min_size=1, max_size=3) | FLOATS, max_size=2))
        nodes.append(helper.make_node(op, ins, [out], domain=draw(st.sampled_from(DOMAINS)), **attrs))
        names.append(out)
    outputs = [helper.make_tensor_value_info(draw(st.sampled_from(names or ["y"])),
                                             draw(st.sampled_from(ELEM_TYPES)), dims())
               for _ in range(draw(st.integers(0, 2)))]
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, inits)
    opsets = [helper.make_opsetid("", draw(st.sampled_from([17, 1, 7, 13, 21, 99, 2 ** 40])))]
    return helper.make_model(graph, opset_imports=opsets, ir_version=draw(st.sampled_from([8, 8, 3, 0, 99])))


@st.composite
def _chain_graph(draw):
    """A well-formed chain of 1-8 ops TVM lowers (shapes tracked, attributes legal), on a rank-2 or rank-4
    float input, with constants that may hold NaN/Inf/huge values: cases that reach TVM's import and compile."""
    from onnx import TensorProto, helper

    opset = draw(st.sampled_from([17, 18, 13]))
    shape = draw(st.sampled_from([[1, 8], [1, 3, 6, 6], [1, 16], [1, 2, 4, 4]]))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    nodes, inits, cur = [], [], "x"

    def const(dims, name):
        vals = draw(st.lists(FLOATS | st.floats(-4, 4, width=32), min_size=1, max_size=6))
        inits.append(_tensor(name, TensorProto.FLOAT, list(dims), vals, truncate=False))
        return name

    for i in range(draw(st.integers(1, 8))):
        out = f"v{i}"
        rank = len(shape)
        ops = ["Relu", "Sigmoid", "Tanh", "Exp", "Sqrt", "Log", "Neg", "Abs", "Erf", "Add", "Mul", "Div", "Softmax",
               "Clip", "Transpose", "ReduceMean", "Cast16", "MatMul", "Flatten"]
        if rank == 4:
            ops += ["Conv", "MaxPool", "AveragePool", "GlobalAveragePool"]
        op = draw(st.sampled_from(ops))
        if op in ("Add", "Mul", "Div"):
            other = const(draw(st.sampled_from([[1], shape[-1:], list(shape)])), f"c{i}")
            nodes.append(helper.make_node(op, [cur, other], [out]))
        elif op == "Softmax":
            nodes.append(helper.make_node(op, [cur], [out], axis=draw(st.integers(-rank, rank - 1))))
        elif op == "Clip":
            lo, hi = const([], f"lo{i}"), const([], f"hi{i}")
            nodes.append(helper.make_node(op, [cur, lo, hi], [out]))
        elif op == "Transpose":
            perm = draw(st.permutations(list(range(rank))))
            nodes.append(helper.make_node(op, [cur], [out], perm=perm))
            shape = [shape[p] for p in perm]
        elif op == "ReduceMean":
            axis = draw(st.integers(0, rank - 1))
            if opset >= 18:  # axes moved from an attribute to an input in opset 18
                inits.append(helper.make_tensor(f"ax{i}", TensorProto.INT64, [1], [axis]))
                nodes.append(helper.make_node(op, [cur, f"ax{i}"], [out], keepdims=1))
            else:
                nodes.append(helper.make_node(op, [cur], [out], axes=[axis], keepdims=1))
            shape = [1 if k == axis else d for k, d in enumerate(shape)]
        elif op == "Cast16":
            nodes += [helper.make_node("Cast", [cur], [f"h{i}"], to=TensorProto.FLOAT16),
                      helper.make_node("Cast", [f"h{i}"], [out], to=TensorProto.FLOAT)]
        elif op == "MatMul":
            n = draw(st.integers(1, 8))
            nodes.append(helper.make_node(op, [cur, const([shape[-1], n], f"w{i}")], [out]))
            shape = shape[:-1] + [n]
        elif op == "Flatten":
            nodes.append(helper.make_node(op, [cur], [out], axis=1))
            shape = [shape[0], math.prod(shape[1:])]
        elif op == "Conv":
            c, k = shape[1], draw(st.sampled_from([1, 3]))
            n, pad = draw(st.integers(1, 4)), draw(st.sampled_from([0, 1]))
            if shape[2] + 2 * pad < k or shape[3] + 2 * pad < k:
                k = 1
            nodes.append(helper.make_node(op, [cur, const([n, c, k, k], f"w{i}")], [out], kernel_shape=[k, k],
                                          pads=[pad] * 4))
            shape = [1, n, shape[2] + 2 * pad - k + 1, shape[3] + 2 * pad - k + 1]
        elif op in ("MaxPool", "AveragePool"):
            if min(shape[2:]) < 2:
                nodes.append(helper.make_node("Relu", [cur], [out]))
            else:
                nodes.append(helper.make_node(op, [cur], [out], kernel_shape=[2, 2], strides=[2, 2]))
                shape = [shape[0], shape[1], shape[2] // 2, shape[3] // 2]
        elif op == "GlobalAveragePool":
            nodes.append(helper.make_node(op, [cur], [out]))
            shape = [shape[0], shape[1], 1, 1]
        else:
            nodes.append(helper.make_node(op, [cur], [out]))
        cur = out
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    graph = helper.make_graph(nodes, "chain", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@st.composite
def onnx_case(draw):
    model = draw(st.one_of(_chain_graph(), _chain_graph(), _valid_graph(), _random_graph()))
    return {"b64": _b64(draw(_damage(model.SerializeToString(), intact=8)))}


SECTIONS = ("prune", "merge", "quantize", "export", "lower", "import", "nope")
FIELDS = ("ratio", "method", "budget_ms", "multiple", "r", "schedule", "seed", "scheme", "group_size", "layers",
          "weight_bits", "opset", "check_samples", "tolerance", "tuning", "kernels", "calib_samples", "version",
          "trust_remote_code", "upop_seconds", "damp", "unknown_field")
TOML_SCALARS = (st.integers(-2 ** 63, 2 ** 63 - 1) | INTS | st.integers(-2, 40) | st.floats(-2, 2)
                | st.floats(allow_nan=True, allow_infinity=True) | st.booleans() | st.text(max_size=12)
                | st.sampled_from(["newton", "tome", "w4a8", "gptq", "none", "database", "8@-1", "16,12,x"]))
TOML_VALUES = st.recursive(TOML_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=2), max_leaves=6)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _fields(section: str) -> tuple[str, ...]:
    """The real field names of a recipe section ("" = top level), or () for an unknown section."""
    import dataclasses

    from edgecomp.config import BuildConfig

    cls = BuildConfig if not section else next((f.type for f in dataclasses.fields(BuildConfig)
                                                if f.name == section and dataclasses.is_dataclass(f.type)), None)
    if isinstance(cls, str):  # postponed annotations: resolve through the defaults
        cls = type(getattr(BuildConfig(), section))
    return tuple(f.name for f in dataclasses.fields(cls)) if cls else ()


@st.composite
def _key(draw, section: str) -> str:
    real = [f for f in _fields(section) if section or f not in SECTIONS]
    return draw(st.sampled_from(real) if real and draw(st.integers(0, 5)) else st.sampled_from(FIELDS))


@st.composite
def recipe_case(draw):
    lines = [f"{k} = {_toml_value(draw(TOML_VALUES))}" for k in draw(st.lists(_key(""), max_size=2, unique=True))]
    for section in draw(st.lists(st.sampled_from(SECTIONS[:5] * 3 + SECTIONS[5:]), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        for key in draw(st.lists(_key(section), max_size=3, unique=True)):
            lines.append(f"{key} = {_toml_value(draw(TOML_VALUES))}")
    text = "\n".join(lines) + "\n"
    overrides = draw(st.lists(st.builds(lambda s, f, v: f"{s}.{f}={v}", st.sampled_from(SECTIONS),
                                        st.sampled_from(FIELDS), TOML_SCALARS.map(_toml_value) | st.text(max_size=8))
                              | st.text(max_size=12), max_size=2))
    return {"b64": _b64(draw(_damage(text.encode(), intact=8))), "overrides": overrides}


COMMANDS = ("build", "run", "bench", "eval", "inspect", "package", "targets", "zoo", "nope", "--help", "--version")
OPTIONS = ("-t", "--target", "-o", "--out", "-r", "--recipe", "--set", "--prune", "--prune-method", "--merge-r",
           "--merge-method", "--merge-schedule", "--quant", "--quant-method", "--group-size", "--calib", "-i",
           "--input", "--compare", "--device", "--threads", "--rounds", "--per-round", "--warmup", "--json", "--task",
           "--limit", "--no-reference", "--static", "--prune-budget-ms", "--trust-remote-code", "--bogus")
WORDS = st.sampled_from(["{ART}", "{ONNX}", "{GARBAGE}", "{RECIPE}", "{NPY}", "{MISSING}", "{OUT}", "x={NPY}",
                         "x={GARBAGE}", "y={NPY}", "x86", "arm64", "asic-sim", "nope", "0", "-1", "0.5", "2", "1e309",
                         "nan", "none", "onnxruntime", "torch", "rpc://h:1/k", "quantize.scheme=w4a8",
                         "export.opset=99", "seed=-1", "=", "", "-", "--"])


def _own_options(command: str) -> tuple[str, ...]:
    """The option names of ``edgecomp COMMAND`` (read from the click command), or () for an unknown one."""
    from edgecomp import cli

    cmd = cli.cli.commands.get(command)
    return tuple(o for p in (cmd.params if cmd else ()) for o in getattr(p, "opts", ()) if o.startswith("-"))


@st.composite
def cli_case(draw):
    argv = [draw(st.sampled_from(COMMANDS))]
    if argv[0] in ("run", "bench", "eval", "inspect", "package", "build"):
        argv.append(draw(WORDS))
    own = _own_options(argv[0])
    for _ in range(draw(st.integers(0, 4))):
        argv.append(draw(st.sampled_from(own) if own and draw(st.integers(0, 4)) else st.sampled_from(OPTIONS)))
        if draw(st.integers(0, 5)):
            argv.append(draw(WORDS | st.text(max_size=10) | st.integers(-10, 10).map(str)))
    if argv[0] == "bench":  # bound a bench that happens to be valid: one quick round, edgecomp alone
        argv += ["--rounds", "1", "--per-round", "1", "--warmup", "0", "--compare", "none"]
    return {"argv": argv}


NPY_DTYPES = ("float32", "float32", "float64", "float16", "int64", "int8", "bool", "complex64", "<U3", "object",
              "V4", [("a", "<f4"), ("b", "<i4")])


@st.composite
def npy_case(draw):
    name = draw(st.sampled_from(["x", "x", "y", ""]))
    shape = tuple(draw(st.lists(st.sampled_from([1, 4, 1, 4, 0, 3, 2]), max_size=4)))
    kind = draw(st.sampled_from(["array", "array", "array", "header"]))
    if kind == "array":
        dtype = draw(st.sampled_from(NPY_DTYPES))
        dt = np.dtype(dtype)
        arr = np.zeros(shape, dt) if dt.kind != "O" else np.array([{"a": 1}] * math.prod(shape), object)
        if dt.kind == "f":
            with np.errstate(all="ignore"):
                arr = arr + draw(FLOATS)
        if draw(st.booleans()) and arr.ndim > 1:
            arr = np.asfortranarray(arr)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        data = buf.getvalue()
    else:  # a forged header: the shape or the descr lies about the data that follows
        fake = draw(st.sampled_from(["(1, 4)", "(1099511627776, 1099511627776)", "(-1, 4)", "(1, 4, 'a')", "()",
                                     "(100000000000000000000,)", "(268435456, 1)", "(1, 2**2)"]))
        descr = draw(st.sampled_from(["'<f4'", "'|O'", "'<f8'", "'>f4'", "'xyz'", "42"]))
        header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': {fake}, }}".encode()
        header += b" " * (63 - len(header) % 64) + b"\n"
        data = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * draw(st.integers(0, 32))
    return {"b64": _b64(draw(_damage(data))), "name": name}


def params_case_from(valid: bytes):
    """A strategy of damaged copies of ``valid`` (a real params.bin: p0..pN), never ``valid`` itself."""

    @st.composite
    def case(draw):
        data = draw(_damage(valid))
        if data == valid:
            buf = bytearray(valid)
            at = draw(st.integers(0, len(buf) - 8))
            buf[at: at + 8] = draw(st.sampled_from([b"\xff" * 8, b"\0" * 8, (2 ** 62).to_bytes(8, "little"),
                                                    (-5).to_bytes(8, "little", signed=True)]))
            data = bytes(buf)
        return {"b64": _b64(data)}

    return case()


def strategy(target: str, fixtures=None):
    """The strategy for ``target``; ``params`` needs the prepared fixtures directory (for a valid params.bin)."""
    if target == "params":
        from pathlib import Path

        return params_case_from((Path(fixtures) / "tiny" / "params.bin").read_bytes())
    return {"onnx": onnx_case, "recipe": recipe_case, "cli": cli_case, "npy": npy_case}[target]()
