from __future__ import annotations

import pytest

from edgecomp.config import BuildConfig
from edgecomp.errors import ConfigError


def test_toml_roundtrip_and_overrides(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('calib_samples = 16\n[quantize]\nscheme = "w4a8"\nmethod = "rtn"\n[export]\nopset = 18\n')
    cfg = BuildConfig.from_toml(recipe)
    assert cfg.quantize.scheme == "w4a8" and cfg.export.opset == 18 and cfg.calib_samples == 16
    cfg2 = cfg.with_overrides(["export.opset=17", "quantize.method=gptq", "prune.ratio=0.25"])
    assert (cfg2.export.opset, cfg2.quantize.method, cfg2.prune.ratio) == (17, "gptq", 0.25)
    assert BuildConfig.from_dict(cfg2.to_dict()) == cfg2


@pytest.mark.parametrize("override, match", [
    ("prune.ratio=1.0", "prune.ratio"),
    ("merge.r=-1", "merge.r"),
    ("quantize.scheme=w3a3", "unknown quantization scheme"),
    ("export.nope=1", "unknown config field"),
    ("nosection.x=1", "unknown config section"),
    ("export.opset=seventeen", "must be int"),
    ("noequals", "not key=value"),
])
def test_bad_values_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        BuildConfig().with_overrides([override])


def test_bad_recipe_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[export\nopset = 17")
    with pytest.raises(ConfigError, match="not valid TOML"):
        BuildConfig.from_toml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        BuildConfig.from_toml(tmp_path / "missing.toml")
