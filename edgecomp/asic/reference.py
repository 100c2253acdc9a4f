"""The numpy integer reference of one accelerator partition: what the simulator must reproduce bit for bit.

Semantics (``GemmLayer``): x [..., K] f32 -> rows x2 [M, K];
``s = max(max|x2| / qmax, 1e-12)`` per row (f32), ``q = clip(rint(x2 / s), -qmax, qmax)`` (half to even, as the
graph's Div / Round / Clip); per weight group g, ``acc_g = q[:, g] @ (u - z)[:, g]ᵀ`` exactly (int64 here);
``f = sum_g f32(acc_g) * ws[:, g]`` accumulated in f32 in group order (the first group starts the sum);
``y = f * s + b``. No tiling, no packing: an independent statement of the arithmetic.

An activation x activation partition (``MatMulLayer``, the attention products) per leading index:
``qa, sa`` = rows of a quantized as above (unsigned: codes in [0, qmax]); ``qb, sb`` = columns of b (rows of bᵀ);
``y = (f32(qa @ qb) * sb) * sa``.
"""

from __future__ import annotations

import numpy as np

from edgecomp.asic.partition import GemmLayer, MatMulLayer
from edgecomp.errors import InputError

EPS = np.float32(1e-12)


def quantize_rows(x2: np.ndarray, qmax: int, unsigned: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """x2 f32 [M, K] -> (codes int32 [M, K] in [-qmax, qmax], or [0, qmax] when ``unsigned``; scale f32 [M, 1])."""
    s = np.maximum(np.max(np.abs(x2), axis=-1, keepdims=True) / np.float32(qmax), EPS)
    q = np.clip(np.rint(x2 / s), 0 if unsigned else -qmax, qmax).astype(np.int32)
    return q, s.astype(np.float32)


def matmul(layer: MatMulLayer, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y f32 [..., M, N] for a f32 [..., M, K] and b f32 [..., K, N] with the same leading dims."""
    if a.ndim < 2 or b.ndim != a.ndim or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise InputError(f"partition {layer.name}: operands {a.shape} x {b.shape} are no batched matrix product "
                         "with equal leading dims", hint="the accelerator does not broadcast MatMul operands")
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    a3 = np.ascontiguousarray(a, np.float32).reshape(-1, M, K)
    bt3 = np.ascontiguousarray(np.swapaxes(np.asarray(b, np.float32).reshape(-1, K, N), 1, 2))
    y = np.empty((a3.shape[0], M, N), np.float32)
    for i in range(a3.shape[0]):
        qa, sa = quantize_rows(a3[i], layer.qmax_a, layer.unsigned_a)
        qb, sb = quantize_rows(bt3[i], layer.qmax_b)
        acc = qa.astype(np.int64) @ qb.T.astype(np.int64)
        y[i] = (acc.astype(np.float32) * sb[:, 0]) * sa
    return y.reshape(*a.shape[:-1], N)


def gemm(layer: GemmLayer, x: np.ndarray) -> np.ndarray:
    """y for input x [..., K]: [..., N], or [M, N] when ``layer.flat``."""
    K, N, G = layer.K, layer.N, layer.G
    x2 = np.ascontiguousarray(x, np.float32).reshape(-1, K)
    q, s = quantize_rows(x2, layer.qmax)
    z = np.repeat(layer.integer_zeros(), G, axis=1)  # [N, K]
    w = (layer.codes.astype(np.int64) - z).T  # [K, N]
    f = None
    for g in range(K // G):
        acc = q[:, g * G:(g + 1) * G].astype(np.int64) @ w[g * G:(g + 1) * G]
        term = acc.astype(np.float32) * layer.scales[:, g]
        f = term if f is None else f + term
    y = f * s
    if layer.bias is not None:
        y = y + layer.bias
    return y if layer.flat else y.reshape(*x.shape[:-1], N)
