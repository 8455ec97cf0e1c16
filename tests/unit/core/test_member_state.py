"""hbfork.core.member_state: the learned beat interval and the age limit it gives."""

from __future__ import annotations

import pytest

from hbfork.core.member_state import learn_interval
from tests.unit.core.test_members import S, member, registry


@pytest.mark.parametrize(("known", "gap", "learned"), [
    (0, 10 * S, 10 * S),            # the first gap is the estimate
    (10 * S, 10 * S, 10 * S),
    (10 * S, 60 * S, 12_500_000_000),  # missed beats count as two intervals at most
    (4 * S, 0, 4 * S),              # no gap: nothing learned
    (S, 2 * S, 1_250_000_000),
])
def test_learn_interval(known, gap, learned):
    assert learn_interval(known, gap) == learned


@pytest.mark.parametrize(("interval", "limit"), [(0, 10), (S, 10), (3 * S, 10), (5 * S, 15),
                                                 (10 * S, 30), (60 * S, 30)])
def test_age_limit_is_three_beats_between_max_age_and_forget_after(interval, limit):
    reg = registry("10.0.0.1:80")
    m = member(reg, "10.0.0.1:80")
    m.interval = interval
    assert reg.rules.age_limit(m) == limit * S
