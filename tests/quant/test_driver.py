"""The layer-by-layer driver on a small trained-like model: every method quantizes, error orderings hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgecomp.config import QuantizeConfig
from edgecomp.quant.driver import group_passes, quantize_module
from edgecomp.quant.modules import QuantConv2d, QuantLinear


class Mixer(nn.Module):
    """conv stem -> 2 residual MLP blocks over tokens -> head, with a few outlier channels like real LayerNorm
    outputs have."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = nn.Conv2d(3, 64, 4, stride=4)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(64), nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 64))
                                    for _ in range(2))
        self.head = nn.Linear(64, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            for blk in self.blocks:
                blk[0].weight[:3] = 12.0  # outlier channels

    def forward(self, x):
        t = self.stem(x).flatten(2).transpose(1, 2)
        for blk in self.blocks:
            t = t + blk(t)
        return self.head(t.mean(1))


@pytest.fixture(scope="module")
def mixer_and_feeds():
    g = torch.Generator().manual_seed(1)
    feeds = [(torch.randn(4, 3, 16, 16, generator=g),) for _ in range(4)]
    test = torch.randn(16, 3, 16, 16, generator=g)
    return Mixer().eval(), feeds, test


def _rel_err(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("scheme", ["w4a16", "w8a8", "w4a8", "w4a4"])
def test_every_method_replaces_every_layer_and_stays_close(mixer_and_feeds, scheme):
    model, feeds, test = mixer_and_feeds
    with torch.no_grad():
        ref = model(test)
    errs = {}
    for method in ("rtn", "gptq", "quartdepth"):
        q, report, seconds = quantize_module(model, feeds, QuantizeConfig(scheme=scheme, method=method,
                                                                           recon_seconds=4.0))
        kinds = [type(m) for m in q.modules()]
        assert kinds.count(QuantLinear) == 5 and kinds.count(QuantConv2d) == 1
        assert not any(isinstance(m, nn.Linear) for m in q.modules())
        assert report["layers_quantized"] == 6 and len(report["per_layer"]) == 6
        assert all(r["output_sqnr_db"] is None or r["output_sqnr_db"] > 5 for r in report["per_layer"])
        assert "total" in seconds
        with torch.no_grad():
            errs[method] = _rel_err(q(test), ref)
        assert errs[method] < (0.05 if scheme == "w8a8" else 0.5), (method, errs)
    assert isinstance(model.head, nn.Linear), "the float model is left untouched"
    if scheme in ("w4a16", "w4a8"):
        assert errs["gptq"] < errs["rtn"] and errs["quartdepth"] < errs["rtn"], errs


def test_report_is_deterministic(mixer_and_feeds):
    model, feeds, _ = mixer_and_feeds
    cfg = QuantizeConfig(scheme="w4a4", method="quartdepth", recon_seconds=1.0)
    a = quantize_module(model, feeds, cfg)[1]
    b = quantize_module(model, feeds, cfg)[1]
    assert a == b


def test_outlier_channels_are_reported(mixer_and_feeds):
    model, feeds, _ = mixer_and_feeds
    report = quantize_module(model, feeds, QuantizeConfig(scheme="w4a8", method="rtn"))[1]
    fc1 = {r["layer"]: r for r in report["per_layer"]}["blocks.0.1"]
    assert fc1["outlier_channels"] >= 3


def test_group_passes_split_by_block_prefix():
    order = ["stem", "blocks.0.1", "blocks.0.3", "blocks.1.1", "blocks.1.3", "head"]
    assert group_passes(order) == [["stem"], ["blocks.0.1", "blocks.0.3"], ["blocks.1.1", "blocks.1.3"], ["head"]]
    assert group_passes(order, max_passes=2) == [["stem", "blocks.0.1", "blocks.0.3"], ["blocks.1.1", "blocks.1.3",
                                                                                        "head"]]


def test_quartdepth_falls_back_to_rtn_when_fitted_weights_do_not_generalise():
    """Fit rows that span two directions only: compensation and GPTQ fit them and err elsewhere, so on the
    held-out half of the calibration rows plain round-to-nearest wins the per-layer competition."""
    from edgecomp.quant import driver
    from edgecomp.quant.plan import LayerPlan
    from edgecomp.quant.primitives import WeightGrid

    torch.manual_seed(0)
    N, K, T = 16, 64, 256
    Wf = torch.randn(N, K)
    X = torch.cat([torch.randn(T // 2, 2) @ torch.randn(2, K), torch.randn(T // 2, K)])
    plan = LayerPlan("l", "linear", "w4a16", WeightGrid(4, False, 32), None, 0, "quartdepth", False, K)
    H = X.double().T @ X.double()
    *_, info = driver._quartdepth_weights(Wf, X, X, H, None, 0.0, plan, QuantizeConfig(scheme="w4a16"), 0)
    assert info["chosen"] == "rtn"
    # with representative fit rows the reconstruction candidates win again
    X = torch.randn(T, K) @ torch.randn(K, K)  # correlated inputs, the same distribution in both halves
    H = X.double().T @ X.double()
    *_, info = driver._quartdepth_weights(Wf, X, X, H, None, 0.0, plan, QuantizeConfig(scheme="w4a16"), 0)
    assert info["chosen"] != "rtn"
