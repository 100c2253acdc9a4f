"""Attention -> one fused kernel per layer (Relax, after ONNX import, before legalization).

Finds ``matmul(q, kᵀ) [* scale] [+ bias] -> softmax(axis=-1) -> matmul(p, v)`` in ``main`` and replaces the
chain by a call of the kernel registry's ``attention`` (``kernels/cpu/attention.py``): the scores stay in L1
instead of going through memory three times, and the softmax is no longer three parallel passes of its own.
Every exported transformer in the zoo has this form: ViT (scale folded into q), BERT / MiniLM
(``* scale + mask``), ToMe-merged ViTs (``+ log s``, proportional attention).

A chain is replaced only when its intermediate values have no other reader (otherwise the chain would be
computed twice) and its shapes are static with batch 1; others are reported with the reason. Shapes come from
Relax's struct info, so no extra inference run is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AttentionFusion:
    fused: int = 0
    unfused: dict[str, str] = field(default_factory=dict)  # softmax binding -> why its chain stayed separate


def _shape(expr) -> tuple[int, ...] | None:
    """The static shape of a float32 Relax tensor expression, or None."""
    from edgecomp.tvm.quant_ops import _static_shape

    return _static_shape(expr) if str(getattr(expr.ty, "dtype", "")) == "float32" else None


def _op(call) -> str:
    """The operator name of a Relax call (``relax.matmul``), "" for anything else."""
    import tvm
    from tvm import relax

    return call.op.name if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) else ""


@dataclass(frozen=True)
class _Match:
    q: object
    kt: object
    v: object
    scale: object  # a 0-d tensor, or None
    reciprocal: bool  # the scores were divided by ``scale``
    bias: object  # or None
    problem: object  # kernels.cpu.attention.Attention


def _match(outer, var2val, uses, lanes: int):
    """The chain ending in the call ``outer`` (``matmul(p, v)``) as a _Match, or a string saying why not, or None
    when ``outer`` does not read a softmax at all."""
    from edgecomp._kernels.cpu.attention import Attention

    p, v = outer.args
    soft = var2val.get(p)
    if _op(soft) != "relax.nn.softmax":
        return None
    x = soft.args[0]
    rank = len(_shape(x) or ())
    if int(soft.attrs.axis) not in (-1, rank - 1):
        return f"softmax over axis {int(soft.attrs.axis)}, not the last"
    chain = [p, x]
    bias = scale = None
    reciprocal = False
    node = var2val.get(x)
    if _op(node) == "relax.add":
        a, b = node.args
        a_val = var2val.get(a)
        if _op(a_val) in ("relax.matmul", "relax.multiply", "relax.divide") and _shape(b) is not None:
            x, bias = a, b
        else:
            x, bias = b, a
        chain.append(x)
        node = var2val.get(x)
    if _op(node) in ("relax.multiply", "relax.divide"):
        a, b = node.args
        if _shape(b) == ():
            x, scale = a, b
        elif _shape(a) == () and _op(node) == "relax.multiply":
            x, scale = b, a
        else:
            return "the scores are scaled by a tensor, not a scalar"
        reciprocal = _op(node) == "relax.divide"
        chain.append(x)
        node = var2val.get(x)
    if _op(node) != "relax.matmul":
        return f"softmax input is not q kᵀ (scaled, biased) but {_op(node) or type(node).__name__}"
    shared = [c for c in chain if uses.get(c, 0) != 1]
    if shared:
        return f"{shared[0].name} is read elsewhere too"
    q, kt = node.args
    qs, ks, vs = _shape(q), _shape(kt), _shape(v)
    if qs is None or ks is None or vs is None or len(qs) != 4 or len(ks) != 4 or len(vs) != 4:
        return "not static float32 rank-4 q, kᵀ, v"
    (B, H, N, D), (_, _, _, M), Dv = qs, ks, vs[3]
    if B != 1 or ks != (1, H, D, M) or vs[:3] != (1, H, M):
        return f"q {qs}, kᵀ {ks}, v {vs}: not batch 1 heads-first attention"
    bias_ext = None
    if bias is not None:
        bs = _shape(bias)
        if bs is None or len(bs) > 4 or not bs or bs[-1] != M:
            return f"bias of shape {bs} is not [.., {M}] over the keys"
        bs = (1,) * (4 - len(bs)) + bs
        if bs[0] != 1:
            return f"bias of shape {bs} has a batch"
        bias_ext = bs[1:3]
    problem = Attention(H, N, M, D, Dv, scale=scale is not None, bias=bias_ext, lanes=lanes)
    return _Match(q, kt, v, scale, reciprocal, bias, problem)


def fuse(mod, target):
    """(``mod`` with every fusable attention chain of ``main`` replaced by the registry kernel, AttentionFusion).
    ``target``: an LLVM (CPU) tvm Target."""
    import numpy as np
    from tvm import relax

    from edgecomp._kernels import kernel
    from edgecomp.tvm.cpu_schedule import _vector_lanes
    from edgecomp.tvm.int_fusion import add_kernel

    report = AttentionFusion()
    main = mod["main"]
    var2val = relax.analysis.get_var2val(main)
    uses: dict = {}
    for block in main.body.blocks:
        if isinstance(block, relax.DataflowBlock):
            for var, users in relax.analysis.udchain(block).items():
                uses[var] = len(users)
    lanes = _vector_lanes(target)
    plan = []
    for var, val in var2val.items():
        if _op(val) != "relax.matmul":
            continue
        found = _match(val, var2val, uses, lanes)
        if found is None:
            continue
        if isinstance(found, str):
            report.unfused[var.name] = found
            continue
        why = kernel("attention").legal(found.problem, target)
        if why:
            report.unfused[var.name] = why
            continue
        plan.append((val, found))
    if not plan:
        return mod, report

    @relax.expr_functor.mutator
    class Rewrite(relax.PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.kernels: dict = {}

        def visit_call_(self, call):
            match = next((m for c, m in plan if c.same_as(call)), None)
            if match is None:
                return super().visit_call_(call)
            p = match.problem
            if p not in self.kernels:
                self.kernels[p] = add_kernel(self.builder_, "attention", kernel("attention").build(p, target),
                                             f"attention_{p.H}x{p.N}x{p.M}x{p.D}")
            scale = self.visit_expr(match.scale) if match.scale is not None else relax.const(1.0, "float32")
            if match.reciprocal:
                scale = self.builder_.emit(relax.op.divide(relax.const(1.0, "float32"), scale))
            if match.bias is None:
                bias = relax.const(np.zeros((1, 1, 1, p.M), "float32"))
            else:
                bias = self.visit_expr(match.bias)
                if len(_shape(match.bias)) != 4:
                    bias = self.builder_.emit(relax.op.reshape(bias, (1, *(p.bias or (1, 1)), p.M)))
            report.fused += 1
            return relax.call_tir(self.kernels[p], [self.visit_expr(match.q), self.visit_expr(match.kt),
                                                    self.visit_expr(match.v), scale, bias],
                                  relax.TensorType((1, p.H, p.N, p.Dv), "float32"))

    rewriter = Rewrite(mod)
    gv = mod.get_global_var("main")
    rewriter.builder_.update_func(gv, rewriter.visit_expr(main))
    out = relax.transform.DeadCodeElimination(["main"])(rewriter.builder_.get())
    return out, report
