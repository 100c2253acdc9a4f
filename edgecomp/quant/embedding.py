"""Weight-only int4 (or int8) embedding tables: ``nn.Embedding`` -> ``QuantEmbedding``
(``com.microsoft.GatherBlockQuantized``). 8-bit tables are symmetric, one code per byte with onnxruntime's
default zero point 128: the form of a table shipped on GGUF's Q8_0 grid (``plan.embedding_grid``).

A table ``W [V, D]`` is rounded to nearest (``primitives.rtn``) one token row at a time, in groups of ``G``
consecutive columns (one scale, and a zero point when asymmetric, per row and group). Torch evaluates
``F.embedding`` on the dequantized copy ``weight_dq``; export (legacy ``torch.onnx.export``) emits

    com.microsoft::GatherBlockQuantized(data, indices, scales[, zero_points])
        bits=4, block_size=G, gather_axis=0, quantize_axis=1

with onnxruntime's uint8 layout (``GatherBlockQuantized`` schema and CPU kernel, onnxruntime 1.32):

* ``data``: uint8 ``[V, D/2]``, two codes per byte along D, the LOW nibble holding the even column
  (``primitives.pack_int4``, the MatMulNBits packing);
* ``scales``: float ``[V, D/G]`` (same rank as data, ``D/G`` blocks along the quantize axis);
* ``zero_points``: uint8 ``[V, ceil(D/G / 2)]``, two blocks per byte, low nibble first, each row padded
  on its own; absent when symmetric (onnxruntime then uses 8 = 2^(bits-1) for uint8 data, our symmetric
  zero point);
* ``block_size`` must be a power of two >= 16 (onnxruntime enforces it), so G must be one and divide D.

value = (code - zero_point) * scale, as ``primitives.dequantize_weight``. The packed tensors are plain
tensor attributes (not buffers): the exporter writes them as Constant nodes, never as float initializers,
and ``onnx_export.finalize`` hoists the uint8 ones into initializers. onnxruntime returns zeros for an
out-of-range index (torch raises) and accepts negative indices ``[-V, -1]``.

Call ``quantize_embeddings(module, grid_for)`` to replace tables in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edgecomp.errors import ConfigError
from edgecomp.quant.primitives import WeightGrid, dequantize_weight, pack_int4, pack_int4_padded, rtn, sqnr_db


def embedding_block(grid: WeightGrid, dim: int) -> int:
    """The GatherBlockQuantized ``block_size`` of ``grid`` on a table of width ``dim`` (group 0 = one block
    per row); ConfigError when it is not 4-bit, does not divide ``dim`` or is no power of two >= 16."""
    if grid.bits not in (4, 8) or (grid.bits == 8 and not grid.symmetric):
        raise ConfigError(f"embedding tables are exported at 4 bits or symmetric 8 bits only, not {grid.bits}"
                          f"{'' if grid.symmetric else ' asymmetric'}",
                          hint="use a 4-bit grid for embeddings, or leave the table in fp32")
    if grid.float_zero:
        raise ConfigError("GatherBlockQuantized takes integer zero points only, not a float-zero grid",
                          hint="use an integer-zero 4-bit grid for embeddings")
    block = grid.group_size or dim
    grid.groups(dim)  # raises when the group size does not divide the embedding width
    if block < 16 or block & (block - 1):
        raise ConfigError(f"embedding group size {block} (width {dim}) is no power of two >= 16, which "
                          "onnxruntime's GatherBlockQuantized requires",
                          hint="pick a group size of 16, 32, 64 or 128 that divides the embedding width")
    return block


class QuantEmbedding(nn.Module):
    """``F.embedding(ids, dequant(W_q), padding_idx)``; ``W_q`` int4 (or int8) codes [V, D], grouped along D."""

    def __init__(self, emb: nn.Embedding, grid: WeightGrid):
        super().__init__()
        if emb.max_norm is not None:
            raise ConfigError("an nn.Embedding with max_norm renormalises its table in forward() and cannot be "
                              "quantized", hint="leave this table in fp32")
        self.num_embeddings, self.embedding_dim = emb.num_embeddings, emb.embedding_dim
        self.padding_idx, self.grid = emb.padding_idx, grid
        self.block = embedding_block(grid, self.embedding_dim)
        w = emb.weight.detach().float()  # a copy's source only: the Parameter itself is left untouched
        codes, scale, zero = rtn(w, grid)
        scale, zero = scale.float(), zero.float()
        self.register_buffer("weight_dq", dequantize_weight(codes, scale, zero, grid).float().contiguous())
        self.weight_sqnr_db = sqnr_db(w, self.weight_dq)
        V, groups = codes.shape[0], grid.groups(self.embedding_dim)
        packed = codes.contiguous() if grid.bits == 8 else pack_int4(codes).contiguous()
        ex = {"packed": packed, "scales": scale.reshape(V, groups).contiguous()}
        if not (grid.symmetric or bool(torch.all(zero == 8))):
            ex["zeros"] = pack_int4_padded(zero.round().to(torch.uint8)).contiguous()
        self._export = ex  # plain tensors, kept out of state_dict (see module docstring)
        self.nbytes = sum(int(t.numel() * t.element_size()) for t in ex.values())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return F.embedding(ids, self.weight_dq, self.padding_idx)
        ex = self._export
        return _GatherBlockQuantized.apply(ids, ex["packed"], ex["scales"], ex.get("zeros"), self.weight_dq,
                                           self.block, self.grid.bits)

    def extra_repr(self) -> str:
        kind = "symmetric" if self.grid.symmetric else "asymmetric"
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}, int{self.grid.bits} {kind}, block={self.block}{pad}"


class _GatherBlockQuantized(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids, packed, scales, zeros, weight_dq, block, bits):
        return F.embedding(ids, weight_dq)

    @staticmethod
    def symbolic(g, ids, packed, scales, zeros, weight_dq, block, bits):
        inputs = [packed, ids, scales] + ([] if zeros is None else [zeros])
        out = g.op("com.microsoft::GatherBlockQuantized", *inputs, bits_i=bits, block_size_i=block,
                   gather_axis_i=0, quantize_axis_i=1)
        dim = weight_dq.type().sizes()[-1]
        sizes = ids.type().varyingSizes()  # None for a dynamic axis; None altogether for an unknown rank
        if sizes is not None:  # shapes downstream symbolics (e.g. Reshape, LayerNorm) can rely on
            out.setType(weight_dq.type().with_sizes([*sizes, dim]))
        else:
            out.setType(weight_dq.type().with_sizes(None))
        return out


def quantize_embeddings(module: nn.Module,
                        grid_for: Callable[[str, nn.Embedding], WeightGrid | None]) -> list[dict]:
    """Replace, in place, every ``nn.Embedding`` of ``module`` for which ``grid_for(name, embedding)`` returns a
    grid by a ``QuantEmbedding``; returns one report per replaced table (module order).

    Only exact ``nn.Embedding`` modules are considered (a subclass's forward may do more, e.g. scale the rows).
    ``group`` in the report is the grid's group size (0 = one block per row, as for Linear layers).
    Only the module is swapped: its weight Parameter is neither modified nor detached from other users (a
    tied ``lm_head`` keeps it). An Embedding registered under several names is quantized once (first name)
    and replaced everywhere. ConfigError when a grid cannot be exported (see ``embedding_block``).
    """
    targets: dict[int, tuple[str, nn.Embedding, list[str]]] = {}
    for name, m in module.named_modules(remove_duplicate=False):
        if type(m) is nn.Embedding:  # not subclasses: their forward may do more (e.g. scale the rows)
            if id(m) in targets:
                targets[id(m)][2].append(name)
            else:
                targets[id(m)] = (name, m, [name])
    reports = []
    for name, emb, names in targets.values():
        grid = grid_for(name, emb)
        if grid is None:
            continue
        new = QuantEmbedding(emb, grid).train(emb.training)
        for where in names:
            parent, _, leaf = where.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, new)
        reports.append({"layer": name, "kind": "embedding", "w_bits": grid.bits, "group": grid.group_size,
                        "symmetric": grid.symmetric, "weight_sqnr_db": _db(new.weight_sqnr_db), "bytes": new.nbytes})
    return reports


def _db(v: float) -> float | None:
    return None if math.isinf(v) or math.isnan(v) else round(v, 2)
