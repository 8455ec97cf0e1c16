"""A member failing its active checks (hbfork.core.hcheck) in the registry: out whatever its
heartbeat says, not usable for sticky sessions, back through the outlier slow start."""

from __future__ import annotations

from hbfork.core.hcheck import CHECK_FAILING, CHECK_PASSING, R_PASSED, R_STATUS, Summary
from hbfork.core.members import CHECK_FAILED, ELIGIBLE, GRACE, evaluate, usable
from hbfork.core.outlier import OutlierSettings
from hbfork.table.layout import REASONS, decode_member, encode_member
from tests.unit.core.test_members import T0, A, B, S, beat, member, registry

FAILING = Summary(CHECK_FAILING, 0, 1, R_STATUS, 500, T0)
PASSING = Summary(CHECK_PASSING, 1, 0, R_PASSED, 200, T0)


def test_failing_checks_hold_a_fresh_member_out():
    reg = registry(f"{A}:80", f"{B}:80")
    beat(reg, A)
    beat(reg, B)
    a = member(reg, f"{A}:80")
    assert a.reason == ELIGIBLE
    assert reg.set_check(a.slot, a.uid, FAILING, T0 + S) is a
    assert a.reason == CHECK_FAILED and a.weight == 0 and not a.usable
    assert not usable(a, T0 + S, reg.rules)
    # Its heartbeats keep coming: it stays out.
    beat(reg, A, now=T0 + 2 * S)
    assert a.reason == CHECK_FAILED
    assert member(reg, f"{B}:80").reason == ELIGIBLE


def test_back_after_passing_through_the_outlier_slow_start():
    reg = registry(f"{A}:80", outlier=OutlierSettings(slow_start=10.0))
    beat(reg, A)
    a = member(reg, f"{A}:80")
    reg.set_check(a.slot, a.uid, FAILING, T0 + S)
    reg.set_check(a.slot, a.uid, PASSING, T0 + 3 * S)
    assert a.reason == ELIGIBLE and a.from_ejection and a.up_since == T0 + 3 * S
    full = a.ready
    weight, _ = evaluate(a, T0 + 4 * S, reg.rules)
    assert 0 < weight < full  # ramping


def test_stale_wins_over_check_failed_and_a_gone_member_is_ignored():
    reg = registry(f"{A}:80")
    beat(reg, A)
    a = member(reg, f"{A}:80")
    reg.set_check(a.slot, a.uid, FAILING, T0)
    reg.expire(T0 + 11 * S)
    assert a.reason == "stale"
    assert reg.set_check(a.slot, a.uid + 99, PASSING, T0) is None


def test_startup_grace_does_not_try_a_member_failing_its_checks():
    reg = registry(f"{A}:80", startup_grace=10 * S)
    reg.start_grace(T0)
    reg.expire(T0)
    a = member(reg, f"{A}:80")
    assert a.reason == GRACE
    reg.set_check(a.slot, a.uid, FAILING, T0 + S)
    assert a.reason == CHECK_FAILED


def test_the_table_keeps_the_reason_index_and_the_summary():
    assert REASONS.index(CHECK_FAILED) == 9  # appended: older indexes keep their meaning
    reg = registry(f"{A}:80")
    beat(reg, A)
    a = member(reg, f"{A}:80")
    reg.set_check(a.slot, a.uid, FAILING, T0)
    record = decode_member(a.slot, encode_member(a))
    assert record is not None and record.reason == CHECK_FAILED and record.check == FAILING


def test_the_weight_word_marks_it_like_an_ejected_member_for_the_panic_rule():
    from hbfork.core.balancer import EJECTED, USABLE, WEIGHT_MASK
    from hbfork.table.table import _word

    reg = registry(f"{A}:80")
    beat(reg, A)
    a = member(reg, f"{A}:80")
    reg.set_check(a.slot, a.uid, FAILING, T0)
    word = _word(a)
    assert word & EJECTED and not word & USABLE and word & WEIGHT_MASK == a.reported > 0
