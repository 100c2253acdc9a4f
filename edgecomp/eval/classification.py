"""fmnist-top1: top-1 accuracy of vit-fmnist on the 10k Fashion-MNIST test images."""

from __future__ import annotations

import numpy as np

from edgecomp.eval import Engine, TaskResult, register_task
from edgecomp.specs import TensorSpec
from edgecomp.zoo.data import fashion_mnist


def _top1(engine: Engine, name: str, x: np.ndarray, y: np.ndarray) -> float:
    correct = sum(int(np.argmax(engine({name: x[i : i + 1]})[0]) == y[i]) for i in range(len(x)))
    return correct / len(x)


@register_task("fmnist-top1")
def fmnist_top1(engine: Engine, reference: Engine | None, inputs: tuple[TensorSpec, ...], limit: int | None):
    images, labels = fashion_mnist.load("test")
    if limit:
        images, labels = images[:limit], labels[:limit]
    x = fashion_mnist.normalize(images)
    name = inputs[0].name
    ref = _top1(reference, name, x, labels) if reference is not None else None
    return TaskResult("fmnist-top1", "top1", _top1(engine, name, x, labels), len(x), ref)
