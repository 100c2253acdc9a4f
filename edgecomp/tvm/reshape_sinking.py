"""Move reshapes below elementwise ops, so an activation fuses into the GEMM before it.

TVM's ONNX importer runs a MatMul on ``[1, N, C]`` as a 2-D ``matmul`` (+ bias) and reshapes the result back
to 3-D; a GELU after it then reads ``reshape(matmul + bias)``. Relax's FuseOps puts elementwise consumers
into a matmul's function but not a reshape (an injective op), so GELU became a function of its own: one more
parallel pass over ``N x 4C`` values (vit-s16: 0.86 ms of ~50). Elementwise ops commute with a reshape, so

    f(reshape(x, s))                    -> reshape(f(x), s)
    f(reshape(x, s), c)  (c: 0-d, or 1-d along an unchanged last axis)
                                        -> reshape(f(x, c), s)
    f(reshape(x, s), r)  (r of shape s; s only adds leading unit dims to x's shape: a residual)
                                        -> reshape(f(x, reshape(r, shape of x)), s)
    f(reshape(x, s), reshape(y, s))     -> reshape(f(x, y), s)      (x, y of one shape)
    reshape(reshape(x, s1), s2)         -> reshape(x, s2);  reshape(x, shape of x) -> x

leave the activation (and a residual add) next to its matmul and the reshape after it (a free view in the VM,
or gone).
"""

from __future__ import annotations

import math

UNARY = ("relax.erf", "relax.tanh", "relax.exp", "relax.sigmoid", "relax.sqrt", "relax.rsqrt",
         "relax.negative", "relax.nn.relu", "relax.nn.gelu", "relax.nn.gelu_tanh", "relax.nn.silu")
BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum", "relax.minimum")


def _shape(expr):
    from edgecomp.tvm.quant_ops import _static_shape

    return _static_shape(expr)


def _commutes(x_shape, new_shape, other) -> bool:
    """Whether ``other`` broadcasts the same way against ``x_shape`` and the reshaped ``new_shape``."""
    s = _shape(other)
    if s is None or x_shape is None:
        return False
    return s == () or (len(s) == 1 and x_shape[-1] == new_shape[-1] == s[0])


def sink(mod, max_rounds: int = 16):
    """``mod`` with the rewrites above applied to ``main`` until none applies."""
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    x, y, c, s, s2 = wildcard(), wildcard(), wildcard(), wildcard(), wildcard()
    reshape_x = is_op("relax.reshape")(x, s)
    reshape_y = is_op("relax.reshape")(y, s2)

    def either(patterns):
        out = patterns[0]
        for p in patterns[1:]:
            out = out | p
        return out

    def unary(call, m):
        return relax.op.reshape(relax.Call(call.op, [m[x]], call.attrs), m[s])

    def with_const(first: bool):
        """The rewriter for ``f(reshape(x), c)`` (``first``) or ``f(c, reshape(x))``. (The pattern matcher may
        swap the operands of add and multiply, which are commutative; the order it keeps for subtract, divide,
        maximum and minimum is the call's.)"""

        def rewrite(call, m):
            other = m[c]
            src_shape, out_shape = _shape(m[x]), _shape(call)
            if not _commutes(src_shape, out_shape, other):
                # a full-size operand (a residual) is reshaped too, but only where the reshape undoes a flatten
                # (adds leading dims): the other direction would undo this rewrite
                if src_shape is None or _shape(other) != out_shape or len(out_shape) <= len(src_shape) \
                        or math.prod(out_shape[: len(out_shape) - len(src_shape)]) != 1:
                    return call
                other = relax.op.reshape(other, src_shape)
            args = [m[x], other] if first else [other, m[x]]
            return relax.op.reshape(relax.Call(call.op, args, call.attrs), m[s])

        return rewrite

    def with_reshape(call, m):
        if _shape(m[x]) is None or _shape(m[x]) != _shape(m[y]) or _shape(call.args[0]) != _shape(call.args[1]):
            return call
        return relax.op.reshape(relax.Call(call.op, [m[x], m[y]], call.attrs), m[s])

    def double(call, m):
        return m[x] if _shape(m[x]) == _shape(call) else relax.op.reshape(m[x], m[s2])

    done = [0]  # rewrites made (a rewriter that returns ``call`` unchanged declined)

    def counted(rewriter):
        def wrapped(call, m):
            out = rewriter(call, m)
            done[0] += not out.same_as(call)
            return out
        return wrapped

    rules = [
        (either([is_op(op)(reshape_x) for op in UNARY]), unary),
        (either([is_op(op)(reshape_x, c) for op in BINARY]), with_const(first=True)),
        (either([is_op(op)(c, reshape_x) for op in BINARY]), with_const(first=False)),
        (either([is_op(op)(reshape_x, reshape_y) for op in BINARY]), with_reshape),
        (is_op("relax.reshape")(reshape_x, s2), double),
    ]
    func = mod["main"]
    for _ in range(max_rounds):
        before = done[0]
        for pattern, rewriter in rules:
            func = rewrite_call(pattern, counted(rewriter), func)
        if done[0] == before:
            break
    mod["main"] = func
    return mod
