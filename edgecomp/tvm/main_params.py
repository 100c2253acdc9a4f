"""main's weight parameters: the arrays bound to them, and main rebuilt over a new body.

Lowering keeps weights as runtime parameters of ``main(*inputs, *params)`` (``num_input`` inputs first),
their numpy values in a list in the same order. Passes that compute new parameters at build
(``channels_last``'s folded layouts, ``prepack``'s panels) rewrite main's body and hand it here.
"""

from __future__ import annotations

import numpy as np


def bound(mod, params: list[np.ndarray]) -> dict:
    """{parameter var: its array} for main's parameters after its inputs."""
    main = mod["main"]
    return dict(zip(main.params[int(main.attrs["num_input"]):], params, strict=True))


def rebuild(mod, body, values: dict, added: dict):
    """(mod with main's body replaced by ``body``, params): main keeps its inputs, then the parameters of
    ``values`` that ``body`` still reads, then those of ``added`` (new vars -> arrays) it reads."""
    from tvm import relax

    main = mod["main"]
    used = set(relax.analysis.free_vars(body))
    kept = [(p, a) for p, a in (*values.items(), *added.items()) if p in used]
    inputs = main.params[: int(main.attrs["num_input"])]
    mod = mod.clone()
    mod["main"] = relax.Function([*inputs, *(p for p, _ in kept)], body, main.ret_ty, main.is_pure, main.attrs)
    return mod, [a for _, a in kept]
