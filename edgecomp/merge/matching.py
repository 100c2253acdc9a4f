"""Token-merging plans and the size-weighted merge: pure tensor code, static shapes, exportable to ONNX.

A plan says how one layer reduces ``N`` tokens to ``N - r`` (batch ``B``): output token ``j`` is original
token ``keep[b, j]`` (ascending, so a protected class token at 0 stays at 0) plus the sources merged into
it; source ``src[b, i]`` goes to output position ``dst[b, i]``. Every index tensor has a shape fixed by
``(B, N, r)``, so the exported graph is static. ONNX mapping: ``topk`` -> TopK, ``gather`` ->
GatherElements, ``scatter`` -> ScatterElements, ``scatter_add`` -> ScatterElements(reduction=add)
(``scatter_reduce(mean)`` does not export; we sum then divide).

Planners (the paper's variable names where they have them):

* ``bipartite_plan`` — ToMe: A = even, B = odd tokens; ``S = Â B̂ᵀ`` on the metric (keys averaged over heads),
  the r A-tokens with the highest ``max_b S`` merge into their best B-token; the class token never merges.
* ``complete_graph_plan`` — CrossGET-style: ``S = K̂K̂ᵀ`` over all tokens (diagonal and protected tokens
  excluded), tokens ranked by ``max S``; token i may only pair with tokens ranked after it, so sources and
  destinations are disjoint; importance ``I = K̂ q̂`` against a guide query (the class token's query in our
  single-modality models); the r tokens with the lowest ``I - max_{j ranked after i} S_ij`` are sources,
  each merged into its most similar non-source, with ensemble weights ``w = softmax([I_src, I_dst])``.
* ``random_plan`` / ``pool_plan`` — baselines, data independent: drop r random tokens (seeded), or average
  r adjacent pairs spread evenly over the sequence.

Padding (``pad`` [B, N], 1.0 at padding tokens; text models): a padding token pairs only with padding
(score ``PAD_PAIR``, above every cosine, so padding merges first and changes nothing: it is masked out of
attention and pooling), a real token only with real tokens (mixed pairs score ``NEVER``). Each merged
token keeps its destination's padding flag (``gather_pad``).

``merge_wavg`` applies a plan to features ``x [B, N, C]`` and sizes ``s [B, N, 1]`` (tokens each one stands
for). Plain plans give the size-weighted mean ``Σ s x / Σ s``; CrossGET plans add
``2 w_src s_src x_src + (2 w_dst - 1) s_dst x_dst`` per source into its destination (once per source, as the
reference implementation does), then divide by the summed sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

NEVER = -1.0e4  # added to a cosine score (in [-1, 1]) to exclude a pair; finite, so no inf - inf = NaN
PAD_PAIR = 2.0  # score of a padding-padding pair: above every cosine, so padding merges before real tokens
TIE = 1.0e-6  # index-proportional offset that orders exact ties (mutual best pairs, identical tokens) the
# same way in torch, onnxruntime and TVM; far above their rounding differences (~1e-7), far below real gaps


def _untie(x: Tensor) -> Tensor:
    """x - TIE * index along the last axis: among equal values the lower index wins, in every runtime."""
    return x - TIE * torch.arange(x.shape[-1], dtype=x.dtype)


@dataclass(frozen=True)
class MergePlan:
    keep: Tensor  # int64 [B, N - r], ascending original indices of the output tokens
    src: Tensor  # int64 [B, r], original indices of the merged-away tokens
    dst: Tensor  # int64 [B, r], output position each source goes to
    w_src: Tensor | None = None  # [B, r] CrossGET ensemble weights (None: size-weighted mean)
    w_dst: Tensor | None = None
    drop: bool = False  # sources are discarded, not merged (the random-drop baseline)


def _rows(t: Tensor, idx: Tensor) -> Tensor:
    """t [B, N, C] gathered at idx [B, M] along N -> [B, M, C]."""
    return t.gather(1, idx.unsqueeze(-1).expand(idx.shape[0], idx.shape[1], t.shape[-1]))


def _plan_from_sources(src: Tensor, dst_orig: Tensor, N: int) -> tuple[Tensor, Tensor]:
    """(keep, dst positions) for sources ``src`` [B, r] merging into original tokens ``dst_orig`` [B, r].

    Stream compaction, O(N): a non-source's output position is the running count of non-sources before it;
    every token scatters its index to its position, sources to a spare slot N - r that is cut off. (A sort
    of N keys did the same at several times the cost in TVM and onnxruntime.)"""
    B, r = src.shape
    kept = torch.ones(B, N, dtype=torch.int64).scatter(1, src, 0)
    pos = kept.cumsum(1) - 1  # output position of every kept token
    slot = torch.where(kept.bool(), pos, torch.full_like(pos, N - r))
    keep = torch.zeros(B, N - r + 1, dtype=torch.int64).scatter(1, slot, torch.arange(N).expand(B, N))[:, : N - r]
    return keep, pos.gather(1, dst_orig)


def _pad_pairs(scores: Tensor, pad_rows: Tensor, pad_cols: Tensor) -> Tensor:
    """scores [B, I, J] with padding-padding pairs set to PAD_PAIR and real-padding pairs to NEVER."""
    pr, pc = pad_rows.unsqueeze(2), pad_cols.unsqueeze(1)
    both = pr * pc
    return scores * (1.0 - both) + PAD_PAIR * both + NEVER * (pr + pc - 2.0 * both)


def bipartite_plan(metric: Tensor, r: int, protected: int = 1, pad: Tensor | None = None) -> MergePlan:
    """ToMe bipartite soft matching. metric [B, N, C] (keys averaged over heads); the first ``protected``
    tokens (class token) are never sources; ``pad`` [B, N] marks padding (see the module docstring).
    Requires ``r <= (N - protected) // 2``."""
    B, N, _ = metric.shape
    m = metric / metric.norm(dim=-1, keepdim=True)
    a, b = m[:, ::2], m[:, 1::2]
    scores = a @ b.transpose(1, 2)  # [B, NA, NB]
    if pad is not None:
        scores = _pad_pairs(scores, pad[:, ::2], pad[:, 1::2])
    if protected:  # protected A rows (even indices < protected) never merge, protected B columns never receive
        rows = (torch.arange(a.shape[1]) < (protected + 1) // 2).float()
        cols = (torch.arange(b.shape[1]) < protected // 2).float()
        scores = scores + NEVER * torch.clamp(rows.unsqueeze(1) + cols.unsqueeze(0), max=1.0)
    node_max, node_idx = _untie(scores).max(dim=-1)  # [B, NA]
    src_a = _untie(node_max).topk(r, dim=1).indices  # [B, r] indices into A
    src = src_a * 2
    dst_orig = node_idx.gather(1, src_a) * 2 + 1
    keep, dst = _plan_from_sources(src, dst_orig, N)
    return MergePlan(keep, src, dst)


def complete_graph_plan(keys: Tensor, query: Tensor, r: int, protected: int = 1,
                        pad: Tensor | None = None) -> MergePlan:
    """CrossGET complete-graph soft matching guided by ``query``. keys [B, N, C] (full width), query [B, C];
    ``pad`` [B, N] marks padding, which also gets the lowest importance (-PAD_PAIR), so it goes first."""
    B, N, _ = keys.shape
    k = keys / keys.norm(dim=-1, keepdim=True)
    q = query / query.norm(dim=-1, keepdim=True)
    ar = torch.arange(N)
    excluded = (ar.unsqueeze(1) == ar.unsqueeze(0)) | (ar < protected).unsqueeze(1) | (ar < protected).unsqueeze(0)
    S = k @ k.transpose(1, 2)
    importance = (k @ q.unsqueeze(-1)).squeeze(-1)  # I [B, N]
    if pad is not None:
        S = _pad_pairs(S, pad, pad)
        importance = importance * (1.0 - pad) - PAD_PAIR * pad
    S = S + NEVER * excluded.float()  # [B, N, N]: no self pairs, no protected tokens
    order = _untie(S.max(dim=-1).values).topk(N, dim=1).indices  # tokens by their best similarity, descending
    rank = torch.zeros(B, N, dtype=torch.int64).scatter(1, order, torch.arange(N).expand(B, N))
    later = rank.unsqueeze(1) > rank.unsqueeze(2)  # [b, i, j]: token j ranked after token i
    best_later = torch.where(later, S, torch.full_like(S, NEVER)).max(dim=-1).values
    src = _untie(best_later - importance).topk(r, dim=1).indices  # lowest I - max S: redundant, unimportant
    is_src = torch.zeros(B, N).scatter(1, src, 1.0)
    S_dst = S + is_src.unsqueeze(1) * NEVER  # destinations: non-sources only
    dst_orig = _untie(S_dst.gather(1, src.unsqueeze(-1).expand(B, r, N))).argmax(dim=-1)  # [B, r]
    keep, dst = _plan_from_sources(src, dst_orig, N)
    w_src = torch.sigmoid(importance.gather(1, src) - importance.gather(1, dst_orig))  # softmax of two
    return MergePlan(keep, src, dst, w_src, 1.0 - w_src)


def random_plan(B: int, N: int, r: int, seed: int, protected: int = 1, pad: Tensor | None = None) -> MergePlan:
    """Drop r random non-protected tokens (fixed at build: a seeded, data-independent choice; drawn with numpy so
    that export records the indices as constants, not a random op). With ``pad`` [B, N], padding is dropped
    first and the random order (still fixed at build) picks among the real tokens."""
    if pad is None:
        chosen = np.sort(np.random.default_rng(seed).permutation(int(N) - protected)[:r]) + protected
        src = torch.tensor(chosen, dtype=torch.int64).expand(B, r)
    else:
        u = np.random.default_rng(seed).random(int(N)).astype(np.float32)
        u[:protected] = NEVER  # in numpy: an in-place write on a traced constant does not export
        u = torch.from_numpy(u)
        src = (u + PAD_PAIR * pad).topk(r, dim=1).indices
    keep, dst = _plan_from_sources(src, torch.zeros_like(src), N)
    return MergePlan(keep, src, dst, drop=True)


def _radical_inverse(n: int) -> np.ndarray:
    """Base-2 radical inverse of 0..n-1: any prefix of the ascending order is spread evenly over 0..n-1."""
    bits = max(1, int(n - 1).bit_length())
    j = np.arange(n)
    return np.array([int(format(v, f"0{bits}b")[::-1], 2) for v in j], dtype=np.float32) / 2.0**bits


def pool_plan(B: int, N: int, r: int, protected: int = 1, pad: Tensor | None = None) -> MergePlan:
    """Average r adjacent pairs (protected + 2j, protected + 2j + 1), the j spread evenly over the sequence.
    With ``pad`` [B, N]: padding pairs first, then real pairs in an evenly spreading order (radical inverse);
    mixed real/padding pairs only when r leaves no other choice (r = every pair)."""
    pairs = (N - protected) // 2
    if pad is None:
        j = torch.linspace(0, pairs - 1, r).round().long() if r > 1 else torch.tensor([pairs // 2])
        src = (protected + 2 * j + 1).expand(B, r)
    else:
        first = protected + 2 * torch.arange(pairs)
        p0, p1 = pad[:, first], pad[:, first + 1]
        both = p0 * p1
        spread = 1.0 - torch.from_numpy(_radical_inverse(pairs))  # in (0, 1]
        priority = spread + PAD_PAIR * both + NEVER * (p0 + p1 - 2.0 * both)
        src = first[priority.topk(r, dim=1).indices] + 1
    keep, dst = _plan_from_sources(src, src - 1, N)
    return MergePlan(keep, src, dst)


def merge_wavg(plan: MergePlan, x: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
    """Apply ``plan``: x [B, N, C], size [B, N, 1] -> (x [B, N - r, C], size [B, N - r, 1])."""
    if plan.drop:
        return _rows(x, plan.keep), _rows(size, plan.keep)
    xs = x * size
    out, s_out = _rows(xs, plan.keep), _rows(size, plan.keep)
    add = _rows(xs, plan.src)
    if plan.w_src is not None:
        add = 2 * plan.w_src.unsqueeze(-1) * add + (2 * plan.w_dst.unsqueeze(-1) - 1) * _rows(out, plan.dst)
    C = x.shape[-1]
    out = out.scatter_add(1, plan.dst.unsqueeze(-1).expand(plan.dst.shape[0], plan.dst.shape[1], C), add)
    s_out = s_out.scatter_add(1, plan.dst.unsqueeze(-1), _rows(size, plan.src))
    return out / s_out, s_out


def gather_pad(plan: MergePlan, pad: Tensor) -> Tensor:
    """pad [B, N] -> [B, N - r]: each output token keeps its own (destination's) padding flag."""
    return pad.gather(1, plan.keep)


def track_sources(plan: MergePlan, source_map: Tensor) -> Tensor:
    """source_map [B, N0]: output position of every original token before this layer -> after it
    (dropped tokens point at position 0, the class token)."""
    B, N = source_map.shape[0], plan.keep.shape[1] + plan.src.shape[1]
    pos = torch.zeros(B, N, dtype=torch.int64).scatter(1, plan.keep, torch.arange(plan.keep.shape[1]).expand_as(
        plan.keep))
    pos = pos.scatter(1, plan.src, torch.zeros_like(plan.dst) if plan.drop else plan.dst)
    return pos.gather(1, source_map)


def unmerge(x: Tensor, source_map: Tensor) -> Tensor:
    """Tokens back on the original grid: x [B, N', C], source_map [B, N0] -> [B, N0, C] (every original
    token reads the merged token it ended up in)."""
    return _rows(x, source_map)
