"""Layer plans: schemes, overrides, group sizes and the errors for impossible requests."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgecomp.config import QuantizeConfig
from edgecomp.errors import ConfigError
from edgecomp.quant.plan import plan_layers
from edgecomp.quant.primitives import WeightGrid


class Net(nn.Module):
    def __init__(self, k: int = 192):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.dw = nn.Conv2d(8, 8, 3, groups=8)
        self.blocks = nn.ModuleList([nn.Linear(k, k) for _ in range(2)])
        self.head = nn.Linear(k, 10)


def test_auto_group_is_largest_dividing_every_linear():
    plans = {p.name: p for p in plan_layers(Net(192), QuantizeConfig(scheme="w4a8"))}
    assert plans["blocks.0"].grid.group_size == 64  # 128 does not divide 192
    assert plans["stem"].grid.group_size == 0 and plans["stem"].kind == "conv"
    assert plans["dw"].kind == "depthwise" and plans["dw"].method == "rtn"
    assert plans["head"].a_bits == 8 and plans["head"].grid.bits == 4


def test_explicit_group_that_does_not_divide_names_the_layer():
    with pytest.raises(ConfigError, match="group size 128 does not divide layer 'blocks.0'"):
        plan_layers(Net(192), QuantizeConfig(scheme="w4a16", group_size=128))


def test_overrides_keep_layers_at_8_bits_or_float():
    cfg = QuantizeConfig(scheme="w4a4", layers={"head": "w8a8", "stem": "skip"})
    plans = {p.name: p for p in plan_layers(Net(), cfg)}
    assert "stem" not in plans
    assert plans["head"].grid.bits == 8 and plans["head"].grid.symmetric and plans["head"].a_bits == 8
    assert plans["blocks.1"].grid.bits == 4 and plans["blocks.1"].a_bits == 4


def test_polishing_defaults_to_quartdepth_with_4_bit_activations():
    plans = {p.name: p for p in plan_layers(Net(), QuantizeConfig(scheme="w4a4", method="quartdepth"))}
    assert plans["blocks.0"].polish
    plans = {p.name: p for p in plan_layers(Net(), QuantizeConfig(scheme="w4a8", method="quartdepth"))}
    assert not plans["blocks.0"].polish
    plans = {p.name: p for p in plan_layers(Net(), QuantizeConfig(scheme="w4a4", method="rtn"))}
    assert not plans["blocks.0"].polish
    plans = {p.name: p for p in plan_layers(Net(), QuantizeConfig(scheme="w4a16", polish="on"))}
    assert not plans["blocks.0"].polish  # nothing to polish without activation quantization


@pytest.mark.parametrize("kwargs, match", [
    ({"scheme": "w4a8", "weight_bits": 5}, "unsupported weight bit-width 5"),
    ({"scheme": "w8a8", "weight_bits": 3}, "needs a 4-bit scheme"),
    ({"scheme": "w4a8", "group_size": 48}, "group_size must be"),
    ({"scheme": "w4a8", "layers": {"head": "w2a2"}}, "is not a scheme"),
])
def test_bad_quantize_config_is_a_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        QuantizeConfig(**kwargs)


def test_skipping_everything_is_an_error():
    with pytest.raises(ConfigError, match="no layer is left"):
        plan_layers(Net(), QuantizeConfig(scheme="w4a8", layers={"*": "skip"}))


def _on_q4_1_grid(lin: nn.Linear, g: int = 32) -> nn.Linear:
    """Put lin's weight on a GGUF Q4_1 grid (d q + m per group of g, float16 d and m)."""
    N, K = lin.weight.shape
    q = torch.randint(0, 16, (N, K // g, g), generator=torch.Generator().manual_seed(0)).float()
    q[..., 0], q[..., 1] = 0, 15
    d, m = torch.full((N, K // g, 1), 0.01).half().float(), torch.full((N, K // g, 1), -0.07).half().float()
    with torch.no_grad():
        lin.weight.copy_((d * q + m).reshape(N, K))
    return lin


def test_a_shipped_4_bit_grid_is_kept_with_blocked_activations():
    net = Net(192)
    _on_q4_1_grid(net.blocks[0])
    plans = {p.name: p for p in plan_layers(net, QuantizeConfig(scheme="w4a8"))}
    kept, other = plans["blocks.0"], plans["blocks.1"]
    assert kept.grid == WeightGrid(4, group_size=32, float_zero=True) and kept.a_group == 32
    assert other.grid == WeightGrid(4, group_size=64) and other.a_group == 0
    assert plans["blocks.0"].a_bits == 8
    assert plan_layers(net, QuantizeConfig(scheme="w4a16"))[2].a_group == 0  # no activations to block
    for cfg in (QuantizeConfig(scheme="w4a8", shipped_grid=False), QuantizeConfig(scheme="w4a8", group_size=64),
                QuantizeConfig(scheme="w4a8", symmetric=True), QuantizeConfig(scheme="w4a8", weight_bits=3)):
        assert not next(p for p in plan_layers(net, cfg) if p.name == "blocks.0").grid.float_zero


def test_activation_groups_must_divide_every_linear():
    plans = {p.name: p for p in plan_layers(Net(192), QuantizeConfig(scheme="w4a8", act_group_size=64))}
    assert plans["head"].a_group == 64 and plans["stem"].a_group == 0  # convs stay per sample
    with pytest.raises(ConfigError, match="activation group 128 does not divide layer 'blocks.0'"):
        plan_layers(Net(192), QuantizeConfig(scheme="w4a8", act_group_size=128))
    with pytest.raises(ConfigError, match="act_group_size"):
        QuantizeConfig(scheme="w4a8", act_group_size=48)


def test_a_shipped_8_bit_output_head_keeps_8_bits():
    net = Net(192)
    w = torch.randint(-127, 128, (10, 192), generator=torch.Generator().manual_seed(1)).float()
    w[:, ::32] = 127  # Q8_0: each group's abs-max sits at code 127
    with torch.no_grad():
        net.head.weight.copy_(w * 0.002)
    head = next(p for p in plan_layers(net, QuantizeConfig(scheme="w4a8")) if p.name == "head")
    assert head.grid == WeightGrid(8, symmetric=True) and head.shipped == 32 and head.a_group == 32


def test_convolutions_get_groups_when_one_divides_their_reduction_and_depthwise_stays_8_bit():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(96, 16, 1), nn.Conv2d(40, 8, 1))
    plans = {p.name: p for p in plan_layers(net, QuantizeConfig(scheme="w4a8"))}
    assert plans["0"].grid == WeightGrid(4, group_size=0)  # K = 27: per output channel
    assert plans["1"].grid == WeightGrid(8, symmetric=True) and plans["1"].kind == "depthwise"
    assert plans["2"].grid == WeightGrid(4, group_size=32)  # K = 96: 128 and 64 do not divide it
    assert plans["3"].grid == WeightGrid(4, group_size=0)  # K = 40
    # one activation scale per GEMM row: per sample (3x3), per channel (depthwise), per pixel (1x1)
    assert [plans[n].a_dims for n in "0123"] == [(1, 2, 3), (2, 3), (1,), (1,)]
    explicit = {p.name: p for p in plan_layers(net, QuantizeConfig(scheme="w4a8", group_size=16))}
    assert explicit["2"].grid.group_size == 16 and explicit["3"].grid.group_size == 0  # 16 does not divide 40
