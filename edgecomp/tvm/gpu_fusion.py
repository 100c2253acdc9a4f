"""Fusion for GPU targets: the int4 weight decode goes into the kernel of the matmul that consumes it.

``quant_ops`` imports a 4-bit Linear weight (``MatMulNBits``) as ``dequantize_q4`` (packed uint8 bytes +
scales -> float ``W[K, N]``) followed by ``matmul``. Relax's FuseOps never fuses an injective producer
into a matmul, so the float weight would be written to GPU memory on every call and read back: 8x the
bytes of the packed weight. ``decode_matmul()`` groups ``dequantize_q4 -> matmul (-> add bias)`` first
(FuseOpsByPattern); FuseTIR then makes one PrimFunc of each group, in which dlight's Matmul / GEMV rules
inline the decode into the loads of the weight tile: the kernel reads the packed bytes and unpacks the
nibbles in registers / shared memory (``& 15``, ``>> 4`` in the CUDA source).
"""

from __future__ import annotations


def decode_matmul():
    """The pass (run after LegalizeOps + AnnotateTIROpPattern, before FuseOps / FuseTIR)."""
    from tvm.relax.dpl import GlobalVarPattern, wildcard
    from tvm.relax.dpl.pattern import _is_call_tir
    from tvm.relax.transform import FuseOpsByPattern

    # GlobalVarPattern matches names containing the text: dequantize_q4, dequantize_q41, ... (one per shape)
    decode = _is_call_tir(GlobalVarPattern("dequantize_q4"))
    matmul = _is_call_tir(GlobalVarPattern("matmul"), [wildcard(), decode])
    bias = _is_call_tir(GlobalVarPattern("add"), [matmul, wildcard()])
    return FuseOpsByPattern([("edgecomp.q4_matmul_bias", bias), ("edgecomp.q4_matmul", matmul)],
                            bind_constants=False)
