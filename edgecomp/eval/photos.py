"""Tasks on real photos: ``photos-imagenet`` (agreement with the fp32 model) and ``random-weights`` (refuses).

``photos-imagenet`` runs the curated eval pool of ``edgecomp.zoo.data.photos`` (about 26 photos, no
ImageNet-val installs offline) through ``engine`` and ``reference``, each feed {input: float32
[1, 3, S, S]} with S from the input spec, each output logits [1, 1000]. It reports

- value: top-1 agreement, the fraction of photos where engine and reference argmax coincide;
- details: ``top5_agreement`` (reference top-1 inside the engine's top 5), ``mean_kl`` (mean
  KL(softmax(ref) || softmax(engine)), nats), ``hand_top1`` / ``hand_top1_reference`` (accuracy on the
  hand-labelled photos, any accepted label counts; None when ``limit`` leaves none), ``n_hand``, ``n_images``.

Without a reference the engine is its own reference: agreement is 1.0 by definition and only the
hand-label accuracy is measured. With ~13 hand labels that accuracy is anecdotal; agreement is the metric.
"""

from __future__ import annotations

import numpy as np

from edgecomp.errors import ConfigError
from edgecomp.eval import Engine, TaskResult, register_task
from edgecomp.specs import TensorSpec
from edgecomp.zoo.data import photos


def _logits(engine: Engine, name: str, xs: list[np.ndarray]) -> np.ndarray:
    """float64 [N, classes] logits, one batch-1 call per image."""
    return np.stack([np.asarray(engine({name: x})[0], dtype=np.float64).reshape(-1) for x in xs])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _hand_top1(logits: np.ndarray, names: list[str], labels: dict[str, tuple[int, ...]]) -> float | None:
    hits = [int(np.argmax(row)) in labels[n] for row, n in zip(logits, names, strict=True) if n in labels]
    return sum(hits) / len(hits) if hits else None


@register_task("photos-imagenet")
def photos_imagenet(engine: Engine, reference: Engine | None, inputs: tuple[TensorSpec, ...], limit: int | None):
    pool = photos.load("eval")
    if limit:
        pool = pool[:limit]
    spec = inputs[0]
    names = [n for n, _ in pool]
    xs = [photos.preprocess(img, size=spec.shape[-1]) for _, img in pool]
    labels = photos.hand_labels()
    eng = _logits(engine, spec.name, xs)
    details = {"hand_top1": _hand_top1(eng, names, labels), "n_hand": sum(n in labels for n in names),
               "n_images": len(names)}
    if reference is None:
        details["note"] = "no reference given: the engine is the reference itself, agreement is 1.0 by definition"
        return TaskResult("photos-imagenet", "top1_agreement", 1.0, len(names), None, details=details)
    ref = _logits(reference, spec.name, xs)
    ref_top1 = ref.argmax(axis=1)
    top1 = float(np.mean(eng.argmax(axis=1) == ref_top1))
    top5 = np.argsort(-eng, axis=1)[:, :5]
    lp_ref, lp_eng = _log_softmax(ref), _log_softmax(eng)
    details.update(top5_agreement=float(np.mean([t in row for t, row in zip(ref_top1, top5, strict=True)])),
                   mean_kl=float(np.mean(np.sum(np.exp(lp_ref) * (lp_ref - lp_eng), axis=1))),
                   hand_top1_reference=_hand_top1(ref, names, labels))
    return TaskResult("photos-imagenet", "top1_agreement", top1, len(names), 1.0, details=details)


@register_task("random-weights")
def random_weights(engine: Engine, reference: Engine | None, inputs: tuple[TensorSpec, ...], limit: int | None):
    """The task of vit-s16: seeded random weights have no quality metric, so it always raises ConfigError."""
    raise ConfigError("vit-s16 has seeded random weights: it has no quality metric",
                      hint="use it for latency (edgecomp bench); quality numbers come from vit-fmnist")
