"""The two real Middlebury scenes with ground-truth depth that install offline, for depth evaluation.

- ``motorcycle``: Middlebury 2014 *Motorcycle*, left view and GT disparity from scikit-image
  (``skimage.data.stereo_motorcycle()``, 500 x 741, quarter resolution). Calibration from its docstring:
  f = 994.978 px, baseline B = 193.001 mm, doffs = 31.086 px, so depth = f·B / (d + doffs) in mm (metres
  here); invalid pixels have a non-finite disparity (about 7 %).
- ``aloe``: Middlebury 2006 *Aloe*, opencv-doc's ``aloeL.jpg`` and ``aloeGT.png`` (1282 x 1110, 8-bit GT
  disparity, 0 = unknown, about 3.5 %). The files carry no calibration: depth is taken as 1 / d (relative
  units, disparity offset assumed 0). AbsRel, δ and SILog are invariant to the unknown global scale; RMSE is
  reported after dividing the GT depth by its median (unit median depth).

Contracts:

- ``load(name) -> Scene`` with ``image`` uint8 [H, W, 3] RGB, ``depth`` float32 [H, W] (> 0 where ``valid``),
  ``valid`` bool [H, W], ``units`` and ``source``.
- ``crop_square(scene) -> Scene``: the centred square crop (the model's input is square).
- ``model_input(scene, size) -> float32 [1, 3, size, size]``: the square image resized (bicubic) and
  normalised like the rendered scenes (``depth_scenes.normalize``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from edgecomp.errors import ConfigError, MissingDataError

MOTORCYCLE_F, MOTORCYCLE_B_M, MOTORCYCLE_DOFFS = 994.978, 0.193001, 31.086
SCENES = ("motorcycle", "aloe")


@dataclass(frozen=True)
class Scene:
    name: str
    image: np.ndarray  # uint8 [H, W, 3] RGB
    depth: np.ndarray  # float32 [H, W]; meaningful where valid
    valid: np.ndarray  # bool [H, W]
    units: str  # "m" or "relative (median 1)"
    source: str


def _motorcycle() -> Scene:
    try:
        from skimage import data
    except ImportError as e:
        raise MissingDataError("the motorcycle scene needs scikit-image", hint="pip install scikit-image") from e
    left, _, disp = data.stereo_motorcycle()
    disp = np.asarray(disp, np.float64)
    valid = np.isfinite(disp) & (disp > 0)
    depth = np.where(valid, MOTORCYCLE_F * MOTORCYCLE_B_M / (np.where(valid, disp, 0.0) + MOTORCYCLE_DOFFS), 0.0)
    return Scene(
        "motorcycle",
        np.asarray(left, np.uint8),
        depth.astype(np.float32),
        valid,
        "m",
        "Middlebury 2014 Motorcycle via skimage.data.stereo_motorcycle (f=994.978 px, B=193.001 mm, doffs=31.086)",
    )


def _aloe() -> Scene:
    from PIL import Image

    from edgecomp.zoo.data import photos

    folder = photos.data_root() / photos.OPENCV_DIR
    paths = folder / "aloeL.jpg", folder / "aloeGT.png"
    for p in paths:
        if not p.exists():
            raise MissingDataError(
                f"Middlebury Aloe file {p.name} not found at {p}",
                hint="make data (installs opencv-doc under $EDGECOMP_DATA)",
            )
    with Image.open(paths[0]) as im:
        image = np.asarray(im.convert("RGB"), np.uint8)
    with Image.open(paths[1]) as im:
        disp = np.asarray(im.convert("L"), np.float64)
    if disp.shape != image.shape[:2]:
        raise MissingDataError(
            f"aloeGT.png {disp.shape} does not match aloeL.jpg {image.shape[:2]}",
            hint="reinstall opencv-doc (make data)",
        )
    valid = disp > 0
    inv = np.where(valid, 1.0 / np.where(valid, disp, 1.0), 0.0)
    depth = inv / np.median(inv[valid])
    return Scene(
        "aloe",
        image,
        depth.astype(np.float32),
        valid,
        "relative (median 1)",
        "Middlebury 2006 Aloe via opencv-doc aloeL.jpg / aloeGT.png (depth = 1/disparity, no calibration)",
    )


_LOADERS = {"motorcycle": _motorcycle, "aloe": _aloe}


@functools.lru_cache(maxsize=2)
def load(name: str) -> Scene:
    """One scene by name (``SCENES``); arrays are read-only."""
    if name not in _LOADERS:
        raise ConfigError(f"unknown Middlebury scene {name!r}", hint=f"one of {', '.join(SCENES)}")
    s = _LOADERS[name]()
    for a in (s.image, s.depth, s.valid):
        a.setflags(write=False)
    return s


def crop_square(scene: Scene) -> Scene:
    """The centred square crop of every array of ``scene``."""
    h, w = scene.valid.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    box = (slice(top, top + side), slice(left, left + side))
    return Scene(scene.name, scene.image[box], scene.depth[box], scene.valid[box], scene.units, scene.source)


def model_input(scene: Scene, size: int) -> np.ndarray:
    """Square ``scene`` -> float32 [1, 3, size, size], normalised like the rendered training scenes."""
    from PIL import Image

    from edgecomp.zoo.data import depth_scenes

    h, w = scene.valid.shape
    if h != w:
        raise ConfigError(f"scene {scene.name} is {h}x{w}, not square", hint="crop_square(scene) first")
    small = np.asarray(Image.fromarray(scene.image).resize((size, size), Image.Resampling.BICUBIC))
    return depth_scenes.normalize(small[None])
