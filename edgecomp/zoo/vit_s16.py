"""vit-s16: a DeiT-S-shaped ViT (patch 16, dim 384, depth 12, 6 heads) with SEEDED RANDOM weights.

For speed work only: no pretrained ViT installs offline, so the weights are ``ViT.init_weights_(seed=0)``
and the logits mean nothing. Its task, ``random-weights``, refuses to report a quality number.
Input ``pixels`` float32 [1, 3, 224, 224] (calibration feeds use the photo preprocessing), output ``logits``
float32 [1, 1000].
"""

from __future__ import annotations

from edgecomp.specs import TensorSpec
from edgecomp.zoo import ZooEntry, register
from edgecomp.zoo.data import photos

SEED = 0


def config():
    """The ViTConfig of vit-s16 (DeiT-S shape at 224x224)."""
    from edgecomp.zoo.vit import ViTConfig

    return ViTConfig(image_size=224, patch_size=16, in_chans=3, num_classes=1000, dim=384, depth=12, heads=6,
                     mlp_dim=1536)


def load():
    """The eval-mode fp32 ViT, seeded random weights, gradients off: pixels [1, 3, 224, 224] -> logits [1, 1000]."""
    from edgecomp.zoo.vit import ViT

    return ViT(config()).init_weights_(seed=SEED).eval().requires_grad_(False)


def calibration(n: int, seed: int) -> list[dict]:
    """``n`` feeds {"pixels": float32 [1, 3, 224, 224]}: random crops / flips of the calibration photo pool."""
    return [{"pixels": x} for x in photos.calibration(n, seed, size=224)]


register(ZooEntry(
    name="vit-s16",
    description="ViT-S/16 (DeiT-S shape: dim 384, depth 12, 6 heads), 224x224 RGB -> 1000 logits; "
                "seeded random weights, for latency work only",
    family="vit",
    weights="seeded random weights (seed 0) — speed work only, no quality metric",
    packages=(),
    inputs=(TensorSpec("pixels", (1, 3, 224, 224), "float32"),),
    outputs=("logits",),
    load=load,
    calibration=calibration,
    task="random-weights",
))
