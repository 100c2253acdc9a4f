"""vit-fmnist: the in-repo ViT trained on Fashion-MNIST (weights committed, see train_vit_fmnist.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecomp.errors import MissingDataError
from edgecomp.specs import TensorSpec
from edgecomp.zoo import ZooEntry, register
from edgecomp.zoo.data import fashion_mnist

WEIGHTS = Path(__file__).parent / "weights" / "vit-fmnist.safetensors"
META = WEIGHTS.with_suffix(".json")


def load():
    from safetensors.torch import load_file

    from edgecomp.zoo.vit import ViT, ViTConfig

    if not WEIGHTS.exists():
        raise MissingDataError(f"vit-fmnist weights missing at {WEIGHTS}",
                               hint="python -m edgecomp.zoo.train_vit_fmnist trains them")
    cfg = ViTConfig(**json.loads(META.read_text())["config"])
    model = ViT(cfg)
    model.load_state_dict(load_file(str(WEIGHTS)))
    for p in model.parameters():  # inference weights; never flip the process-wide grad mode
        p.requires_grad_(False)
    return model.eval()


def calibration(n: int, seed: int) -> list[dict]:
    """``n`` single-image feeds from the Fashion-MNIST *train* split."""
    images, _ = fashion_mnist.load("train")
    idx = np.random.default_rng(seed).choice(len(images), size=n, replace=False)
    x = fashion_mnist.normalize(images[np.sort(idx)])
    return [{"pixels": x[i : i + 1]} for i in range(n)]


register(ZooEntry(
    name="vit-fmnist",
    description="ViT, patch 4, dim 192, depth 6, 3 heads, 28x28 grey -> 10 classes",
    family="vit",
    weights="trained in this repo on Fashion-MNIST train (edgecomp/zoo/train_vit_fmnist.py)",
    packages=("safetensors",),
    inputs=(TensorSpec("pixels", (1, 1, 28, 28), "float32"),),
    outputs=("logits",),
    load=load,
    calibration=calibration,
    task="fmnist-top1",
))
