"""Fusion for GPU targets: the int4 weight decode goes into the kernel of the matmul that consumes it.

``quant_ops`` imports a 4-bit Linear weight (``MatMulNBits``) as ``dequantize_q4`` (packed uint8 bytes +
scales -> float ``W[K, N]``) followed by ``matmul``. Relax's FuseOps leaves that injective producer out of
the matmul (observed: ``dequantize_q4`` stayed a kernel of its own), so the float weight would be written
to GPU memory on every call and read back: about 8x the bytes of the packed weight. ``decode_matmul()``
groups ``dequantize_q4 -> matmul (-> add bias)`` first (FuseOpsByPattern); FuseTIR then makes one PrimFunc
of each group, which dlight schedules as one kernel (its Matmul rule for token GEMMs, its Reduction rule
for one-row GEMVs, in the builds tried): the kernel reads the packed bytes and unpacks the nibbles itself
(``& 15``, ``>> 4`` in the CUDA source), for the GEMM into shared memory.
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
