"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (IDX files, 60k train + 10k test).

``load(split)`` -> (images uint8 [N, 28, 28], labels int64 [N]); ``normalize`` maps uint8 images to the
float32 [N, 1, 28, 28] tensor the vit-fmnist model takes.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from edgecomp.errors import MissingDataError

ROOT = Path(os.environ.get("EDGECOMP_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
MEAN, STD = 0.2860, 0.3530  # train-split pixel statistics, standard for Fashion-MNIST
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N, 28, 28], labels int64 [N]) for split 'train' or 'test'."""
    img_name, lbl_name = _FILES[split]
    img_path, lbl_path = ROOT / img_name, ROOT / lbl_name
    if not img_path.exists() or not lbl_path.exists():
        raise MissingDataError(f"Fashion-MNIST {split} split not found under {ROOT}",
                               hint="apt-get install dataset-fashion-mnist (make test does this)")
    return _read_idx(img_path), _read_idx(lbl_path).astype(np.int64)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28], standardised with the train statistics."""
    return ((images.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]
