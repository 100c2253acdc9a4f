"""Per-layer merge schedules: how many tokens each block removes, fixed at build so every shape is static.

Forms (ToMe's ``parse_r``): ``"8"`` removes 8 per layer; ``"8@-1"`` is ``(r, inflect)``, a linear ramp from
``r (1 - inflect)`` to ``2r - r (1 - inflect)`` (``@-1``: 2r at the first layer down to 0 at the last);
``"16,12,8"`` lists layers explicitly (missing trailing layers merge nothing). Unlike ToMe, a layer asked
for more than half of its mergeable tokens is an error, not silently clamped: the user chose the schedule.
"""

from __future__ import annotations

from edgecomp.errors import ConfigError


def parse(spec: str, depth: int) -> tuple[int, ...]:
    """``spec`` -> r per layer (length ``depth``)."""
    spec = spec.strip()
    try:
        if "@" in spec:
            r_text, inflect_text = spec.split("@", 1)
            r, inflect = int(r_text), float(inflect_text)
            if not -1.0 <= inflect <= 1.0:
                raise ValueError
            lo = int(r * (1.0 - inflect))
            hi = 2 * r - lo
            step = (hi - lo) / (depth - 1) if depth > 1 else 0.0
            values = [int(lo + step * i) for i in range(depth)]
        elif "," in spec:
            values = [int(v) for v in spec.split(",")]
        else:
            values = [int(spec)] * depth
    except ValueError:
        raise ConfigError(f"cannot read merge schedule {spec!r}", hint="an int (8), r@inflect (8@-1, inflect "
                          "in [-1, 1]) or one int per layer (16,12,8)") from None
    if len(values) > depth:
        raise ConfigError(f"merge schedule has {len(values)} layers but the model has {depth}",
                          hint=f"give at most {depth} values")
    if any(v < 0 for v in values):
        raise ConfigError(f"merge schedule {spec!r} has a negative r", hint="r counts tokens removed per layer")
    return tuple(values + [0] * (depth - len(values)))


def token_counts(schedule: tuple[int, ...], tokens: int, protected: int = 1) -> tuple[int, ...]:
    """Tokens entering each layer's MLP (after that layer's merge), checking each r against what remains:
    at most half of the mergeable (non-protected) tokens per layer."""
    counts, t = [], tokens
    for layer, r in enumerate(schedule):
        limit = (t - protected) // 2
        if r > limit:
            raise ConfigError(f"merge schedule removes {r} tokens at layer {layer} where {t - protected} "
                              f"mergeable tokens remain (at most {limit})",
                              hint="lower r, or use a decreasing schedule such as r@-1")
        t -= r
        counts.append(t)
    return tuple(counts)
