"""Monocular depth metrics and scale-and-shift alignment (pure numpy).

Metrics over the valid pixels of each image, then averaged over images (the usual per-image mean, as in
the KITTI / NYU protocols):

- ``abs_rel`` = mean |p − g| / g
- ``delta1`` / ``delta2`` / ``delta3`` = share of pixels with max(p/g, g/p) < 1.25 / 1.25² / 1.25³
- ``rmse`` = sqrt(mean (p − g)²) (in the units of g)
- ``silog`` = 100 · sqrt(mean e² − (mean e)²), e = ln p − ln g (Eigen et al.'s scale-invariant log error,
  λ = 1: invariant to a global scale of p)

Alignment (for the Middlebury scenes, whose images come from cameras unlike the renderer's): the prediction's
**inverse depth** is fitted to the ground truth's by least squares with a scale and a shift,
``s, t = argmin Σ (s / p + t − 1 / g)²`` over valid pixels (MiDaS' protocol: inverse depth is what stereo
measures, affine in disparity), then ``p' = 1 / max(s / p + t, 1 / cap)``, with ``cap`` the largest valid
ground-truth depth times 10 (an aligned inverse depth at or below zero would be an infinite depth).
"""

from __future__ import annotations

import numpy as np

from edgecomp.errors import InputError

METRICS = ("abs_rel", "delta1", "delta2", "delta3", "rmse", "silog")
LOWER_IS_BETTER = {"abs_rel": True, "delta1": False, "delta2": False, "delta3": False, "rmse": True, "silog": True}


def _check(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    if pred.shape != gt.shape:
        raise InputError(
            f"prediction shape {pred.shape} differs from ground truth {gt.shape}",
            hint="resize the prediction to the ground-truth grid first",
        )
    mask = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    if valid is not None:
        mask &= valid
    if not mask.any():
        raise InputError("no valid ground-truth pixel to evaluate", hint="check the depth map and its mask")
    if (pred[mask] <= 0).any():
        raise InputError("the prediction has depths <= 0 on valid pixels", hint="depth must be positive")
    return mask


def image_metrics(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Metrics of one depth map: pred, gt [H, W] (same units, > 0 where valid), valid [H, W] bool or None."""
    m = _check(np.asarray(pred, np.float64), np.asarray(gt, np.float64), valid)
    p, g = np.asarray(pred, np.float64)[m], np.asarray(gt, np.float64)[m]
    ratio = np.maximum(p / g, g / p)
    e = np.log(p) - np.log(g)
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "rmse": float(np.sqrt(np.mean((p - g) ** 2))),
        "silog": float(100 * np.sqrt(max(np.mean(e**2) - np.mean(e) ** 2, 0.0))),
    }


def mean_metrics(per_image: list[dict[str, float]]) -> dict[str, float]:
    """Per-image metrics averaged over images."""
    if not per_image:
        raise InputError("no image to average metrics over", hint="evaluate at least one image")
    return {k: float(np.mean([m[k] for m in per_image])) for k in METRICS}


def align_inverse_depth(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """``pred`` [H, W] depth -> depth whose inverse is least-squares scale-and-shift fitted to 1 / gt on the
    valid pixels (see module docstring). Returns float64 [H, W]."""
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    m = _check(pred, gt, valid)
    x, y = 1.0 / pred[m], 1.0 / gt[m]
    A = np.stack([x, np.ones_like(x)], axis=1)
    (s, t), *_ = np.linalg.lstsq(A, y, rcond=None)
    cap = 10.0 * gt[m].max()
    return 1.0 / np.maximum(s / pred + t, 1.0 / cap)
