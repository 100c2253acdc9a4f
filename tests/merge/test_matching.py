"""Merge plans and the size-weighted merge (edgecomp.merge.matching) on small random inputs."""

from __future__ import annotations

import pytest
import torch

from edgecomp.merge import matching


def _check_plan(plan: matching.MergePlan, N: int, r: int, protected: int = 1):
    B = plan.keep.shape[0]
    assert plan.keep.shape == (B, N - r) and plan.src.shape == plan.dst.shape == (B, r)
    for b in range(B):
        keep, src = plan.keep[b].tolist(), plan.src[b].tolist()
        assert keep == sorted(keep) and set(keep).isdisjoint(src) and len(set(keep) | set(src)) == N
        assert all(s >= protected for s in src), "a protected token was merged away"
        assert keep[:protected] == list(range(protected))
        assert all(0 <= d < N - r for d in plan.dst[b].tolist())


def test_bipartite_plan_is_tome():
    torch.manual_seed(0)
    metric = torch.randn(2, 21, 8)
    plan = matching.bipartite_plan(metric, r=5)
    _check_plan(plan, 21, 5)
    m = metric / metric.norm(dim=-1, keepdim=True)
    for b in range(2):
        src = plan.src[b].tolist()
        assert all(s % 2 == 0 for s in src), "ToMe sources come from set A (even indices)"
        scores = m[b, ::2] @ m[b, 1::2].T
        scores[0] = -1e9  # the class token
        best, arg = scores.max(-1)
        expected = sorted(best.topk(5).indices.mul(2).tolist())
        assert sorted(src) == expected
        for s, d in zip(src, plan.dst[b].tolist(), strict=True):
            assert plan.keep[b, d].item() == arg[s // 2].item() * 2 + 1  # merged into its best B token


def test_complete_graph_plan_sources_and_destinations_are_disjoint():
    torch.manual_seed(1)
    keys, query = torch.randn(3, 17, 12), torch.randn(3, 12)
    plan = matching.complete_graph_plan(keys, query, r=6)
    _check_plan(plan, 17, 6)
    assert torch.allclose(plan.w_src + plan.w_dst, torch.ones(3, 6))


@pytest.mark.parametrize("planner", ["bipartite", "complete", "pool"])
def test_merge_preserves_mass_and_size(planner):
    """Σ size·x and Σ size are invariant under a plain merge; equal ensemble weights are the same merge."""
    torch.manual_seed(2)
    B, N, C, r = 2, 15, 6, 4
    x, size = torch.randn(B, N, C), torch.randint(1, 4, (B, N, 1)).float()
    if planner == "bipartite":
        plan = matching.bipartite_plan(torch.randn(B, N, C), r)
    elif planner == "complete":
        p = matching.complete_graph_plan(torch.randn(B, N, C), torch.randn(B, C), r)
        plan = matching.MergePlan(p.keep, p.src, p.dst, torch.full((B, r), 0.5), torch.full((B, r), 0.5))
    else:
        plan = matching.pool_plan(B, N, r)
    y, s = matching.merge_wavg(plan, x, size)
    assert y.shape == (B, N - r, C) and s.shape == (B, N - r, 1)
    torch.testing.assert_close((y * s).sum(1), (x * size).sum(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s.sum(1), size.sum(1))


def test_random_drop_keeps_the_rest_untouched():
    B, N, r = 2, 11, 3
    x = torch.randn(B, N, 4)
    plan = matching.random_plan(B, N, r, seed=0)
    _check_plan(plan, N, r)
    y, s = matching.merge_wavg(plan, x, torch.ones(B, N, 1))
    torch.testing.assert_close(y, x.gather(1, plan.keep.unsqueeze(-1).expand(B, N - r, 4)))
    assert torch.equal(s, torch.ones(B, N - r, 1))


def test_unmerge_puts_every_token_where_it_went():
    torch.manual_seed(3)
    B, N, C = 1, 13, 5
    x, size = torch.randn(B, N, C), torch.ones(B, N, 1)
    sources = torch.arange(N).expand(B, N)
    for r in (3, 2):
        plan = matching.bipartite_plan(torch.randn(B, x.shape[1], C), r)
        x, size = matching.merge_wavg(plan, x, size)
        sources = matching.track_sources(plan, sources)
    full = matching.unmerge(x, sources)
    assert full.shape == (B, N, C)
    # sizes count the original tokens each merged token stands for
    counts = torch.bincount(sources[0], minlength=x.shape[1]).float()
    torch.testing.assert_close(counts, size[0, :, 0])
    assert sources[0, 0].item() == 0  # the class token stays first
