"""CPU kernels (LLVM targets)."""

from __future__ import annotations

from .. import KERNELS, Kernel
from . import attention, qgemm, token_merge

KERNELS.add("quantize_rows", Kernel(
    "quantize_rows", "per-token symmetric fake-quant (Abs, ReduceMax, Div, Clip, Div, Round, Clip) feeding qgemm",
    legal=qgemm.legal, build=lambda p, target: qgemm.build_quantize_rows(p)))
KERNELS.add("qgemm", Kernel(
    "qgemm", "fake-quantized activations x int8 DequantizeLinear / int4 MatMulNBits weights (+ bias); "
    "x86 AVX-512 VNNI or aarch64 sdot",
    legal=qgemm.legal,
    build=lambda p, target: qgemm.build_qgemm(p, qgemm.isa_for(target))))
KERNELS.add("token_merge", Kernel(
    "token_merge", "one layer's ToMe bipartite matching + size-weighted merge (the merges.tome<i> scope of the "
    "exported graph: ReduceMean, ReduceL2, MatMul, ArgMax, TopK, CumSum, GatherElements, ScatterElements, ...)",
    legal=token_merge.legal, build=lambda p, target: token_merge.build_token_merge(p)))
KERNELS.add("attention", Kernel(
    "attention", "matmul(q, kᵀ) [* scale] [+ bias] -> softmax -> matmul(p, v), batch 1 float32 (scores kept in L1)",
    legal=attention.legal, build=lambda p, target: attention.build_attention(p)))
