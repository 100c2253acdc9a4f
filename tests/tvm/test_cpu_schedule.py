"""Hand CPU schedules (edgecomp.tvm.cpu_schedule): each rule on a small Relax graph, compiled and checked
against numpy, plus the vectorisable exp/erf lowerings the module registers.

Shapes are chosen to hit the awkward cases: 197 tokens and 49/196 pixels (not a multiple of the vector
width: padded GEMM tiles, scalar row tails), stride-2 and depthwise convolutions with padding,
in NCHW and channels-last (NHWC) layouts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm import relax  # noqa: E402

from edgecomp.tvm import cpu_schedule  # noqa: E402

RTOL, ATOL = 1e-5, 1e-5


def _target():
    cpu = tvm.get_global_func("target.llvm_get_system_cpu")()
    return tvm.target.Target({"kind": "llvm", "mcpu": cpu, "num-cores": 2})


def _build(bb_fn, inputs: dict[str, np.ndarray]):
    """Build ``main`` from ``bb_fn(bb, vars)``, run the zero pipeline + cpu_schedule, compile, run."""
    bb = relax.BlockBuilder()
    params = [relax.Var(name, relax.TensorType(arr.shape, str(arr.dtype))) for name, arr in inputs.items()]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(bb_fn(bb, *params))
        bb.emit_func_output(out)
    mod = bb.get()
    tgt = _target()
    with tgt:
        mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                        relax.transform.CanonicalizeBindings(),
                                        relax.get_pipeline("zero")])(mod)
    mod, used = cpu_schedule.apply(mod, tgt)
    ex = tvm.compile(mod, target=tgt)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    res = vm["main"](*[tvm.runtime.tensor(a) for a in inputs.values()])
    return res.numpy(), used


def _rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _erf(x):
    return np.vectorize(math.erf)(x.astype(np.float64))


def _assert_rules(used: dict[str, str], expected: str):
    assert "none" not in used.values(), used
    assert expected in used.values(), used


# ------------------------------------------------------------------------------------------- matmul


def test_dense_bias_gelu():
    rng = np.random.default_rng(0)
    x, w, b = _rand(rng, 1, 37, 96), _rand(rng, 96, 200, scale=0.1), _rand(rng, 200)

    def graph(bb, x, w, b):
        return relax.op.nn.gelu(relax.op.add(relax.op.matmul(x, w), b))

    out, used = _build(graph, {"x": x, "w": w, "b": b})
    _assert_rules(used, "matmul")
    h = x.astype(np.float64) @ w + b
    ref = 0.5 * h * (1 + _erf(h / math.sqrt(2)))
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


def test_batched_matmul_n197():
    """Attention scores q @ k^T with 197 tokens: both I and J are padded to the register tile."""
    rng = np.random.default_rng(1)
    q, kt = _rand(rng, 1, 3, 197, 32), _rand(rng, 1, 3, 32, 197)

    out, used = _build(lambda bb, q, kt: relax.op.matmul(q, kt), {"q": q, "kt": kt})
    _assert_rules(used, "matmul")
    np.testing.assert_allclose(out, q.astype(np.float64) @ kt, rtol=RTOL, atol=1e-4)


@pytest.mark.parametrize(("m", "n"), [(1, 1000), (3, 100)])
def test_few_rows_matmul(m, n):
    """GEMV-like products: N = 1000 uses half-width vectors, N = 100 a predicated last tile (no B copy)."""
    rng = np.random.default_rng(n)
    x, w, b = _rand(rng, m, 256), _rand(rng, 256, n, scale=0.1), _rand(rng, n)

    out, used = _build(lambda bb, x, w, b: relax.op.add(relax.op.matmul(x, w), b), {"x": x, "w": w, "b": b})
    _assert_rules(used, "matmul")
    np.testing.assert_allclose(out, x.astype(np.float64) @ w + b, rtol=RTOL, atol=1e-4)


# -------------------------------------------------------------------------------------------- conv2d


def _conv_ref(x, w, b, stride, pad, groups=1):
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, f, oh, ow))
    fg = f // groups
    for g in range(groups):
        xs = x[:, g * cg:(g + 1) * cg]
        for r in range(kh):
            for s in range(kw):
                patch = xs[:, :, r:r + stride * oh:stride, s:s + stride * ow:stride]  # n, cg, oh, ow
                out[:, g * fg:(g + 1) * fg] += np.einsum("ncyx,fc->nfyx", patch, w[g * fg:(g + 1) * fg, :, r, s])
    return out + b.reshape(1, -1, 1, 1)


def _conv_graph(stride, pad, groups, clip):
    def graph(bb, x, w, b):
        y = relax.op.nn.conv2d(x, w, strides=stride, padding=pad, groups=groups)
        y = relax.op.add(y, relax.op.reshape(b, (1, -1, 1, 1)))
        return relax.op.clip(y, 0.0, 6.0) if clip else y

    return graph


@pytest.mark.parametrize(("cin", "cout", "k", "stride", "pad", "hw"), [
    (3, 32, 3, 2, 1, 30),  # stem-like 3x3 stride 2 (im2col + GEMM)
    (24, 40, 1, 1, 0, 14),  # pointwise, 196 pixels: padded GEMM columns
    (16, 48, 1, 1, 0, 16),  # pointwise, 256 pixels: direct GEMM on the input
    (3, 64, 8, 8, 0, 32),  # patch embedding (stride = kernel)
])
def test_conv2d(cin, cout, k, stride, pad, hw):
    rng = np.random.default_rng(cin * cout + k)
    x, w, b = _rand(rng, 1, cin, hw, hw), _rand(rng, cout, cin, k, k, scale=0.2), _rand(rng, cout)
    out, used = _build(_conv_graph(stride, pad, 1, clip=True), {"x": x, "w": w, "b": b})
    _assert_rules(used, "conv2d")
    ref = np.clip(_conv_ref(x, w, b, stride, pad), 0, 6)
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("c", "k", "stride", "hw"), [
    (32, 3, 1, 32),  # vectorised along output columns
    (32, 5, 2, 28),  # stride 2: de-interleaved padded input
    (48, 3, 1, 7),  # 7x7 map: vectorised across channels
    (32, 5, 1, 28),  # 28 columns: vectorised across channels
])
def test_depthwise_conv2d(c, k, stride, hw):
    rng = np.random.default_rng(c + k + hw)
    x, w, b = _rand(rng, 1, c, hw, hw), _rand(rng, c, 1, k, k, scale=0.3), _rand(rng, c)
    pad = k // 2
    out, used = _build(_conv_graph(stride, pad, c, clip=True), {"x": x, "w": w, "b": b})
    _assert_rules(used, "conv2d")
    ref = np.clip(_conv_ref(x, w, b, stride, pad, groups=c), 0, 6)
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("groups", "stride"), [(1, 1), (4, 2)])
def test_conv2d_without_epilogue_and_grouped(groups, stride):
    """A bare conv (writes the function output directly) and a grouped, non-depthwise conv."""
    rng = np.random.default_rng(groups)
    x, w = _rand(rng, 1, 16, 20, 20), _rand(rng, 32, 16 // groups, 3, 3, scale=0.2)

    def graph(bb, x, w):
        return relax.op.nn.conv2d(x, w, strides=stride, padding=1, groups=groups)

    out, used = _build(graph, {"x": x, "w": w})
    _assert_rules(used, "conv2d")
    ref = _conv_ref(x, w, np.zeros(32, np.float32), stride, 1, groups=groups)
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("cin", "cout", "hw", "pad"), [
    (16, 96, 28, (0, 1, 0, 1)),  # a quantized EfficientNet's expand conv before a stride-2 depthwise
    (8, 40, 14, (0, 2, 0, 2)),
])
def test_conv2d_with_trailing_pad(cin, cout, hw, pad):
    """The next layer's zero padding fused after the epilogue (a quantized conv's padded input also feeds
    its scale's reduction): the conv keeps its rule and the pad becomes a stage of its own. (It fell to the
    injective rule before: 6.5 ms for EfficientNet's 112x112 expand conv instead of 0.42 ms.)"""
    rng = np.random.default_rng(cin + cout)
    x, w, b = _rand(rng, 1, cin, hw, hw), _rand(rng, cout, cin, 1, 1, scale=0.2), _rand(rng, cout)

    def graph(bb, x, w, b):
        y = _conv_graph(1, 0, 1, clip=True)(bb, x, w, b)
        return relax.op.nn.pad(y, [0, 0, 0, 0, *pad])

    out, used = _build(graph, {"x": x, "w": w, "b": b})
    assert [rule for name, rule in used.items() if "conv2d" in name and "pad" in name] == ["conv2d"], used
    ref = np.pad(np.clip(_conv_ref(x, w, b, 1, 0), 0, 6), ((0, 0), (0, 0), pad[:2], pad[2:]))
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


def test_conv2d_transpose_gets_the_conv_rule():
    """A transposed convolution (depth-vit's decoder) legalizes to a conv over a dilated, padded input with a
    flipped-weight producer: the producers are inlined before the epilogue is found, and it must still get
    the conv2d rule, not fall to the generic reduction schedule."""
    rng = np.random.default_rng(5)
    x, w, b = _rand(rng, 1, 8, 6, 6), _rand(rng, 8, 16, 4, 4, scale=0.2), _rand(rng, 16)

    def graph(bb, x, w, b):
        y = relax.op.nn.conv2d_transpose(x, w, strides=4)
        return relax.op.add(y, relax.op.reshape(b, (1, -1, 1, 1)))

    out, used = _build(graph, {"x": x, "w": w, "b": b})
    _assert_rules(used, "conv2d")
    ref = np.zeros((1, 16, 24, 24))
    for r in range(4):
        for t in range(4):  # out[f, 4y + r, 4x + t] += x[c, y, x] w[c, f, r, t]
            ref[0, :, r::4, t::4] += np.einsum("cyx,cf->fyx", x[0].astype(np.float64), w[:, :, r, t])
    np.testing.assert_allclose(out, ref + b.reshape(1, -1, 1, 1), rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------- channels-last conv2d (conv_nhwc)
# NHWC / HWIO graphs with EfficientNet-Lite0's epilogues: 1x1 convolutions as GEMMs over 49 / 196 / 256
# pixels (rows that are and are not a multiple of the register tile, output channels that are not a
# multiple of the vector width), the stem (3 input channels, 3x3, stride 2: a row-by-row GEMM through the
# padding predicate), a 3x3 convolution with a long reduction (im2col), depthwise 3x3 / 5x5 with stride 1
# and 2, a bare conv and a grouped one.


def _nchw_ref(x_nhwc, w_hwio, b, stride, pad, groups=1):
    x = x_nhwc.transpose(0, 3, 1, 2)
    w = w_hwio.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    return _conv_ref(x, w, b, stride, pad, groups).transpose(0, 2, 3, 1)


def _nhwc_graph(stride, pad, groups, clip, residual=False):
    def graph(bb, x, w, b, *rest):
        y = relax.op.nn.conv2d(x, w, strides=stride, padding=pad, groups=groups, data_layout="NHWC",
                               kernel_layout="HWIO")
        y = relax.op.add(y, relax.op.reshape(b, (1, 1, 1, -1)))
        if clip:
            y = relax.op.minimum(relax.op.maximum(y, relax.const(0.0, "float32")), relax.const(6.0, "float32"))
        return relax.op.add(y, rest[0]) if residual else y

    return graph


def _nhwc_rules(used):
    assert "none" not in used.values(), used
    assert "conv2d_nhwc" in used.values(), used


@pytest.mark.parametrize(("cin", "cout", "hw"), [
    (192, 1152, 7),  # 49 pixels: 7 rows x 3 vectors, packed weight panels
    (112, 40, 14),  # 196 pixels, 40 output channels: padded columns
    (16, 24, 16),  # 256 pixels, 24 output channels
])
def test_nhwc_pointwise(cin, cout, hw):
    rng = np.random.default_rng(cin + cout)
    x, w, b = _rand(rng, 1, hw, hw, cin), _rand(rng, 1, 1, cin, cout, scale=0.1), _rand(rng, cout)
    out, used = _build(_nhwc_graph(1, 0, 1, clip=True), {"x": x, "w": w, "b": b})
    _nhwc_rules(used)
    np.testing.assert_allclose(out, np.clip(_nchw_ref(x, w, b, 1, 0), 0, 6), rtol=RTOL, atol=ATOL)


def test_nhwc_pointwise_with_residual():
    rng = np.random.default_rng(7)
    x, w, b = _rand(rng, 1, 14, 14, 48), _rand(rng, 1, 1, 48, 32, scale=0.1), _rand(rng, 32)
    r = _rand(rng, 1, 14, 14, 32)
    out, used = _build(_nhwc_graph(1, 0, 1, clip=False, residual=True), {"x": x, "w": w, "b": b, "r": r})
    _nhwc_rules(used)
    np.testing.assert_allclose(out, _nchw_ref(x, w, b, 1, 0) + r, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("cin", "cout", "k", "stride", "pad", "hw"), [
    (3, 32, 3, 2, 1, 30),  # stem: short reduction, row-by-row GEMM reading through the padding
    (16, 32, 3, 1, 1, 12),  # 144-long reduction: im2col + GEMM
])
def test_nhwc_regular(cin, cout, k, stride, pad, hw):
    rng = np.random.default_rng(cin * k)
    x, w, b = _rand(rng, 1, hw, hw, cin), _rand(rng, k, k, cin, cout, scale=0.2), _rand(rng, cout)
    out, used = _build(_nhwc_graph(stride, pad, 1, clip=True), {"x": x, "w": w, "b": b})
    _nhwc_rules(used)
    np.testing.assert_allclose(out, np.clip(_nchw_ref(x, w, b, stride, pad), 0, 6), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(("c", "k", "stride", "hw"), [
    (32, 3, 1, 28),
    (96, 3, 2, 28),
    (144, 5, 2, 14),
    (48, 5, 1, 7),
])
def test_nhwc_depthwise(c, k, stride, hw):
    rng = np.random.default_rng(c + k)
    x, w, b = _rand(rng, 1, hw, hw, c), _rand(rng, k, k, 1, c, scale=0.3), _rand(rng, c)
    pad = k // 2
    out, used = _build(_nhwc_graph(stride, pad, c, clip=True), {"x": x, "w": w, "b": b})
    _nhwc_rules(used)
    ref = np.clip(_nchw_ref(x, w, b, stride, pad, groups=c), 0, 6)
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("groups", [1, 4])
def test_nhwc_bare_and_grouped(groups):
    """A conv that writes the function output itself, and a grouped (not depthwise) one."""
    rng = np.random.default_rng(groups)
    x, w = _rand(rng, 1, 10, 10, 16), _rand(rng, 3, 3, 16 // groups, 32, scale=0.2)

    def graph(bb, x, w):
        return relax.op.nn.conv2d(x, w, padding=1, groups=groups, data_layout="NHWC", kernel_layout="HWIO")

    out, used = _build(graph, {"x": x, "w": w})
    assert "none" not in used.values(), used
    np.testing.assert_allclose(out, _nchw_ref(x, w, np.zeros(32, np.float32), 1, 1, groups), rtol=RTOL, atol=ATOL)


# -------------------------------------------------------------------------------- rows and injective


@pytest.mark.parametrize("n", [197, 256])
def test_softmax_rows(n):
    rng = np.random.default_rng(n)
    # rows at very different scales: a row that read past its end would get a wrong maximum
    x = _rand(rng, 2, 5, n, n) + (np.arange(n, dtype=np.float32) * 3.0)[None, None, :, None]
    out, used = _build(lambda bb, x: relax.op.nn.softmax(x, axis=-1), {"x": x})
    _assert_rules(used, "rows")
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(-1, keepdims=True), rtol=RTOL, atol=1e-6)


def test_layer_norm_rows():
    rng = np.random.default_rng(3)
    x, g, b = _rand(rng, 1, 197, 384), _rand(rng, 384), _rand(rng, 384)
    out, used = _build(lambda bb, x, g, b: relax.op.nn.layer_norm(x, g, b, axes=[-1], epsilon=1e-6),
                       {"x": x, "g": g, "b": b})
    _assert_rules(used, "rows")
    x64 = x.astype(np.float64)
    ref = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-6) * g + b
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_weight_transpose_is_tiled():
    rng = np.random.default_rng(4)
    w = _rand(rng, 1000, 384)
    out, used = _build(lambda bb, w: relax.op.permute_dims(w, [1, 0]), {"w": w})
    _assert_rules(used, "injective")
    np.testing.assert_array_equal(out, w.T)


# ------------------------------------------------------------------------------ intrinsic lowerings


@pytest.mark.parametrize("fn", ["exp", "erf"])
def test_vector_exp_erf_lowering(fn):
    """The registered float32 exp/erf lowerings are accurate when vectorised (and stay vectorised)."""
    from tvm import te

    n = 4096
    x = te.placeholder((n,), name="x")
    y = te.compute((n,), lambda i: getattr(te, fn)(x[i]), name="y")
    sch = tvm.s_tir.Schedule(te.create_prim_func([x, y]))
    (loop,) = sch.get_loops(sch.get_sblock("y"))
    _, inner = sch.split(loop, [None, 16])
    sch.vectorize(inner)
    lib = tvm.compile(sch.mod, target=_target())
    src = lib.mod.inspect_source("ll") if not lib.mod.imports else lib.mod.imports[0].inspect_source("ll")
    assert "@expf" not in src and "@erff" not in src and "llvm.exp." not in src

    xs = np.linspace(-87.0, 88.0, n).astype(np.float32) if fn == "exp" else np.linspace(-6, 6, n).astype(np.float32)
    out = tvm.runtime.empty((n,), "float32")
    lib["main"](tvm.runtime.tensor(xs), out)
    if fn == "exp":
        ref = np.exp(xs.astype(np.float64))
        assert (np.abs(out.numpy() - ref) / ref).max() < 2e-7
    else:
        assert np.abs(out.numpy() - _erf(xs)).max() < 5e-7
