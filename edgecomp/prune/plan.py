"""One global ranking of removable units across all layers, cut at a parameter budget (pure, no torch).

A unit is an attention unit (one query head, or under GQA a slice of one head per group) or one MLP
channel, with a score (higher = keep) and a cost (the parameters it removes, biases included). Units
are removed least-important first until the removed cost reaches ``ratio`` of the total, as UPop's
cost-weighted threshold does: the ratio then means parameters, which the paper's unit-count threshold
does not (its α = 4·D_h/3 is exactly a head's cost in MLP channels, so the cost weights generalise it
to each family's real parameter counts). Every layer keeps at least one attention unit and ``multiple``
MLP channels, and each layer's kept channel count is rounded to a multiple of ``multiple`` so the GEMM
widths stay kernel-friendly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Unit:
    layer: int
    kind: str  # "head" | "channel"
    members: tuple[int, ...]  # query heads of the unit, or the one channel index
    score: float  # higher = keep
    cost: int  # parameters removed with it
    removable: bool = True  # False: counts in the total the ratio is taken of, but is never removed


def standardize(units: list[Unit]) -> list[Unit]:
    """Scores z-standardised within each kind over all layers (FLAP / UPop), so kinds compare."""
    out = []
    for kind in sorted({u.kind for u in units}):
        group = [u for u in units if u.kind == kind]
        s = np.array([u.score for u in group], dtype=np.float64)
        mu, sd = s.mean(), s.std()
        z = (s - mu) / (sd if sd > 0 else 1.0)
        out += [replace(u, score=float(v)) for u, v in zip(group, z, strict=True)]
    return out


def select(units: list[Unit], ratio: float, multiple: int = 8,
           uniform: bool = False) -> dict[tuple[int, str], list[Unit]]:
    """The units to remove, keyed by (layer, kind).

    ``units`` lists every unit of every layer (a layer's heads and channels all present); those with
    ``removable=False`` count in the total the ratio is taken of but are never chosen.
    ``uniform``: every layer loses ``ratio`` of its own parameters (ranking within the layer only).
    """
    if uniform:
        removed = {}
        for layer in sorted({u.layer for u in units}):
            removed.update(select([u for u in units if u.layer == layer], ratio, multiple))
        return removed
    total = sum(u.cost for u in units)
    left = defaultdict(int)
    for u in units:
        left[(u.layer, u.kind)] += 1
    floor = {"head": 1, "channel": multiple}
    removed: dict[tuple[int, str], list[Unit]] = defaultdict(list)
    budget = ratio * total
    spent = 0
    # ties broken by layer and member index so the plan is deterministic
    for u in sorted(units, key=lambda u: (u.score, u.layer, u.kind, u.members)):
        if spent >= budget:
            break
        key = (u.layer, u.kind)
        if not u.removable or left[key] <= floor[u.kind]:
            continue
        removed[key].append(u)
        left[key] -= 1
        spent += u.cost
    for key in [k for k in list(left) if k[1] == "channel"]:
        removed[key] = _round_channels(units, key, len(removed[key]), multiple)
    return {k: v for k, v in removed.items() if v}


def _round_channels(units: list[Unit], key: tuple[int, str], n_removed: int, multiple: int) -> list[Unit]:
    """The lowest-scoring channels of one layer, so many that the kept count is the nearest multiple."""
    if n_removed == 0:
        return []
    layer = sorted((u for u in units if (u.layer, u.kind) == key), key=lambda u: (u.score, u.members))
    width = len(layer)
    kept = width - n_removed
    kept = min(width, max(multiple, int(round(kept / multiple)) * multiple)) if width >= multiple else width
    return layer[: width - kept]
