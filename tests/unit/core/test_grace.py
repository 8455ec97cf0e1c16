"""The startup grace: right after a start, listed members not heard from yet are tried (with a
token weight) instead of refused, until a heartbeat arrives or the grace ends."""

from __future__ import annotations

from hbfork.core.addresses import parse_endpoint, parse_ip
from hbfork.core.config import loads
from hbfork.core.heartbeat import Heartbeat
from hbfork.core.members import (
    ELIGIBLE,
    GRACE,
    GRACE_WEIGHT,
    IN_ERROR,
    NEVER_SEEN,
    STALE,
    Registry,
    Rules,
)
from hbfork.core.settings import MemberSettings

S = 1_000_000_000
T0 = 5_000 * S
A, B = "10.0.0.1", "10.0.0.2"


def rules(grace: int = 10 * S, **overrides) -> Rules:
    values = dict(max_age=10 * S, forget_after=30 * S, retry=5 * S, discover=False,
                  default_port=80, max_ready=0, require_signature=False, signature_window=10.0,
                  capacity=8, startup_grace=grace)
    values.update(overrides)
    return Rules(**values)


def started(*addresses: str, grace: int = 10 * S, **overrides) -> Registry:
    reg = Registry(rules(grace, **overrides))
    reg.set_static([MemberSettings(address=parse_endpoint(f"{a}:80")) for a in addresses],
                   now=T0)
    reg.start_grace(T0)
    reg.expire(T0)
    return reg


def state(reg: Registry) -> dict[str, tuple[int, str]]:
    return {str(m.ip): (m.weight, m.reason) for m in reg}


def test_listed_members_are_tried_during_the_grace_then_refused() -> None:
    reg = started(A, B)
    assert state(reg) == {A: (GRACE_WEIGHT, GRACE), B: (GRACE_WEIGHT, GRACE)}
    assert reg.next_deadline == T0 + 10 * S  # the end of the grace is a deadline
    reg.expire(T0 + 10 * S - 1)
    assert state(reg)[A] == (GRACE_WEIGHT, GRACE)
    reg.expire(T0 + 10 * S)
    assert state(reg) == {A: (0, NEVER_SEEN), B: (0, NEVER_SEEN)}


def test_a_heartbeat_ends_the_grace_for_its_member_only() -> None:
    reg = started(A, B)
    reg.apply(parse_ip(A), Heartbeat(7, 1, None), T0 + S, 0.0)
    assert state(reg) == {A: (7, ELIGIBLE), B: (GRACE_WEIGHT, GRACE)}
    # A heard-from member goes stale as usual, grace or not.
    reg.expire(T0 + 11 * S)
    assert state(reg) == {A: (0, STALE), B: (0, NEVER_SEEN)}


def test_a_refused_connect_keeps_a_member_out_during_the_grace() -> None:
    reg = started(A, B)
    member = next(m for m in reg if str(m.ip) == A)
    reg.mark_error(member.slot, member.uid, T0 + S)
    assert state(reg)[A] == (0, IN_ERROR)
    reg.expire(T0 + 6 * S)  # retry is 5 s: back in the grace
    assert state(reg)[A] == (GRACE_WEIGHT, GRACE)


def test_grace_zero_is_off_and_discovered_members_get_none() -> None:
    reg = started(A, grace=0)
    assert state(reg) == {A: (0, NEVER_SEEN)}
    reg = started(A, discover=True)
    reg.apply(parse_ip(B), Heartbeat(0, 1, None), T0, 0.0)  # discovered with ready 0
    assert state(reg)[B] == (0, "ready 0")


def test_startup_grace_defaults_to_max_age() -> None:
    text = '[heartbeat]\nmax_age = 4\n{}\n[[member]]\naddress = "10.0.0.1:80"\n'
    assert Rules.from_config(loads(text.format(""))).startup_grace == 4 * S
    assert Rules.from_config(loads(text.format('startup_grace = "max_age"'))) \
        .startup_grace == 4 * S
    assert Rules.from_config(loads(text.format("startup_grace = 0"))).startup_grace == 0
    assert Rules.from_config(loads(text.format("startup_grace = 1.5"))).startup_grace == 1.5 * S
