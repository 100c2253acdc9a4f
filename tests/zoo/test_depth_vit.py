"""depth-vit: committed weights, its recorded validation quality, calibration from the train split, x86 build."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgecomp import api, zoo
from edgecomp.zoo import depth_vit
from edgecomp.zoo.data import depth_scenes


@pytest.fixture(autouse=True)
def _need_photos(or_skip):
    or_skip(depth_scenes.textures)


def test_entry_and_weights():
    entry = zoo.get("depth-vit")
    assert entry.family == "vit" and entry.task == "depth-scenes" and entry.outputs == ("depth",)
    model = entry.load()
    assert type(model).__name__ == "DepthViT"
    assert depth_vit.WEIGHTS.stat().st_size < 20e6
    with torch.no_grad():
        out = model(torch.from_numpy(entry.calibration(1, 0)[0]["pixels"]))
    assert out.shape == (1, 1, 64, 64) and (out > 0).all()


def test_committed_weights_beat_the_per_pixel_depth_prior():
    from edgecomp.eval import depth, depth_metrics

    res = api.evaluate("depth-vit", limit=50)
    assert res["n"] == 50 and res["metric"] == "abs_rel" and not res["higher_is_better"]
    # the floor to beat: at every pixel, the geometric mean of these very scenes' ground truth (the scenes'
    # layout prior, ground below and wall behind, with no look at the image); a constant depth is far weaker.
    # The step-400 weights (AbsRel 0.81, δ1 0.29) did not beat it; these give 0.31 / 0.47 against 0.61 / 0.29
    _, gts = depth._test_split(64, 50)
    prior = np.exp(np.log(np.asarray(gts)).mean(axis=0))
    base = depth_metrics.mean_metrics([depth_metrics.image_metrics(prior, g) for g in gts])
    assert res["details"]["test_delta1"] > base["delta1"] + 0.1
    assert res["value"] < 0.8 * base["abs_rel"]


def test_calibration_is_deterministic_train_split():
    a, b = depth_vit.calibration(2, seed=3), depth_vit.calibration(2, seed=3)
    assert np.array_equal(a[1]["pixels"], b[1]["pixels"]) and a[0]["pixels"].shape == (1, 3, 64, 64)
    assert not np.array_equal(a[0]["pixels"], depth_vit.calibration(2, seed=4)[0]["pixels"])


@pytest.mark.zoo
def test_x86_build_matches_torch(tmp_path):
    art = api.build("depth-vit", "x86", tmp_path / "dv")
    res = api.evaluate(art, limit=20)
    assert res["value"] == pytest.approx(res["reference"]["value"], abs=1e-4)
