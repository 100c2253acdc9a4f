"""depth-scenes: depth-vit's quality on the held-out rendered test split and on the two Middlebury scenes.

- Rendered test split (``depth_scenes`` "test", scenes 0..N_TEST-1; ``limit`` takes the first ``limit``):
  the model's metric depth against the exact z-depth, no alignment (the renderer's camera is the one the
  model was trained for). The headline value is this AbsRel (lower is better).
- Middlebury (``middlebury.SCENES``): centred square crop, resized to the model input; the prediction is
  resized bilinearly to the crop's resolution, aligned by scale and shift in inverse depth
  (``depth_metrics.align_inverse_depth``) and scored on the valid GT pixels. Skipped with ``limit`` (tests).

``details`` holds every metric flat: ``test_<metric>`` and ``<scene>_<metric>`` for ``depth_metrics.METRICS``,
plus ``reference_test_<metric>`` / ``reference_<scene>_<metric>`` when a reference engine ran.
"""

from __future__ import annotations

import functools

import numpy as np

from edgecomp.errors import InputError
from edgecomp.eval import Engine, TaskResult, depth_metrics, register_task
from edgecomp.specs import TensorSpec

N_TEST = 200  # rendered test scenes


@functools.lru_cache(maxsize=2)
def _test_split(size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    from edgecomp.zoo.data import depth_scenes

    images, depths = depth_scenes.load("test", n, depth_scenes.SceneConfig(size=size))
    return depth_scenes.normalize(images), depths


def _predict(engine: Engine, name: str, x: np.ndarray) -> np.ndarray:
    """One batch-1 feed [1, 3, S, S] -> depth [S, S]."""
    out = np.asarray(engine({name: x})[0], np.float64)
    if out.size != x.shape[-1] * x.shape[-2]:
        raise InputError(
            f"the model returned {out.shape}, not one depth map of {x.shape[-2:]}",
            hint="depth-scenes expects a model with a single [1, 1, S, S] depth output",
        )
    return out.reshape(x.shape[-2:])


def _test_metrics(engine: Engine, name: str, size: int, n: int) -> dict[str, float]:
    x, d = _test_split(size, n)
    per = [depth_metrics.image_metrics(_predict(engine, name, x[i : i + 1]), d[i]) for i in range(n)]
    return depth_metrics.mean_metrics(per)


def _resize(depth: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.fromarray(depth.astype(np.float32), mode="F").resize((side, side), Image.Resampling.BILINEAR)
    )


def middlebury_metrics(engine: Engine, name: str, size: int) -> dict[str, float]:
    """``<scene>_<metric>`` for every Middlebury scene (aligned, see module docstring)."""
    from edgecomp.zoo.data import middlebury

    out = {}
    for scene_name in middlebury.SCENES:
        scene = middlebury.crop_square(middlebury.load(scene_name))
        pred = _resize(_predict(engine, name, middlebury.model_input(scene, size)), scene.valid.shape[0])
        pred = np.maximum(pred, 1e-6)  # bilinear resize of a positive map stays positive; guard rounding
        aligned = depth_metrics.align_inverse_depth(pred, scene.depth, scene.valid)
        m = depth_metrics.image_metrics(aligned, scene.depth, scene.valid)
        out.update({f"{scene_name}_{k}": v for k, v in m.items()})
    return out


def _all(engine: Engine, name: str, size: int, n: int, middlebury: bool) -> dict[str, float]:
    out = {f"test_{k}": v for k, v in _test_metrics(engine, name, size, n).items()}
    if middlebury:
        out.update(middlebury_metrics(engine, name, size))
    return out


@register_task("depth-scenes")
def depth_scenes_task(
    engine: Engine, reference: Engine | None, inputs: tuple[TensorSpec, ...], limit: int | None
) -> TaskResult:
    spec = inputs[0]
    if len(spec.shape) != 4 or spec.shape[1] != 3 or spec.shape[2] != spec.shape[3]:
        raise InputError(
            f"depth-scenes needs one square RGB input [1, 3, S, S], got {spec.shape}",
            hint="evaluate depth-vit (or a model with its input shape)",
        )
    size, n = spec.shape[2], min(limit or N_TEST, N_TEST)
    details = {k: round(v, 6) for k, v in _all(engine, spec.name, size, n, not limit).items()}
    ref_value = None
    if reference is not None:
        ref = _all(reference, spec.name, size, n, not limit)
        details.update({f"reference_{k}": round(v, 6) for k, v in ref.items()})
        ref_value = ref["test_abs_rel"]
    details["test_scenes"] = n
    return TaskResult(
        "depth-scenes", "abs_rel", details["test_abs_rel"], n, ref_value, higher_is_better=False, details=details
    )
