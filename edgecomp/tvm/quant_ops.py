"""Quantised-weight ONNX forms for TVM's Relax importer: ``MatMulNBits``, 4-bit and 8-bit ``DequantizeLinear``,
``GatherBlockQuantized``.

edgecomp's quantize stage emits these forms (opset 17 + ``com.microsoft`` v1); onnxruntime runs them,
TVM 0.27 does not (or only slowly):

* ``com.microsoft.MatMulNBits`` (4-bit Linear weights) has no converter. Ours dequantises into the float
  weight already transposed (``W^T[K, N]``, the layout the GEMM tiler wants), then ``R.matmul`` (+ bias).
  ``rewrite`` first turns every MatMulNBits on initializers into ``edgecomp.MatMulNBitsKN``, whose packed
  bytes, scales and zero points are stored transposed (``[*, N]``; same bytes, same count) so that the
  dequantisation reads and writes contiguous rows (4096x4096 weight, 2 cores: 1.6 ms instead of 52 ms
  gathering across ``N`` rows). MatMulNBits on non-initializers keeps the ONNX layout.
* ``DequantizeLinear`` on an INT4/UINT4 initializer cannot be imported at all: TVM cannot materialise
  4-bit tensors. ``rewrite`` replaces each such node by ``edgecomp.DequantizeInt4``, whose input is a
  UINT8 initializer holding the same packed bytes (two values per byte, low nibble first, row-major over
  the flattened tensor; zero points likewise), so the runtime parameters stay 4-bit.
* 8-bit ``DequantizeLinear`` keeps TVM's converter, but ``rewrite`` stores a dequantised-then-transposed
  Linear weight (``-> Transpose`` or ``-> Gemm(transB=1)``) transposed, and >= 3-D (convolution) weights
  are dequantised as ``[O, I*kh*kw]`` rows (zero-copy views; 4-D loops vectorise along ``kw`` only).

* ``com.microsoft.GatherBlockQuantized`` (int4 embedding tables, ``edgecomp.quant.embedding``) has no
  converter. Ours gathers the packed uint8 rows (and their scales / zero points) with ``R.take`` and
  dequantises only the gathered rows in TE (``dequant_gathered_q4``): the table stays a packed uint8
  parameter. onnxruntime's layout: ``data`` uint8 ``[V, D/2]`` (low nibble = even column), ``scales``
  ``[V, ceil(D/block)]``, ``zero_points`` uint8 ``[V, ceil(ceil(D/block)/2)]`` (default 8); negative
  indices count from the end and out-of-range ones give zero rows, as in onnxruntime.

Weights, scales and zero points arrive as runtime parameters (``relax.Var``) since the importer keeps
initializers as inputs, so the converters only build TE / Relax ops on them and never read values.
The dequantisation runs on every call; its PrimFuncs are injective loops that ``cpu_schedule``'s
``Injective`` rule schedules (parallel outer loops, vectorised inner loop); the matmul/conv that
consumes the float weight stays a separate PrimFunc for the GEMM / conv rules.

Call ``rewrite(model)`` and ``register()`` (idempotent) before ``from_onnx``; ``unsupported(model)`` names
the quantisation nodes whose attributes or inputs the converters do not handle.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DOMAIN = "edgecomp"
DEQUANT_INT4 = "DequantizeInt4"
MATMUL_KN = "MatMulNBitsKN"

_INT4 = {TensorProto.INT4: True, TensorProto.UINT4: False}  # data type -> signed

# ---------------------------------------------------------------------------------------------------
# ONNX side: pre-import rewrites (weights keep their bits and byte counts)


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Pack 4-bit values (any integer array, in range) two per byte, low nibble first: ``[ceil(n/2)]`` uint8.

    This is ONNX's INT4/UINT4 ``raw_data`` layout (row-major over the flattened tensor, odd tail padded 0).
    """
    flat = np.asarray(values).astype(np.int16).ravel() & 0x0F
    if flat.size % 2:
        flat = np.append(flat, 0)
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def _int4_initializers(graph) -> dict[str, TensorProto]:
    return {t.name: t for t in graph.initializer if t.data_type in _INT4}


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _input(node, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


def _rewritable_dq(node, int4: dict[str, TensorProto]) -> bool:
    """A DequantizeLinear whose data is a 4-bit initializer and whose zero point (if any) is one too."""
    if node.op_type != "DequantizeLinear" or _input(node, 0) not in int4:
        return False
    zp = _input(node, 2)
    return not zp or zp in int4


def _rewritable_matmul(node, inits: dict[str, TensorProto]) -> bool:
    """A 4-bit MatMulNBits without g_idx whose B, scales and zero points are initializers."""
    if node.op_type != "MatMulNBits" or int(_attrs(node).get("bits", 4)) != 4 or _input(node, 4):
        return False
    return _input(node, 1) in inits and _input(node, 2) in inits and (not _input(node, 3) or _input(node, 3) in inits)


def _dq_transposes(graph, inits: dict[str, TensorProto]) -> list[tuple[int, int]]:
    """``(DequantizeLinear, consumer)`` node index pairs: an 8-bit 2-D initializer (a quantised ``Linear``
    weight ``[N, K]``) dequantised per tensor or per axis and then only transposed, by a ``Transpose`` or as
    the ``B`` of a ``Gemm(transB=1)`` (what torch exports for ``F.linear``)."""
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    outputs = {o.name for o in graph.output}
    pairs = []
    for i, node in enumerate(graph.node):
        data = inits.get(_input(node, 0))
        if node.op_type != "DequantizeLinear" or data is None or len(data.dims) != 2:
            continue
        if data.data_type not in (TensorProto.INT8, TensorProto.UINT8) or int(_attrs(node).get("block_size", 0)):
            continue
        if _input(node, 1) not in inits or (_input(node, 2) and _input(node, 2) not in inits):
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or node.output[0] in outputs or consumers.get(_input(node, 0)) != [i]:
            continue
        user = graph.node[users[0]]
        attrs = _attrs(user)
        if user.op_type == "Transpose" and list(attrs.get("perm", [1, 0])) == [1, 0]:
            pairs.append((i, users[0]))
        elif user.op_type == "Gemm" and int(attrs.get("transB", 0)) and list(user.input).index(node.output[0]) == 1:
            pairs.append((i, users[0]))
    return pairs


def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return ``model`` with its quantised-weight nodes in the forms the converters lower best.

    * 4-bit ``DequantizeLinear`` -> ``edgecomp.DequantizeInt4``: the INT4/UINT4 initializers become UINT8
      initializers of the same name holding the same packed bytes (``ceil(n/2)``); the node records the
      original ``shape``, ``axis``, ``block_size`` and ``signed``.
    * ``MatMulNBits`` on initializers -> ``edgecomp.MatMulNBitsKN``: the packed bytes, scales and zero
      points are transposed to ``[*, N]`` (same bytes, same count; ``_kn`` initializers) so that
      dequantising into the ``[K, N]`` weight the GEMM wants reads and writes contiguous rows.
    * 8-bit ``DequantizeLinear -> Transpose`` (or ``-> Gemm(transB=1)``) of a 2-D initializer ->
      ``DequantizeLinear`` of the transposed initializer (``_kn``, same int8 bytes) along the other axis
      (and ``transB=0``): an elementwise dequantisation instead of a transposing gather on every call.

    The input model is not modified; it is returned as is when it has nothing to rewrite.
    """
    inits = {t.name: t for t in model.graph.initializer}
    int4 = _int4_initializers(model.graph)
    dq = [i for i, n in enumerate(model.graph.node) if _rewritable_dq(n, int4)]
    mm = [i for i, n in enumerate(model.graph.node) if _rewritable_matmul(n, inits)]
    dq_t = _dq_transposes(model.graph, inits)
    if not dq and not mm and not dq_t:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    packed = _rewrite_int4_dq(graph, dq, int4)
    added: dict[str, TensorProto] = {}
    for i in mm:
        _rewrite_matmul_nbits(graph, i, inits, added)
    for i, j in dq_t:
        _rewrite_dq_transpose(graph, i, j, inits, added)
    dropped = {j for _, j in dq_t if graph.node[j].op_type == "Transpose"}
    nodes = [n for k, n in enumerate(graph.node) if k not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {n for node in graph.node for n in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    keep = [numpy_helper.from_array(pack_int4(numpy_helper.to_array(t)), t.name) if t.name in packed else t
            for t in keep]
    del graph.initializer[:]
    graph.initializer.extend(keep + list(added.values()))
    gone = packed | (set(inits) - used)  # drop stale declarations (4-bit types, removed initializers)
    for infos in (graph.input, graph.value_info):
        kept = [v for v in infos if v.name not in gone]
        del infos[:]
        infos.extend(kept)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out


def _rewrite_dq_transpose(graph, i: int, j: int, inits: dict[str, TensorProto], added: dict[str, TensorProto]):
    """Dequantise the transposed initializer in node ``i``; a Transpose ``j`` is bypassed (its output is now
    written by ``i``; the caller drops it), a Gemm ``j`` gets ``transB=0``."""
    node, user = graph.node[i], graph.node[j]
    name = f"{node.input[0]}_kn"
    added[name] = numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(inits[node.input[0]]).T), name)
    per_tensor = math.prod(inits[node.input[1]].dims) == 1
    axis = int(_attrs(node).get("axis", 1)) % 2
    out = user.output[0] if user.op_type == "Transpose" else node.output[0]
    new = helper.make_node("DequantizeLinear", [name, *node.input[1:]], [out], name=node.name, domain=node.domain,
                           **({} if per_tensor else {"axis": 1 - axis}))
    graph.node[i].CopyFrom(new)
    if user.op_type == "Gemm":
        for a in user.attribute:
            if a.name == "transB":
                a.i = 0


def _rewrite_int4_dq(graph, nodes: list[int], int4: dict[str, TensorProto]) -> set[str]:
    """Replace the 4-bit DequantizeLinear ``nodes`` in place; returns the initializer names to pack."""
    packed: set[str] = set()
    for i in nodes:
        node = graph.node[i]
        data = int4[node.input[0]]
        attrs = _attrs(node)
        ndim = len(data.dims)
        axis = int(attrs.get("axis", 1))
        if ndim <= 1 and axis == 1:
            axis = 0  # the default axis 1 of a 0-d/1-d tensor: per tensor or along its only axis
        new = helper.make_node(DEQUANT_INT4, list(node.input), list(node.output), name=node.name, domain=DOMAIN,
                               shape=[int(d) for d in data.dims], axis=axis % max(ndim, 1),
                               block_size=int(attrs.get("block_size", 0)), signed=int(_INT4[data.data_type]))
        graph.node[i].CopyFrom(new)
        packed.update(n for n in (_input(node, 0), _input(node, 2)) if n)
    return packed


def _rewrite_matmul_nbits(graph, i: int, inits: dict[str, TensorProto], added: dict[str, TensorProto]) -> None:
    """Replace MatMulNBits node ``i`` by ``edgecomp.MatMulNBitsKN`` on ``[*, N]``-transposed initializers.

    ``B [N, n_blocks, block/2] -> [n_blocks*block/2, N]`` (byte ``j`` of column ``n`` holds ``k = 2j, 2j+1``),
    scales ``-> [n_blocks, N]``, packed zero points ``[N*ceil(n_blocks/2)] -> [ceil(n_blocks/2), N]``
    (float zero points ``-> [n_blocks, N]``).
    """
    node = graph.node[i]
    attrs = _attrs(node)
    K, N, block = int(attrs["K"]), int(attrs["N"]), int(attrs["block_size"])
    n_blocks = -(-K // block)

    def kn(name: str, rows: int) -> str:
        new = f"{name}_kn"
        if new not in added:
            arr = numpy_helper.to_array(inits[name])
            added[new] = numpy_helper.from_array(np.ascontiguousarray(arr.reshape(N, rows).T), new)
        return new

    ins = [node.input[0], kn(node.input[1], n_blocks * block // 2), kn(node.input[2], n_blocks)]
    zp = _input(node, 3)
    if zp:
        zp_rows = -(-n_blocks // 2) if inits[zp].data_type == TensorProto.UINT8 else n_blocks
        ins.append(kn(zp, zp_rows))
    else:
        ins.append("")
    ins.append(_input(node, 5))
    while ins and not ins[-1]:
        ins.pop()
    new = helper.make_node(MATMUL_KN, ins, list(node.output), name=node.name, domain=DOMAIN, K=K, N=N,
                           block_size=block)
    graph.node[i].CopyFrom(new)


def unsupported(model: onnx.ModelProto) -> tuple[int, object, str] | None:
    """The first ``(index, node, reason)`` among the quantisation nodes the converters cannot lower.

    Covers MatMulNBits other than 4-bit without ``g_idx``, GatherBlockQuantized other than 4-bit rows of a
    packed 2-D uint8 initializer gathered along axis 0 (``_gather_q4_unsupported``), 4-bit tensors other than
    the data and zero point initializers of ``DequantizeLinear``, and blocked ``DequantizeLinear`` on 8-bit data.
    """
    int4 = _int4_initializers(model.graph)
    inits = {t.name: t for t in model.graph.initializer}
    for i, node in enumerate(model.graph.node):
        attrs = _attrs(node)
        if node.op_type == "GatherBlockQuantized":
            reason = _gather_q4_unsupported(node, attrs, inits)
            if reason:
                return i, node, reason
        elif node.op_type == "MatMulNBits":
            if int(attrs.get("bits", 4)) != 4:
                return i, node, f"{attrs['bits']}-bit weights (only bits=4)"
            if _input(node, 4):
                return i, node, "a g_idx (act-order) input"
            if not {"K", "N", "block_size"} <= set(attrs):
                return i, node, "missing K/N/block_size attributes"
        elif node.op_type == "DequantizeLinear" and _input(node, 0) in int4:
            if not _rewritable_dq(node, int4):
                return i, node, "4-bit data with a zero point that is no 4-bit initializer"
        elif node.op_type == "DequantizeLinear" and int(attrs.get("block_size", 0)):
            return i, node, "blocked dequantisation of 8-bit data"
        elif any(n in int4 for n in node.input):
            return i, node, "a 4-bit tensor input (TVM cannot hold int4 tensors)"
    return None


def _gather_q4_unsupported(node, attrs: dict, inits: dict[str, TensorProto]) -> str | None:
    """Why a GatherBlockQuantized node cannot be lowered, or None: the converter takes 4-bit codes packed
    in a 2-D uint8 initializer ``[V, D/2]``, gathered along axis 0 and quantised in blocks along axis 1 (the
    layout edgecomp exports and onnxruntime's only one for uint8 data), with 2-D scales / zero points."""
    data = inits.get(_input(node, 0))
    if data is not None and data.data_type in _INT4:
        return "int4/uint4 data (only 4-bit codes packed in uint8)"
    if data is None or data.data_type != TensorProto.UINT8 or len(data.dims) != 2:
        return "data that is no 2-D uint8 initializer (packed int4 rows [V, D/2])"
    bits = int(attrs.get("bits", 4))
    if bits not in (4, 8):
        return f"{bits}-bit data (only bits=4 or 8)"
    if int(attrs.get("gather_axis", 0)) % 2 != 0 or int(attrs.get("quantize_axis", 1)) % 2 != 1:
        return (f"gather_axis={attrs.get('gather_axis', 0)}, quantize_axis={attrs.get('quantize_axis', 1)} "
                "(only gather_axis=0, quantize_axis=1)")
    block = int(attrs.get("block_size", 128))
    if block < 16 or block & (block - 1):
        return f"block_size={block} (a power of two >= 16)"
    for k in (2, 3):
        t = inits.get(_input(node, k))
        if t is not None and len(t.dims) != 2:
            return f"{'scales' if k == 2 else 'zero_points'} of rank {len(t.dims)} (must be 2-D like the data)"
    zp = inits.get(_input(node, 3))
    if zp is not None and zp.data_type != TensorProto.UINT8:
        return "zero points that are no packed uint8"
    if zp is not None and bits == 8:
        return "8-bit data with zero points (only the default 128)"
    return None


# ---------------------------------------------------------------------------------------------------
# TVM side: converters (TE on relax Vars)


def _nibble(byte, index):
    """The 4-bit value ``index`` (even = low nibble) of a packed byte, as int32 in [0, 15].

    A select between two constant shifts: a shift by ``index % 2 * 4`` would take the index dtype (int64
    under Relax) and turn every lane into int64 arithmetic (6x slower dequantisation).
    """
    from tvm import tirx

    b = byte.astype("int32")
    low = tirx.bitwise_and(b, tirx.const(15, "int32"))
    high = tirx.shift_right(b, tirx.const(4, "int32"))
    return tirx.Select(tirx.floormod(index, 2) == 0, low, high)


def _sign_extend(v):
    """int32 nibble [0, 15] -> two's complement [-8, 7]."""
    from tvm import tirx

    return v - tirx.shift_left(tirx.shift_right(v, tirx.const(3, "int32")), tirx.const(4, "int32"))


def dequant_q4_kn(b, scales, zero_points, K: int, N: int, block: int, transposed: bool, dtype: str = "float32"):
    """TE: MatMulNBits weights -> ``W^T[K, N]`` (``dtype``), the ``B`` operand of ``A @ W^T``.

    ONNX layout (``transposed=False``): ``b`` uint8 ``[N, n_blocks, block/2]`` (or ``[N, n_blocks*block/2]``),
    ``scales`` ``[N*n_blocks]`` or ``[N, n_blocks]``, ``zero_points`` None (zero point 8), uint8
    ``[N*ceil(n_blocks/2)]`` (two blocks per byte, low nibble first) or float ``[N*n_blocks]``/``[N, n_blocks]``.
    ``transposed=True`` (``MatMulNBitsKN``): ``b [n_blocks*block/2, N]``, ``scales [n_blocks, N]``, uint8
    ``zero_points [ceil(n_blocks/2), N]`` or float ``[n_blocks, N]`` (every read contiguous along ``n``).
    ``W^T[k, n] = (q[n, k] - zp[n, k // block]) * scale[n, k // block]``.
    """
    from tvm import te, tirx

    n_blocks = -(-K // block)
    zp_bytes = -(-n_blocks // 2)

    def at(t, n, row, rows):  # element (n, row) of a per-column table of ``rows`` entries
        if transposed:
            return t[row, n]
        return t[n, row] if len(t.shape) == 2 else t[n * rows + row]

    def compute(k, n):
        blk = tirx.floordiv(k, block)
        if transposed or len(b.shape) == 2:
            byte = at(b, n, tirx.floordiv(k, 2), n_blocks * block // 2)
        else:
            byte = b[n, blk, tirx.floordiv(tirx.floormod(k, block), 2)]
        q = _nibble(byte, k)
        scale = at(scales, n, blk, n_blocks).astype("float32")
        if zero_points is None:
            w = (q - 8).astype("float32") * scale
        elif "int" in str(zero_points.dtype):
            w = (q - _nibble(at(zero_points, n, tirx.floordiv(blk, 2), zp_bytes), blk)).astype("float32") * scale
        else:
            w = (q.astype("float32") - at(zero_points, n, blk, n_blocks).astype("float32")) * scale
        return w if dtype == "float32" else w.astype(dtype)

    return te.compute((K, N), compute, name="dequantize_q4")


def dequant_gathered_q4(rows, scales, zero_points, ids, V: int, D: int, block: int, bits: int = 4):
    """TE: gathered GatherBlockQuantized rows -> ``out[*S, D]`` in the scales' dtype.

    ``rows`` uint8 ``[*S, D/2]`` (packed codes, low nibble = even column; ``bits=8``: ``[*S, D]``, one code per
    byte), ``scales`` ``[*S, ceil(D/block)]``, ``zero_points`` None (zero point ``2^(bits-1)``) or, 4-bit only,
    uint8 ``[*S, ceil(ceil(D/block)/2)]`` (two blocks per byte, low nibble first): the table rows taken at
    ``ids [*S]``. ``out = (q - zp) * scale``, and 0 where ``ids`` is outside ``[-V, V)`` (onnxruntime's
    GatherBlockQuantized gives zero rows there; the take wrapped such indices).
    """
    from tvm import te, tirx

    lead = tuple(rows.shape[:-1])
    dtype = str(scales.dtype)

    def compute(*idx):
        s, d = idx[:-1], idx[-1]
        blk = tirx.floordiv(d, block)
        if bits == 8:
            q = rows[(*s, d)].astype("int32")
        else:
            q = _nibble(rows[(*s, tirx.floordiv(d, 2))], d)
        if zero_points is None:
            q = q - tirx.const(2 ** (bits - 1), "int32")
        else:
            q = q - _nibble(zero_points[(*s, tirx.floordiv(blk, 2))], blk)
        w = q.astype("float32") * scales[(*s, blk)].astype("float32")
        w = w if dtype == "float32" else w.astype(dtype)
        i = ids(*s)
        inside = tirx.all(i >= tirx.const(-V, ids.dtype), i < tirx.const(V, ids.dtype))
        return tirx.Select(inside, w, tirx.const(0, dtype))

    return te.compute((*lead, D), compute, name="gather_dequantize_q4")


def rows_view(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a weight of ``shape`` is dequantised in (row-major, the same elements; viewed back after).

    Rows of ``shape[0]`` (output channels), split into vectors of 8 or 4 when the row length is no
    multiple of 16, so that the injective schedule vectorises the innermost loop; 4-D convolution weights
    computed as such would vectorise only along the kernel width (3 lanes).
    """
    if len(shape) < 2:
        return tuple(shape)
    rows, length = shape[0], math.prod(shape[1:])
    group = next((g for g in (8, 4) if length % 16 and length % g == 0 and length > g), 0)
    return (rows, length // group, group) if group else (rows, length)


def dequant_int4(packed, scale, zero_point, shape: tuple[int, ...], axis: int, block_size: int, signed: bool):
    """TE: packed 4-bit tensor of ``shape`` -> its ``rows_view(shape)`` view in the scale's dtype.

    ONNX DequantizeLinear semantics: ``(q - zero_point) * scale``. ``packed``: uint8 ``[ceil(prod(shape)/2)]``
    (ONNX's own bytes); ``scale``: scalar/``[1]`` (per tensor), ``[shape[axis]]`` (per axis) or ``shape`` with
    ``shape[axis]`` divided by ``block_size`` (blocked); ``zero_point``: None or packed uint8 holding a 4-bit
    tensor of ``scale``'s shape.
    """
    from tvm import te, tirx

    strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
    view = rows_view(shape)
    v_strides = [math.prod(view[d + 1 :]) for d in range(len(view))]
    s_shape = [int(d) for d in scale.shape]
    per_tensor = math.prod(s_shape) == 1
    blocked = block_size > 0 and not per_tensor
    s_strides = [math.prod(s_shape[d + 1 :]) for d in range(len(s_shape))]

    def value(t, flat):
        v = _nibble(t[tirx.floordiv(flat, 2)], flat)
        return _sign_extend(v) if signed else v

    def index(flat, d, vidx):  # coordinate d of the element at row-major position ``flat``
        if d == 0 and len(view) > 1:
            return vidx[0]
        return tirx.floormod(tirx.floordiv(flat, strides[d]), shape[d])

    def compute(*vidx):
        flat = sum((i * s for i, s in zip(vidx, v_strides, strict=True)), tirx.const(0, "int32"))
        if per_tensor:
            s_idx = [0] * len(s_shape)
        elif blocked:
            s_idx = [index(flat, d, vidx) for d in range(len(shape))]
            s_idx[axis] = tirx.floordiv(s_idx[axis], block_size)
        else:
            s_idx = [index(flat, axis, vidx)]
        q = value(packed, flat)
        if zero_point is not None:
            s_flat = sum((i * s for i, s in zip(s_idx, s_strides, strict=True)), tirx.const(0, "int32"))
            q = q - value(zero_point, s_flat)
        w = q.astype("float32") * scale[tuple(s_idx)].astype("float32")
        return w if str(scale.dtype) == "float32" else w.astype(scale.dtype)

    return te.compute(view, compute, name="dequantize_int4")


def _converters() -> dict:
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend

    def matmul_q4(bb, inputs, attr, transposed: bool):
        a, b, scales, zp = inputs[0], inputs[1], inputs[2], inputs[3]
        bias = inputs[5] if not transposed else inputs[4]
        K, N, block = int(attr["K"]), int(attr["N"]), int(attr["block_size"])
        dtype = str(a.ty.dtype)

        def te_fn(b_, s_, z_=None):
            return dequant_q4_kn(b_, s_, z_, K, N, block, transposed, dtype)

        w_kn = bb.emit_te(te_fn, *[t for t in (b, scales, zp) if t is not None], primfunc_name_hint="dequantize_q4")
        out = relax.op.matmul(a, w_kn)
        return relax.op.add(out, bias) if bias is not None else out

    class MatMulNBits(onnx_frontend.OnnxOpConverter):
        """com.microsoft.MatMulNBits (4-bit, no g_idx): ``A[..., K] @ dequant(B)^T (+ bias)``.

        Inputs ``A, B, scales, [zero_points], [g_idx], [bias]``; any of them may be a runtime parameter.
        """

        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            return matmul_q4(bb, inputs, attr, transposed=False)

    class MatMulNBitsKN(onnx_frontend.OnnxOpConverter):
        """edgecomp.MatMulNBitsKN (see ``rewrite``): MatMulNBits on ``[*, N]``-transposed weight tables.

        Inputs ``A, B_kn, scales_kn, [zero_points_kn], [bias]``; attributes ``K, N, block_size``.
        """

        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            return matmul_q4(bb, inputs, attr, transposed=True)

    class GatherBlockQuantized(onnx_frontend.OnnxOpConverter):
        """com.microsoft.GatherBlockQuantized (4-bit codes packed in uint8 ``[V, D/2]`` or 8-bit ``[V, D]``,
        gather_axis 0, quantize_axis 1; see ``_gather_q4_unsupported``): ``R.take`` of the packed rows, scales and
        zero points at ``indices`` (wrapping, so no index reads outside the table), then ``dequant_gathered_q4``.

        Inputs ``data, indices, scales, [zero_points]``; attributes ``bits, block_size, gather_axis,
        quantize_axis``. The table is never widened: only the gathered rows are dequantised.
        """

        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            data, ids, scales, zp = inputs[0], inputs[1], inputs[2], inputs[3]
            shape = _static_shape(data)
            if shape is None or len(shape) != 2:
                raise ValueError(f"GatherBlockQuantized needs 2-D data of static shape, got {data.ty}")
            bits = int(attr.get("bits", 4))
            V, D = shape[0], shape[1] * 8 // bits
            block = int(attr.get("block_size", 128))

            def take(t):
                return bb.emit(relax.op.take(t, ids, axis=0, mode="wrap"))

            args = [take(data), take(scales)] + ([] if zp is None else [take(zp)])

            def te_fn(r_, s_, *rest):
                z_, i_ = (None, rest[0]) if len(rest) == 1 else rest
                return dequant_gathered_q4(r_, s_, z_, i_, V, D, block, bits)

            return bb.emit_te(te_fn, *args, ids, primfunc_name_hint="gather_dequantize_q4")

    class DequantizeInt4(onnx_frontend.OnnxOpConverter):
        """edgecomp.DequantizeInt4 (see ``rewrite``): packed 4-bit data -> tensor of the scale's dtype.

        Inputs ``packed uint8, scale, [packed zero point]``; attributes ``shape, axis, block_size, signed``.
        """

        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            packed, scale, zp = inputs[0], inputs[1], inputs[2]
            shape = tuple(int(d) for d in attr["shape"])
            axis, block, signed = int(attr.get("axis", 0)), int(attr.get("block_size", 0)), bool(attr["signed"])

            def te_fn(p_, s_, z_=None):
                return dequant_int4(p_, s_, z_, shape, axis, block, signed)

            args = [t for t in (packed, scale, zp) if t is not None]
            rows = bb.emit_te(te_fn, *args, primfunc_name_hint="dequantize_int4")
            if rows_view(shape) == shape:
                return rows
            # a zero-copy view: a reshape would be fused back into the dequantisation loops
            return relax.op.memory.view(rows, shape=shape)

    class DequantizeLinear(onnx_frontend.DequantizeLinear):
        """TVM's DequantizeLinear, computed on a ``rows_view`` of ``>= 3``-D weights (per tensor or along axis 0).

        A convolution weight ``[O, I, kh, kw]`` dequantised as such vectorises along ``kw`` only; viewed as
        ``[O, I*kh*kw]`` (zero-copy ``R.memory.view`` both ways) it runs 8x faster. Activations keep the
        stock lowering (a view would keep a QuantizeLinear -> DequantizeLinear pair from fusing).
        """

        @classmethod
        def get_converter(cls, opset):
            impl = super().get_converter(opset)

            def convert(bb, inputs, attr, params):
                x, scale = inputs[0], inputs[1]
                weights = [v for v, _ in params[1].values()] if len(params) > 1 else []
                if not isinstance(x, tvm.ir.Constant) and not any(x.same_as(v) for v in weights):
                    return impl(bb, inputs, attr, params)
                shape = _static_shape(x)
                s_shape = _static_shape(scale)
                if shape is None or s_shape is None or len(shape) < 3 or int(attr.get("block_size", 0)):
                    return impl(bb, inputs, attr, params)
                per_tensor = math.prod(s_shape) == 1
                if not per_tensor and int(attr.get("axis", 1)) % len(shape) != 0:
                    return impl(bb, inputs, attr, params)
                view = rows_view(shape)
                rows = list(inputs)
                rows[0] = bb.emit(relax.op.memory.view(x, shape=view))
                out = bb.emit(impl(bb, rows, {**attr, "axis": 0}, params))
                return relax.op.memory.view(out, shape=shape)

            return convert

    return {"MatMulNBits": MatMulNBits, MATMUL_KN: MatMulNBitsKN, DEQUANT_INT4: DequantizeInt4,
            "DequantizeLinear": DequantizeLinear, "GatherBlockQuantized": GatherBlockQuantized}


def _static_shape(expr) -> tuple[int, ...] | None:
    """The static shape of a relax tensor expression, or None."""
    from tvm import tirx

    shape = getattr(expr.ty, "shape", None)
    values = getattr(shape, "values", None)
    if values is None or not all(isinstance(v, tirx.IntImm) for v in values):
        return None
    return tuple(int(v) for v in values)


def register() -> None:
    """Add the converters to TVM's ONNX converter map (``from_onnx`` looks it up at call time). Idempotent."""
    from tvm.relax.frontend.onnx import onnx_frontend

    if getattr(onnx_frontend._get_convert_map, "_edgecomp", False):
        return
    original = onnx_frontend._get_convert_map
    extra = _converters()

    def convert_map():
        return {**original(), **extra}

    convert_map._edgecomp = True
    onnx_frontend._get_convert_map = convert_map
