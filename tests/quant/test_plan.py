"""Layer plans: schemes, overrides, group sizes and the errors for impossible requests."""

from __future__ import annotations

import pytest
from torch import nn

from edgecomp.config import QuantizeConfig
from edgecomp.errors import ConfigError
from edgecomp.quant.plan import plan_layers


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
