"""Merge schedules: ToMe's forms, and one-line errors for schedules the model cannot take."""

from __future__ import annotations

import pytest

from edgecomp.errors import ConfigError
from edgecomp.merge import schedule


def test_forms():
    assert schedule.parse("8", 4) == (8, 8, 8, 8)
    assert schedule.parse("16,12", 4) == (16, 12, 0, 0)
    assert schedule.parse("8@-1", 5) == (16, 12, 8, 4, 0)  # ToMe's decreasing schedule
    assert schedule.parse("8@0", 3) == (8, 8, 8)


def test_token_counts_and_limits():
    assert schedule.token_counts((13,) * 12, 197) == tuple(197 - 13 * (i + 1) for i in range(12))
    with pytest.raises(ConfigError, match=r"at layer 5 .* \(at most 4\)"):
        schedule.token_counts((8,) * 6, 50)


@pytest.mark.parametrize("spec", ["x", "8@3", "1,2,3,4,5", "-2"])
def test_bad_schedules(spec):
    with pytest.raises(ConfigError):
        schedule.parse(spec, 4)
