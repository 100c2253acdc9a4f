"""The merge stage through the compiler: static token schedule in the report, artifact == torch, clean errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp import api
from edgecomp.config import BuildConfig
from edgecomp.errors import ConfigError
from edgecomp.merge.vit import MergingViT
from edgecomp.specs import TensorSpec
from edgecomp.zoo.vit import ViT, ViTConfig

CFG = ViTConfig(image_size=16, patch_size=2, in_chans=1, num_classes=5, dim=32, depth=3, heads=2, mlp_dim=64)
SPEC = (TensorSpec("pixels", (1, 1, 16, 16), "float32"),)


def _vit():
    return ViT(CFG).init_weights_(seed=1).eval().requires_grad_(False)


def _calibration(n=2):
    rng = np.random.default_rng(0)
    return [{"pixels": rng.standard_normal((1, 1, 16, 16)).astype(np.float32)} for _ in range(n)]


def test_merged_build_reports_tokens_and_matches_torch(tmp_path):
    cfg = BuildConfig().with_overrides(['merge.schedule="16,8"', "merge.method=tome"])
    out = api.build(_vit(), "x86", tmp_path / "m", cfg, inputs=SPEC, calibration=_calibration())
    from edgecomp.artifact import Artifact

    merge = {s["stage"]: s for s in Artifact.open(out).report()["stages"]}["merge"]
    assert merge["status"] == "done" and merge["schedule"] == [16, 8, 0]
    assert merge["tokens_in"] == 65 and merge["tokens_per_layer"] == [49, 41, 41]
    assert 0 < merge["merge_share_eager"] < 1
    feeds = _calibration(3)[2]
    want = MergingViT(_vit(), (16, 8, 0), "tome")(torch.from_numpy(feeds["pixels"])).numpy()
    (got,) = api.run(out, feeds).values()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sets, message", [
    (["merge.r=40"], "at most 32"),
    (['merge.schedule="1,1,1,1"'], "has 4 layers but the model has 3"),
    (['merge.schedule="abc"'], "cannot read merge schedule"),
])
def test_bad_schedules_fail_before_export(tmp_path, sets, message):
    with pytest.raises(ConfigError, match=message):
        api.build(_vit(), "x86", tmp_path / "bad", BuildConfig().with_overrides(sets), inputs=SPEC,
                  calibration=_calibration())
    assert not (tmp_path / "bad").exists()


def test_model_without_attention_is_refused(tmp_path, tiny_module, tiny_spec, tiny_calibration):
    with pytest.raises(ConfigError, match="no token-merging adapter"):
        api.build(tiny_module, "x86", tmp_path / "t", BuildConfig().with_overrides(["merge.r=2"]), inputs=tiny_spec,
                  calibration=tiny_calibration)
