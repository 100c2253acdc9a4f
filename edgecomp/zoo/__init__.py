"""The model zoo: real pretrained weights from installed packages, plus in-repo trained models.

Each entry says where its weights come from, what its inputs are, where calibration data comes from
(train splits or held-apart text, never evaluation data) and which ``edgecomp eval`` task measures it.
Entries register themselves on import of their module; ``get(name)`` imports them all lazily.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from edgecomp.errors import UnknownModelError
from edgecomp.registry import Registry
from edgecomp.specs import Feeds, TensorSpec

_MODULES = ("vit_fmnist", "vit_s16", "minilm", "smollm2", "efficientnet", "depth_vit")


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model.

    ``load()`` returns an eval-mode fp32 ``torch.nn.Module`` whose ``forward`` takes the ``inputs``
    positionally (static shapes, batch 1) and returns one tensor. ``calibration(n, seed)`` returns
    ``n`` feeds drawn from training / held-apart data. ``task`` names the eval task in
    ``edgecomp.eval``. ``weights`` says honestly what the weights are.
    """

    name: str
    description: str
    family: str  # adapter family: vit | bert | llama | efficientnet
    weights: str  # provenance of the weights, shown by `edgecomp zoo`
    packages: tuple[str, ...]  # pip packages the loader needs (for the "not installed" hint)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    load: Callable[[], object]
    calibration: Callable[[int, int], list[Feeds]]
    task: str
    export_tolerance: float = 1e-4  # max |onnxruntime - torch| accepted by the export check


ZOO: Registry[ZooEntry] = Registry("zoo model", UnknownModelError)
_loaded = False


def _load_all() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for mod in _MODULES:
            importlib.import_module(f"edgecomp.zoo.{mod}")


def get(name: str) -> ZooEntry:
    _load_all()
    return ZOO.get(name)


def names() -> list[str]:
    _load_all()
    return list(ZOO)


def register(entry: ZooEntry) -> ZooEntry:
    ZOO.add(entry.name, entry)
    return entry
