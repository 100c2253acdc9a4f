"""Dynamic activation fake-quant: ONNX export fidelity, error bounds, LogNP quality and guards."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from edgecomp.errors import ConfigError
from edgecomp.quant import activations
from edgecomp.quant.activations import (
    fake_quant_symmetric,
    lognp_alpha,
    lognp_fake_quant,
    polish,
    unpolish,
)

PLAIN_OPS = {"Abs", "ReduceMax", "Div", "Round", "Clip", "Mul", "Log", "Pow", "Sign", "Add", "Sub", "Constant"}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _student_t(shape, seed):
    """Seeded Student-t samples with 3 degrees of freedom (heavy tails: finite variance, infinite kurtosis)."""
    g = _gen(seed)
    z = torch.randn(shape, generator=g)
    chi2 = (torch.randn((3, *shape), generator=g) ** 2).sum(0)
    return z / torch.sqrt(chi2 / 3)


class _Wrap(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _onnx_run(fn, x):
    import onnx
    import onnxruntime as ort

    buf = io.BytesIO()
    torch.onnx.export(_Wrap(fn), (x,), buf, dynamo=False, opset_version=17, input_names=["x"], output_names=["y"])
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.numpy()})[0], ops


CASES = {
    "sym4-token": (lambda x: fake_quant_symmetric(x, 4, (-1,)), (2, 64, 96)),
    "sym8-token": (lambda x: fake_quant_symmetric(x, 8, (-1,)), (2, 64, 96)),
    "sym4-sample": (lambda x: fake_quant_symmetric(x, 4, (1, 2, 3)), (2, 8, 16, 16)),
    "lognp4-token": (lambda x: lognp_fake_quant(x, 4, (-1,)), (2, 64, 96)),
    "lognp8-token": (lambda x: lognp_fake_quant(x, 8, (-1,)), (2, 64, 96)),
    "lognp4-sample": (lambda x: lognp_fake_quant(x, 4, (1, 2, 3)), (2, 8, 16, 16)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_onnx_export_reproduces_torch(case):
    fn, shape = CASES[case]
    x = _student_t(shape, seed=1)
    x[0, 0] = 0.0  # an all-zero slice (token, or part of a sample) must survive the round trip
    got, ops = _onnx_run(fn, x)
    want = fn(x).numpy()
    assert ops <= PLAIN_OPS, f"non-plain ONNX ops {ops - PLAIN_OPS}"
    assert np.isfinite(got).all()
    # Bit-identical except for rare rounding ties (none occur for this seed on onnxruntime 1.2x).
    assert (got == want).mean() > 0.999
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


def test_polish_exports_close_and_inverts():
    z = _student_t((4, 256), seed=2) * 10
    got, ops = _onnx_run(polish, z)
    assert ops <= PLAIN_OPS
    # Log differs between runtimes in the last ulp, which is why lognp_fake_quant takes gmax from ReduceMax.
    assert np.allclose(got, polish(z).numpy(), rtol=1e-6, atol=1e-7)
    assert torch.allclose(unpolish(polish(z)), z, rtol=1e-5, atol=1e-6)
    assert bool(torch.isfinite(unpolish(torch.tensor([1e4, -1e4]))).all())


@pytest.mark.parametrize("bits", [4, 8])
def test_symmetric_error_bound_and_grid(bits):
    x = _student_t((32, 128), seed=3)
    qmax = 2 ** (bits - 1) - 1
    s = x.abs().amax(dim=-1, keepdim=True) / qmax
    y = fake_quant_symmetric(x, bits, (-1,))
    assert bool(((x - y).abs() <= s / 2 * (1 + 1e-5)).all())
    q = y / s
    assert torch.allclose(q, q.round(), atol=1e-3) and float(q.abs().max()) <= qmax + 1e-3


def test_zero_input_gives_zero_not_nan():
    x = torch.zeros(2, 4, 8)
    assert torch.equal(fake_quant_symmetric(x, 4, (-1,)), x)
    assert torch.equal(lognp_fake_quant(x, 4, (-1,)), x)
    assert torch.equal(lognp_fake_quant(x, 4, (1, 2)), x)
    # Slices near fp32's resolution of 1 + |z|: log2 overshoots, the table clamp keeps |out| <= max|z|.
    tiny = torch.randn(4, 64, generator=_gen(9)) * 1e-7
    out = lognp_fake_quant(tiny, 4, (-1,))
    assert bool(torch.isfinite(out).all()) and bool((out.abs().amax(-1) <= tiny.abs().amax(-1)).all())


def test_lognp_datapath_is_an_int8_table_per_slice():
    """The output is sign(q) * lut[|q|] * gmax / 127 with lut the 16-entry table of the module docstring."""
    z = _student_t((16, 200), seed=4) * 3
    bits, qmax = 4, 7
    out = lognp_fake_quant(z, bits, (-1,)).double()
    z64 = z.double()
    gmax = z64.abs().amax(dim=-1, keepdim=True)
    s = torch.log2(1 + gmax) / qmax
    q = torch.clamp(torch.round(torch.sign(z64) * torch.log2(1 + z64.abs()) / s), -qmax, qmax)
    lut = torch.round(127 * (torch.exp2(torch.arange(qmax + 1, dtype=torch.float64) * s) - 1) / gmax)  # [16, 8]
    want = torch.sign(q) * torch.gather(lut, 1, q.abs().long()) * gmax / 127
    assert (out - want).abs().max() <= 1e-5 * gmax.max()  # fp32 vs fp64: no table entry or code differs
    ints = out * 127 / gmax
    assert torch.allclose(ints, ints.round(), atol=1e-3) and float(ints.abs().max()) <= 127 + 1e-3
    # The slice maximum is reproduced (code qmax -> table entry 127).
    assert torch.allclose(out.abs().amax(dim=-1), gmax[:, 0], rtol=1e-6)


def test_lognp_beats_uniform_on_heavy_tailed_activations():
    T, C = 512, 128
    g = _gen(5)
    u = torch.rand(T, C, generator=g) - 0.5
    laplace = -torch.sign(u) * torch.log1p(-2 * u.abs())  # inverse CDF of Laplace(0, 1)
    outliers = torch.ones(C)
    outliers[torch.randperm(C, generator=g)[:8]] = 30.0
    for x in (laplace * outliers, _student_t((T, C), seed=6)):
        alpha = lognp_alpha(x)
        mse_uniform = float(((fake_quant_symmetric(x, 4, (-1,)) - x) ** 2).mean())
        mse_lognp = float(((lognp_fake_quant(x / alpha, 4, (-1,)) * alpha - x) ** 2).mean())
        assert mse_lognp < 0.8 * mse_uniform


def test_lognp_alpha_percentile_and_guard():
    x = _student_t((300, 6), seed=7)
    x[:, 2] = 0.0  # dead channel
    x[:290, 3] = 0.0  # ReLU-sparse: the 95th percentile is 0
    alpha = lognp_alpha(x)
    assert alpha.shape == (6,) and alpha.dtype == torch.float32
    live = [0, 1, 4, 5]
    assert torch.allclose(alpha[live], torch.quantile(x.abs()[:, live], 0.95, dim=0))
    floor = max(1e-6 * float(x.abs().max()), 1e-8)
    assert torch.allclose(alpha[[2, 3]], torch.full((2,), floor))
    out = lognp_fake_quant(x / alpha, 4, (-1,)) * alpha
    assert bool(torch.isfinite(out).all()) and bool((out[:, 2] == 0).all())
    assert torch.equal(lognp_alpha(torch.zeros(10, 3)), torch.full((3,), 1e-8))


def test_lognp_alpha_chunks_and_subsamples(monkeypatch):
    x = _student_t((400, 50), seed=8)
    full = lognp_alpha(x)
    monkeypatch.setattr(activations, "_QUANTILE_LIMIT", 1000)  # 2 columns per chunk
    assert torch.allclose(lognp_alpha(x), full)
    monkeypatch.setattr(activations, "_QUANTILE_LIMIT", 200)  # rows subsampled 2:1, one column per chunk
    assert torch.allclose(lognp_alpha(x), torch.quantile(x[::2].abs(), 0.95, dim=0))


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="bit-width 1"):
        fake_quant_symmetric(torch.ones(3), 1, (-1,))
    with pytest.raises(ConfigError):
        lognp_alpha(torch.ones(3))
    with pytest.raises(ConfigError, match="percentile"):
        lognp_alpha(torch.ones(3, 3), percentile=0.0)
