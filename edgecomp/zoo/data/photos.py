"""Real photos for the ImageNet-shaped models: a curated eval pool, a disjoint calibration pool, hand labels.

Sources (installed by ``make data`` / the venv, never downloaded at run time):

- opencv-doc sample images under ``$EDGECOMP_DATA`` (or ``~/.cache/edgecomp/data``), in ``OPENCV_DIR``,
  plus the ImageNet-1k class names ``dnn/classification_classes_ILSVRC2012.txt`` from the same package;
- scikit-image's bundled ``skimage/data`` files and scikit-learn's ``load_sample_images`` files (read
  straight from the installed packages, without importing them).

Pools (fixed lists below, disjoint by *scene*: both members of a stereo / before-after pair go to the same
pool, and a pair member whose twin is in the eval pool is used nowhere):

- ``eval``: 26 natural photos with a clear subject (objects, animals, food, buildings, people; 5 are
  greyscale photos). The 13 hand-labelled images come first, so a small ``limit`` still hits them.
- ``calib``: 16 other real photos (aerial views, street, plant, toys, graffiti, notebook, circuit board,
  ground textures). Used only for calibration, never for evaluation.
- Left out as non-photos or off-domain: logos, drawings, charts, synthetic shapes, text / sudoku pages,
  chessboards (incl. the left/right camera-calibration series), a painting, medical / microscopy /
  astronomy images, disparity maps, tiny images, and the near-duplicates named in ``_UNUSED_TWINS``.

Contracts:

- ``load(pool) -> list[(name, uint8 [H, W, 3] RGB)]`` in the fixed order below (greyscale -> 3 channels,
  alpha dropped).
- ``hand_labels() -> {name: tuple of accepted ImageNet-1k indices}``.
- ``class_names() -> list[str]`` of 1000 (first synonym of each line).
- ``preprocess(img, size=224) -> float32 [1, 3, size, size]``: bicubic resize of the short side to
  ``round(size * 256 / 224)``, centre crop ``size``, ``(x / 255 - MEAN) / STD`` (EfficientNet-Lite's
  TF-lite normalisation, about ``(x - 127) / 128``).
- ``calibration(n, seed, size=224) -> list of n float32 [1, 3, size, size]``: random square crops (side 50-100 %
  of the short side) with random horizontal flips from the *calib* pool, normalised like ``preprocess``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

from edgecomp.errors import MissingDataError

MEAN, STD = 0.498, 0.502  # per-channel, on [0, 1] pixels
OPENCV_DIR = "opencv-doc/usr/share/doc/opencv-doc/examples/data"
CLASSES_FILE = "dnn/classification_classes_ILSVRC2012.txt"
_HINT = "make data (or set EDGECOMP_DATA to its root; scikit-image and scikit-learn come with the venv)"

# name -> (source, file). source: "opencv" (data root), "skimage" / "sklearn" (installed package files).
_EVAL: dict[str, tuple[str, str]] = {
    # hand-labelled (see HAND_LABELS)
    "squirrel_cls": ("opencv", "squirrel_cls.jpg"),
    "baboon": ("opencv", "baboon.jpg"),
    "orange": ("opencv", "orange.jpg"),
    "apple": ("opencv", "apple.jpg"),
    "messi5": ("opencv", "messi5.jpg"),
    "chicky_512": ("opencv", "chicky_512.png"),
    "fruits": ("opencv", "fruits.jpg"),
    "books": ("opencv", "left.jpg"),
    "chelsea": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "motorcycle": ("skimage", "motorcycle_left.png"),
    "china": ("sklearn", "china.jpg"),
    # unlabelled natural photos
    "butterfly": ("opencv", "butterfly.jpg"),
    "building": ("opencv", "building.jpg"),
    "home": ("opencv", "home.jpg"),
    "smarties": ("opencv", "smarties.png"),
    "stuff": ("opencv", "stuff.jpg"),
    "licenseplate_motion": ("opencv", "licenseplate_motion.jpg"),
    "box_in_scene": ("opencv", "box_in_scene.png"),
    "blox": ("opencv", "blox.jpg"),
    "basketball1": ("opencv", "basketball1.png"),
    "astronaut": ("skimage", "astronaut.png"),
    "camera": ("skimage", "camera.png"),
    "coins": ("skimage", "coins.png"),
    "flower": ("sklearn", "flower.jpg"),
}
_CALIB: dict[str, tuple[str, str]] = {
    "aero1": ("opencv", "aero1.jpg"),
    "aero3": ("opencv", "aero3.jpg"),
    "aloeL": ("opencv", "aloeL.jpg"),
    "aloeR": ("opencv", "aloeR.jpg"),
    "leuvenA": ("opencv", "leuvenA.jpg"),
    "leuvenB": ("opencv", "leuvenB.jpg"),
    "rubberwhale1": ("opencv", "rubberwhale1.png"),
    "rubberwhale2": ("opencv", "rubberwhale2.png"),
    "graf1": ("opencv", "graf1.png"),
    "graf3": ("opencv", "graf3.png"),
    "ela_original": ("opencv", "ela_original.jpg"),
    "ela_modified": ("opencv", "ela_modified.jpg"),
    "board": ("opencv", "board.jpg"),
    "grass": ("skimage", "grass.png"),
    "gravel": ("skimage", "gravel.png"),
    "brick": ("skimage", "brick.png"),
}
# twins of eval images (same scene, shifted camera): in neither pool, so calibration never sees eval scenes
_UNUSED_TWINS = ("right.jpg", "basketball2.png", "box.png", "motorcycle_right.png")

# Accepted ImageNet-1k indices per hand-labelled image. A set where the image is honestly ambiguous or the
# true object has no exact class: ImageNet's only apple is Granny Smith (948) and it has no plain
# "motorcycle" (moped 665 / motor scooter 670) or "rocket" (missile 657, projectile 744, space shuttle 812).
HAND_LABELS: dict[str, tuple[int, ...]] = {
    "squirrel_cls": (335,),  # fox squirrel (ImageNet's only squirrel)
    "baboon": (372,),  # the classic mandrill test image; ImageNet files mandrills under baboon
    "orange": (950,),
    "apple": (948,),  # red apple, Granny Smith is the only apple class
    "messi5": (805,),  # soccer ball (player kicking it)
    "chicky_512": (152, 154, 155),  # flat-faced toy dog: Pekinese, or Japanese spaniel / Shih-Tzu
    "fruits": (950, 951),  # halved orange, lemon, lime, kiwi: orange or lemon
    "books": (921,),  # two paperbacks standing up: book jacket
    "chelsea": (281, 282, 283, 284, 285),  # tabby cat: any domestic cat class
    "coffee": (967, 968),  # espresso in a cup on a saucer: espresso or cup
    "rocket": (657, 744, 812),  # launch vehicle on its pad
    "motorcycle": (665, 670),  # moped / motor scooter
    "china": (698,),  # Summer Palace tower: palace
}


def data_root() -> Path:
    """The data root: ``$EDGECOMP_DATA`` or ``~/.cache/edgecomp/data``."""
    return Path(os.environ.get("EDGECOMP_DATA") or Path.home() / ".cache" / "edgecomp" / "data")


def _package_dir(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDataError(f"the photo pools need the '{pkg}' package's bundled images", hint=_HINT)
    return Path(next(iter(spec.submodule_search_locations)))


def _path(source: str, file: str, root: Path) -> Path:
    if source == "opencv":
        path = root / OPENCV_DIR / file
    elif source == "skimage":
        path = _package_dir("skimage") / "data" / file
    else:
        path = _package_dir("sklearn") / "datasets" / "images" / file
    if not path.exists():
        raise MissingDataError(f"photo {file} ({source}) not found at {path}", hint=_HINT)
    return path


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def _load(pool: str, root: Path) -> tuple[tuple[str, np.ndarray], ...]:
    table = {"eval": _EVAL, "calib": _CALIB}.get(pool)
    if table is None:
        raise ValueError(f"unknown photo pool {pool!r}: 'eval' or 'calib'")
    images = []
    for name, (source, file) in table.items():
        img = _read(_path(source, file, root))
        img.setflags(write=False)
        images.append((name, img))
    return tuple(images)


def load(pool: str) -> list[tuple[str, np.ndarray]]:
    """``pool`` 'eval' or 'calib' -> [(name, uint8 [H, W, 3] RGB)] in the documented order (read-only arrays)."""
    return list(_load(pool, data_root()))


def hand_labels() -> dict[str, tuple[int, ...]]:
    """Eval-pool image name -> accepted ImageNet-1k class indices (any of them counts as correct)."""
    return dict(HAND_LABELS)


def class_names() -> list[str]:
    """The 1000 ImageNet-1k class names (first synonym per line), index = class id."""
    return list(_class_names(data_root()))


@functools.lru_cache(maxsize=2)
def _class_names(root: Path) -> tuple[str, ...]:
    path = root / OPENCV_DIR / CLASSES_FILE
    if not path.exists():
        raise MissingDataError(f"ImageNet class names not found at {path}", hint=_HINT)
    names = [line.split(",")[0].strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != 1000:
        raise MissingDataError(f"{path} has {len(names)} class names, expected 1000", hint=_HINT)
    return tuple(names)


def _normalize(img: np.ndarray) -> np.ndarray:
    """uint8 [size, size, 3] -> float32 [1, 3, size, size]."""
    x = (img.astype(np.float32) / 255.0 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def preprocess(img: np.ndarray, size: int = 224) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> float32 [1, 3, size, size]: short side to size*256/224 (bicubic), centre crop."""
    from PIL import Image

    im = Image.fromarray(np.asarray(img, dtype=np.uint8))
    short = round(size * 256 / 224)
    w, h = im.size
    scale = short / min(w, h)
    im = im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return _normalize(np.asarray(im.crop((left, top, left + size, top + size))))


def calibration(n: int, seed: int, size: int = 224) -> list[np.ndarray]:
    """``n`` float32 [1, 3, size, size] random crops / flips of the *calib* pool (deterministic in ``seed``)."""
    from PIL import Image

    pool = load("calib")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        _, img = pool[int(rng.integers(len(pool)))]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        top, left = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = Image.fromarray(img[top : top + side, left : left + side]).resize((size, size), Image.Resampling.BICUBIC)
        arr = np.asarray(crop)
        if rng.random() < 0.5:
            arr = arr[:, ::-1]
        out.append(_normalize(arr))
    return out
