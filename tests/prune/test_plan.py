"""The global ranking: cost budget, per-layer floors, width rounding, uniform allocation."""

from __future__ import annotations

from edgecomp.prune.plan import Unit, select, standardize


def _units(layers=2, heads=4, channels=32, head_cost=100, channel_cost=10):
    out = []
    for L in range(layers):
        out += [Unit(L, "head", (h,), float(h + L), head_cost) for h in range(heads)]
        out += [Unit(L, "channel", (c,), c / channels + L, channel_cost) for c in range(channels)]
    return out


def _cost(removed):
    return sum(u.cost for us in removed.values() for u in us)


def test_removes_lowest_scores_until_the_budget():
    units = _units()
    total = sum(u.cost for u in units)
    removed = select(units, 0.3, multiple=1)
    assert 0.3 * total <= _cost(removed) < 0.3 * total + 100
    worst = min(u.score for us in removed.values() for u in us)
    kept_best = max(u.score for u in units if all(u not in us for us in removed.values()))
    assert worst <= kept_best


def test_every_layer_keeps_a_head_and_whole_multiples_of_channels():
    removed = select(_units(), 0.9, multiple=8)
    for L in range(2):
        assert len(removed.get((L, "head"), [])) <= 3
        kept = 32 - len(removed.get((L, "channel"), []))
        assert kept >= 8 and kept % 8 == 0
        # the removed channels are that layer's lowest-scoring ones
        gone = {u.members[0] for u in removed.get((L, "channel"), [])}
        assert gone == set(range(len(gone)))


def test_uniform_allocation_prunes_every_layer_alike():
    units = [Unit(L, "channel", (c,), float(c) + 100 * L, 1) for L in range(3) for c in range(16)]
    removed = select(units, 0.5, multiple=1, uniform=True)
    assert [len(removed[(L, "channel")]) for L in range(3)] == [8, 8, 8]
    # global: the lowest scores first; layer 0 keeps its floor of one channel
    assert {k: len(v) for k, v in select(units, 0.5, multiple=1).items()} == {(0, "channel"): 15, (1, "channel"): 9}


def test_standardize_makes_kinds_comparable():
    z = standardize(_units(layers=1))
    for kind in ("head", "channel"):
        s = [u.score for u in z if u.kind == kind]
        assert abs(sum(s) / len(s)) < 1e-9


def test_units_that_cannot_go_count_in_the_budget_but_stay():
    units = [Unit(u.layer, u.kind, u.members, u.score, u.cost, removable=u.kind != "head") for u in _units()]
    removed = select(units, 0.3, multiple=1)
    total = sum(u.cost for u in units)
    assert not any(kind == "head" for _, kind in removed)
    # 30 % of everything, heads included, comes out of the channels alone
    assert 0.3 * total <= _cost(removed) < 0.3 * total + 10
