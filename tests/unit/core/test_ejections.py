"""Registry.eject: the master's side of outlier detection (times are monotonic ns)."""

from __future__ import annotations

from hbfork.core.balancer import EJECTED as EJECTED_BIT
from hbfork.core.balancer import USABLE, WEIGHT_MASK
from hbfork.core.members import EJECTED, ELIGIBLE, usable
from hbfork.core.outlier import CAUSE_5XX, OutlierSettings
from tests.unit.core.test_members import T0, A, B, C, S, beat, hb, member, registry


def three(**outlier):
    reg = registry(f"{A}:80", f"{B}:80", f"{C}:80", outlier=OutlierSettings(**outlier))
    for ip in (A, B, C):
        beat(reg, ip, hb(ready=8, busy=0))
    return reg


def eject(reg, address, now=T0):
    m = member(reg, address)
    return reg.eject(m.slot, m.uid, CAUSE_5XX, now, [list(reg.members.values())])


def test_an_ejected_member_is_out_for_eject_time_and_not_usable():
    reg = three()
    done = eject(reg, f"{C}:80")
    c = member(reg, f"{C}:80")
    assert done is not None and not done.refused and done.seconds == 30
    assert (c.reason, c.weight) == (EJECTED, 0)
    assert not usable(c, T0 + S, reg.rules)  # its sticky sessions move too
    for ip in (A, B, C):
        beat(reg, ip, hb(ready=8, busy=0), now=T0 + 29 * S)  # a fresh heartbeat changes nothing
    reg.expire(T0 + 29 * S)
    assert member(reg, f"{C}:80").reason == EJECTED
    for ip in (A, B, C):
        beat(reg, ip, hb(ready=8, busy=0), now=T0 + 30 * S)
    reg.expire(T0 + 30 * S)
    assert member(reg, f"{C}:80").reason == ELIGIBLE


def test_a_second_report_while_out_changes_nothing():
    reg = three()
    eject(reg, f"{C}:80")
    assert eject(reg, f"{C}:80", now=T0 + S) is None
    assert member(reg, f"{C}:80").ejected_total == 1


def test_the_cap_refuses_a_second_member_of_three():
    reg = three(max_ejected_share=0.5)
    assert not eject(reg, f"{B}:80").refused
    done = eject(reg, f"{C}:80")
    assert done is not None and done.refused
    assert member(reg, f"{C}:80").reason == ELIGIBLE


def test_repeats_last_longer_and_the_count_decays():
    reg = three()
    eject(reg, f"{C}:80")
    now = T0 + 31 * S
    for ip in (A, B, C):
        beat(reg, ip, hb(ready=8, busy=0), now=now)
    reg.expire(now)
    assert eject(reg, f"{C}:80", now=now).seconds == 60  # back for 1 s: the second in a row
    later = now + 60 * S + 100 * S  # back 100 s: three eject_times forgive three
    for ip in (A, B, C):
        beat(reg, ip, hb(ready=8, busy=0), now=later)
    reg.expire(later)
    assert eject(reg, f"{C}:80", now=later).seconds == 30


def test_detection_off_ejects_nothing():
    reg = three(enabled=False)
    assert eject(reg, f"{C}:80") is None


def test_the_table_word_keeps_the_reported_weight_for_the_panic_rule():
    from hbfork.table.table import _word
    reg = three()
    eject(reg, f"{C}:80")
    word = _word(member(reg, f"{C}:80"))
    assert word & EJECTED_BIT and not word & USABLE
    assert word & WEIGHT_MASK == 8
    assert not _word(member(reg, f"{A}:80")) & EJECTED_BIT
