"""depth-vit: the in-repo DPT-style depth network trained on rendered scenes (see train_depth_vit.py)."""

from __future__ import annotations

import json
from pathlib import Path

from edgecomp.errors import MissingDataError
from edgecomp.specs import TensorSpec
from edgecomp.zoo import ZooEntry, register

WEIGHTS = Path(__file__).parent / "weights" / "depth-vit.safetensors"
META = WEIGHTS.with_suffix(".json")
CALIB_OFFSET = 100_000  # calibration scenes are train-split scenes past any training set (indices >= this)


def config():
    """The committed model's ``DepthViTConfig`` (from the weights' JSON)."""
    from edgecomp.zoo.dpt import DepthViTConfig

    if not META.exists():
        raise MissingDataError(
            f"depth-vit metadata missing at {META}", hint="python -m edgecomp.zoo.train_depth_vit trains the model"
        )
    raw = json.loads(META.read_text())["config"]
    return DepthViTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})


def load():
    from safetensors.torch import load_file

    from edgecomp.zoo.dpt import DepthViT

    if not WEIGHTS.exists():
        raise MissingDataError(
            f"depth-vit weights missing at {WEIGHTS}", hint="python -m edgecomp.zoo.train_depth_vit trains them"
        )
    model = DepthViT(config())
    model.load_state_dict(load_file(str(WEIGHTS)))
    for p in model.parameters():  # inference weights; never flip the process-wide grad mode
        p.requires_grad_(False)
    return model.eval()


def calibration(n: int, seed: int) -> list[dict]:
    """``n`` single-image feeds: rendered *train*-split scenes (never val / test, never Middlebury)."""
    import numpy as np

    from edgecomp.zoo.data import depth_scenes

    cfg = depth_scenes.SceneConfig(size=config().image_size)
    start = CALIB_OFFSET + int(np.random.default_rng(seed).integers(0, 1_000_000))
    images, _ = depth_scenes.load("train", n, cfg, start=start)
    x = depth_scenes.normalize(images)
    return [{"pixels": x[i : i + 1]} for i in range(n)]


register(
    ZooEntry(
        name="depth-vit",
        description="DPT-style depth ViT: patch 8, dim 128, depth 6, 4 heads, 4 readouts, 64x64 RGB -> 64x64 depth (m)",
        family="vit",
        weights="trained in this repo on rendered scenes (edgecomp/zoo/train_depth_vit.py)",
        packages=("safetensors",),
        inputs=(TensorSpec("pixels", (1, 3, 64, 64), "float32"),),
        outputs=("depth",),
        load=load,
        calibration=calibration,
        task="depth-scenes",
    )
)
