"""hbfork.members: who a heartbeat belongs to, when a member may be picked, and why not.

Time is passed in as integers (monotonic ns); nothing here reads a clock."""

from __future__ import annotations

import pytest

from hbfork.core.addresses import parse_endpoint, parse_ip
from hbfork.core.config import loads
from hbfork.core.errors import HeartbeatError
from hbfork.core.heartbeat import Heartbeat, encode, parse, sign
from hbfork.core.members import (
    DISABLED,
    DRAINED,
    ELIGIBLE,
    IN_ERROR,
    NEVER_SEEN,
    READY_ZERO,
    STALE,
    Change,
    Member,
    Registry,
    Rules,
    evaluate,
)
from hbfork.core.settings import MemberSettings

S = 1_000_000_000
T0 = 5_000 * S          # a monotonic time; never 0, which means "never seen"
WALL = 1_700_000_000.0  # Unix time for signatures
KEY = b"k" * 32
OTHER_KEY = b"o" * 32

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


def rules(**overrides) -> Rules:
    values = dict(max_age=10 * S, forget_after=30 * S, retry=5 * S, discover=False,
                  default_port=80, max_ready=0, require_signature=False, signature_window=10.0,
                  capacity=8)
    values.update(overrides)
    return Rules(**values)


def static(*addresses: str, **settings) -> list[MemberSettings]:
    return [MemberSettings(address=parse_endpoint(a), **settings) for a in addresses]


def registry(*addresses: str, keys: tuple[bytes, ...] = (), settings=None, **overrides) -> Registry:
    """A registry with static members at `addresses`, its setup dirt and changes taken."""
    reg = Registry(rules(**overrides), keys)
    reg.set_static(settings if settings is not None else static(*addresses), now=T0)
    reg.take_dirty()
    reg.take_changes()
    return reg


def hb(ready: int = 5, busy: int = 1, port: int | None = None) -> Heartbeat:
    return Heartbeat(ready, busy, port)


def signed(ready: int = 5, busy: int = 1, port: int | None = None, key: bytes = KEY,
           ts: float = WALL) -> Heartbeat:
    return parse(sign(encode(ready, busy, port), key, ts))


def member(reg: Registry, address: str) -> Member:
    found = reg.find(parse_endpoint(address))
    assert found is not None, address
    return found


def beat(reg: Registry, source: str, heartbeat: Heartbeat | None = None, now: int = T0,
         wall: float = WALL) -> list[Member]:
    return reg.apply(parse_ip(source), heartbeat or hb(), now, wall)


def reason_of(reg: Registry, source: str, heartbeat: Heartbeat, now: int = T0,
              wall: float = WALL) -> str:
    with pytest.raises(HeartbeatError) as info:
        beat(reg, source, heartbeat, now, wall)
    return info.value.reason


def snapshot(reg: Registry) -> list[tuple]:
    return [(m.slot, m.uid, str(m.endpoint), m.static, m.ready, m.busy, m.last_seen,
             m.heartbeats, m.weight, m.reason, m.last_ts) for m in reg]


# --- identity


def test_static_member_is_matched_by_source_ip() -> None:
    reg = registry(f"{A}:8080", f"{B}:8080")
    updated = beat(reg, A, hb(7, 2))
    a, b = member(reg, f"{A}:8080"), member(reg, f"{B}:8080")
    assert updated == [a]
    assert (a.ready, a.busy, a.weight, a.reason, a.heartbeats) == (7, 2, 7, ELIGIBLE, 1)
    assert (a.first_seen, a.last_seen) == (T0, T0)
    assert (b.ready, b.weight, b.reason, b.heartbeats) == (0, 0, NEVER_SEEN, 0)


def test_port_updates_only_the_member_with_that_port() -> None:
    reg = registry(f"{A}:8080", f"{A}:8081")
    assert beat(reg, A, hb(3, port=8081)) == [member(reg, f"{A}:8081")]
    assert member(reg, f"{A}:8081").ready == 3
    assert member(reg, f"{A}:8080").reason == NEVER_SEEN


def test_without_port_every_member_at_that_ip() -> None:
    reg = registry(f"{A}:8080", f"{A}:8081", f"{B}:8080")
    updated = beat(reg, A, hb(4))
    assert sorted(m.port for m in updated) == [8080, 8081]
    assert all(m.ready == 4 and m.reason == ELIGIBLE for m in updated)
    assert member(reg, f"{B}:8080").reason == NEVER_SEEN


def test_ipv6_member() -> None:
    reg = registry("[fd00::1]:8080")
    beat(reg, "fd00::1", hb(2))
    assert member(reg, "[fd00::1]:8080").weight == 2


def test_unknown_source_is_rejected_and_changes_nothing() -> None:
    reg = registry(f"{A}:8080")
    before = snapshot(reg)
    assert reason_of(reg, B, hb()) == "unknown_source"
    assert reason_of(reg, B, hb(port=8080)) == "unknown_source"
    assert snapshot(reg) == before
    assert reg.take_dirty() == [] and reg.take_changes() == []


def test_an_unknown_port_is_matched_by_ip_alone_as_apache_does() -> None:
    """A Tomcat with an HTTP and an AJP connector beats port=8009 by default."""
    reg = registry(f"{A}:8080", f"{B}:8080")
    updated = beat(reg, A, hb(ready=7, port=8009))
    assert [str(m.endpoint) for m in updated] == [f"{A}:8080"]
    assert member(reg, f"{A}:8080").reason == ELIGIBLE
    assert member(reg, f"{B}:8080").reason == NEVER_SEEN
    notes = reg.take_notes()
    assert len(notes) == 1 and "port=8009" in notes[0] and "by IP alone" in notes[0]
    beat(reg, A, hb(ready=7, port=8009))
    assert reg.take_notes() == []  # said once


def test_unknown_port_is_rejected_when_required() -> None:
    reg = registry(f"{A}:8080", f"{A}:8081", require_port_match=True)
    with pytest.raises(HeartbeatError) as info:
        beat(reg, A, hb(port=9000))
    assert info.value.reason == "unknown_port"
    assert "port=9000" in info.value.detail and "8080, 8081" in info.value.detail
    assert all(m.reason == NEVER_SEEN for m in reg)


def test_a_slow_beater_goes_stale_after_about_three_of_its_own_beats() -> None:
    """Tomcat's HeartbeatListener beats every 10 s; max_age is 10 s."""
    reg = registry(f"{A}:80")
    for k in range(4):
        beat(reg, A, now=T0 + k * 10 * S)
    last = T0 + 30 * S
    reg.expire(last + 12 * S)  # one beat late: still in
    assert member(reg, f"{A}:80").reason == ELIGIBLE
    reg.expire(last + 30 * S)  # three missed: stale
    assert member(reg, f"{A}:80").reason == STALE


def test_a_once_a_second_beater_still_goes_stale_at_max_age() -> None:
    reg = registry(f"{A}:80")
    for k in range(5):
        beat(reg, A, now=T0 + k * S)
    reg.expire(T0 + 4 * S + 10 * S)
    assert member(reg, f"{A}:80").reason == STALE


def test_discover_admits_new_senders() -> None:
    reg = registry(discover=True, default_port=8000)
    (first,) = beat(reg, C, hb(3))
    assert (str(first.endpoint), first.static, first.weight) == (f"{C}:8000", False, 3)
    (second,) = beat(reg, C, hb(4, port=9000))
    assert str(second.endpoint) == f"{C}:9000" and second.slot != first.slot
    assert first.ready == 3  # port= updated only the new one
    # without port=, every member at that IP
    assert sorted(m.port for m in beat(reg, C, hb(6))) == [8000, 9000]
    assert first.ready == second.ready == 6
    assert len(list(reg)) == 2


def test_discover_adds_an_unlisted_port_of_a_static_ip() -> None:
    reg = registry(f"{A}:8080", discover=True)
    (new,) = beat(reg, A, hb(port=9000))
    assert not new.static and new.port == 9000
    assert member(reg, f"{A}:8080").reason == NEVER_SEEN


def test_discovered_members_get_the_lowest_free_slots_and_new_uids() -> None:
    reg = registry(f"{A}:80", discover=True)
    slots = [beat(reg, f"10.1.0.{i}")[0].slot for i in range(1, 4)]
    assert slots == [1, 2, 3]
    uids = [m.uid for m in reg]
    assert len(set(uids)) == len(uids) and all(uids)


# --- eligibility and time


def test_staleness_at_exactly_max_age() -> None:
    reg = registry(f"{A}:80")
    beat(reg, A, hb(5), now=T0)
    m = member(reg, f"{A}:80")
    assert evaluate(m, T0 + 10 * S - 1, reg.rules) == (5, ELIGIBLE)
    assert evaluate(m, T0 + 10 * S, reg.rules) == (0, STALE)
    reg.take_dirty()
    reg.take_changes()
    reg.expire(T0 + 10 * S - 1)
    assert (m.weight, m.reason) == (5, ELIGIBLE)
    assert reg.take_dirty() == []
    reg.expire(T0 + 10 * S)
    assert (m.weight, m.reason) == (0, STALE)
    assert reg.take_dirty() == [(m.slot, m)]
    (change,) = reg.take_changes()
    assert (change.member, change.before, change.after) == (m, ELIGIBLE, STALE)
    # a new heartbeat brings it back
    beat(reg, A, hb(5), now=T0 + 11 * S)
    assert (m.weight, m.reason) == (5, ELIGIBLE)


def test_forget_after_removes_discovered_but_not_static() -> None:
    reg = registry(f"{A}:80", discover=True)
    beat(reg, A, now=T0)
    (found,) = beat(reg, B, now=T0)
    reg.take_dirty()
    reg.expire(T0 + 30 * S - 1)
    assert reg.find(found.endpoint) is found
    reg.expire(T0 + 30 * S)
    assert reg.find(found.endpoint) is None
    assert member(reg, f"{A}:80").reason == STALE  # static: stale but kept
    assert (found.slot, None) in reg.take_dirty()
    assert [str(m.endpoint) for m in reg] == [f"{A}:80"]
    # its slot is free again
    (again,) = beat(reg, C, now=T0 + 31 * S)
    assert again.slot == found.slot and again.uid != found.uid


def test_forgetting_a_member_that_still_had_weight_is_a_change() -> None:
    # forget_after == max_age: the member goes from eligible straight to forgotten
    reg = registry(discover=True, max_age=10 * S, forget_after=10 * S)
    (found,) = beat(reg, B, now=T0)
    reg.take_changes()
    reg.expire(T0 + 10 * S)
    assert reg.find(found.endpoint) is None
    assert [(c.before, c.after) for c in reg.take_changes()] == [(ELIGIBLE, "forgotten")]


def test_ready_zero_is_not_eligible() -> None:
    reg = registry(f"{A}:80")
    beat(reg, A, hb(0, 9))
    m = member(reg, f"{A}:80")
    assert (m.weight, m.reason, m.busy) == (0, READY_ZERO, 9)
    beat(reg, A, hb(1, 9), now=T0 + 1)
    assert (m.weight, m.reason) == (1, ELIGIBLE)


def test_mark_error_then_back_after_retry() -> None:
    reg = registry(f"{A}:80", retry=3 * S)
    beat(reg, A, hb(5), now=T0)
    m = member(reg, f"{A}:80")
    reg.take_dirty()
    assert reg.mark_error(m.slot, m.uid, T0 + 1) is m
    assert (m.weight, m.reason, m.errors, m.error_until) == (0, IN_ERROR, 1, T0 + 1 + 3 * S)
    assert reg.take_dirty() == [(m.slot, m)]
    assert reg.next_deadline == T0 + 1 + 3 * S
    # several workers report the same failure: counted once
    assert reg.mark_error(m.slot, m.uid, T0 + 2) is None
    assert m.errors == 1
    # a report about a member that has since left the slot is ignored
    assert reg.mark_error(m.slot, m.uid + 100, T0 + 2) is None
    assert reg.mark_error(7, 1, T0 + 2) is None
    # heartbeats during the error keep it out
    beat(reg, A, hb(5), now=T0 + 2)
    assert m.reason == IN_ERROR
    reg.expire(T0 + 1 + 3 * S - 1)
    assert m.reason == IN_ERROR
    reg.expire(T0 + 1 + 3 * S)
    assert (m.weight, m.reason) == (5, ELIGIBLE)
    # and it can be marked again
    assert reg.mark_error(m.slot, m.uid, T0 + 4 * S) is m and m.errors == 2


def test_retry_zero_never_keeps_a_member_out() -> None:
    reg = registry(f"{A}:80", retry=0)
    beat(reg, A)
    m = member(reg, f"{A}:80")
    reg.mark_error(m.slot, m.uid, T0 + 1)
    assert m.reason == ELIGIBLE


def test_drained_and_disabled() -> None:
    reg = registry(f"{A}:80")
    beat(reg, A, hb(5))
    m = member(reg, f"{A}:80")
    reg.take_dirty()
    reg.set_admin(m, drained=True, now=T0)
    assert (m.weight, m.reason) == (0, DRAINED)
    assert reg.take_dirty() == [(m.slot, m)]
    reg.set_admin(m, disabled=True, now=T0)
    assert m.reason == DISABLED  # disabled outranks drained
    reg.set_admin(m, disabled=False, now=T0)
    assert m.reason == DRAINED
    reg.set_admin(m, drained=False, now=T0)
    assert (m.weight, m.reason) == (5, ELIGIBLE)


def test_member_disabled_in_config_stays_out_until_enabled() -> None:
    reg = registry(settings=static(f"{A}:80", disabled=True))
    m = member(reg, f"{A}:80")
    assert m.disabled and m.reason == DISABLED
    beat(reg, A, hb(5))
    assert (m.weight, m.reason, m.ready) == (0, DISABLED, 5)
    reg.set_admin(m, disabled=False, now=T0 + 1)
    assert (m.weight, m.reason) == (5, ELIGIBLE)


def test_global_max_ready_caps_the_weight() -> None:
    reg = registry(f"{A}:80", f"{B}:80", max_ready=10)
    beat(reg, A, hb(50))
    beat(reg, B, hb(4))
    a, b = member(reg, f"{A}:80"), member(reg, f"{B}:80")
    assert (a.ready, a.weight) == (50, 10)
    assert (b.ready, b.weight) == (4, 4)


def test_member_max_ready_replaces_the_global_cap() -> None:
    settings = [*static(f"{A}:80", max_ready=3), *static(f"{B}:80", max_ready=20),
                *static(f"{C}:80")]
    reg = registry(settings=settings, max_ready=10)
    for source in (A, B, C):
        beat(reg, source, hb(50))
    assert [m.weight for m in reg] == [3, 20, 10]


def test_table_full_refuses_newcomers_and_keeps_members() -> None:
    reg = registry(f"{A}:80", discover=True, capacity=3)
    beat(reg, A)
    beat(reg, B)
    beat(reg, C)
    reg.take_dirty()
    before = snapshot(reg)
    for source, heartbeat in (("10.0.0.4", hb()), (A, hb(port=81))):
        with pytest.raises(HeartbeatError) as info:
            beat(reg, source, heartbeat, now=T0 + 1)
        assert info.value.reason == "table_full"
    assert snapshot(reg) == before
    assert reg.take_dirty() == []
    # members already known still beat
    assert beat(reg, B, hb(9), now=T0 + 2)[0].ready == 9


# --- signatures


def test_require_signature_rejects_unsigned() -> None:
    reg = registry(f"{A}:80", keys=(KEY,), require_signature=True)
    assert reason_of(reg, A, hb()) == "unsigned"
    assert member(reg, f"{A}:80").reason == NEVER_SEEN
    beat(reg, A, signed(7))
    m = member(reg, f"{A}:80")
    assert (m.ready, m.last_ts) == (7, WALL)


def test_replay_is_rejected() -> None:
    reg = registry(f"{A}:80", keys=(KEY,), require_signature=True)
    datagram = signed(7, ts=WALL)
    beat(reg, A, datagram, now=T0)
    assert reason_of(reg, A, datagram, now=T0 + S) == "replay"
    assert reason_of(reg, A, signed(8, ts=WALL - 1), now=T0 + S) == "replay"
    assert member(reg, f"{A}:80").ready == 7
    beat(reg, A, signed(8, ts=WALL + 1), now=T0 + S, wall=WALL + 1)
    assert member(reg, f"{A}:80").ready == 8


def test_wrong_key_and_stale_are_rejected() -> None:
    reg = registry(f"{A}:80", keys=(KEY, OTHER_KEY))
    assert reason_of(reg, A, signed(key=b"x" * 32)) == "bad_signature"
    assert reason_of(reg, A, signed(ts=WALL - 11), wall=WALL) == "stale"
    beat(reg, A, signed(key=OTHER_KEY))  # second key (rotation) is fine
    assert member(reg, f"{A}:80").last_ts == WALL


def test_mixed_signed_and_unsigned_members() -> None:
    settings = [*static(f"{A}:80", require_signature=True), *static(f"{B}:80")]
    reg = registry(settings=settings, keys=(KEY,))
    assert reason_of(reg, A, hb()) == "unsigned"
    beat(reg, A, signed(2))
    beat(reg, B, hb(3))                    # B may beat unsigned...
    beat(reg, B, signed(4, ts=WALL + 1), wall=WALL + 1)  # ...or signed
    assert reason_of(reg, B, signed(5, key=b"x" * 32)) == "bad_signature"  # but never forged
    assert reason_of(reg, B, signed(5, ts=WALL)) == "replay"
    assert [m.ready for m in reg] == [2, 4]


def test_signature_of_a_discovered_sender() -> None:
    reg = registry(discover=True, keys=(KEY,), require_signature=True)
    assert reason_of(reg, C, hb()) == "unsigned"
    assert list(reg) == []
    (new,) = beat(reg, C, signed(3))
    assert new.last_ts == WALL


def test_without_keys_a_signature_is_just_an_unknown_field() -> None:
    reg = registry(f"{A}:80")
    beat(reg, A, signed(3, key=b"anything", ts=99_999_999_999.0))
    m = member(reg, f"{A}:80")
    assert m.ready == 3
    # an unchecked ts must not count as the last accepted one
    assert m.last_ts is None
    reg.reconfigure(reg.rules, static(f"{A}:80"), (KEY,), now=T0 + 1)
    beat(reg, A, signed(4), now=T0 + 2)
    assert m.ready == 4 and m.last_ts == WALL


# --- reload


def test_reconfigure_keeps_the_state_of_members_that_stay() -> None:
    reg = registry(f"{A}:80", f"{B}:80", f"{C}:80")
    for source in (A, B, C):
        beat(reg, source, hb(5), now=T0)
    a = member(reg, f"{A}:80")
    reg.mark_error(a.slot, a.uid, T0 + 1)
    kept = {str(m.endpoint): (m.slot, m.uid, m.ready, m.busy, m.last_seen, m.heartbeats,
                              m.error_until, m.errors) for m in reg}
    reg.take_dirty()
    new_rules = rules(max_age=20 * S, forget_after=40 * S, capacity=99)
    reg.reconfigure(new_rules, [*static(f"{A}:80", lbset=1, name="alpha"), *static(f"{B}:80"),
                                *static("10.0.0.9:80")], (), now=T0 + 2)
    assert reg.rules.max_age == 20 * S
    assert reg.rules.capacity == 8  # the table cannot grow
    for address in (f"{A}:80", f"{B}:80"):
        m = member(reg, address)
        assert (m.slot, m.uid, m.ready, m.busy, m.last_seen, m.heartbeats, m.error_until,
                m.errors) == kept[address]
    a = member(reg, f"{A}:80")
    assert (a.lbset, a.name, a.reason) == (1, "alpha", IN_ERROR)
    assert member(reg, f"{B}:80").reason == ELIGIBLE
    assert reg.find(parse_endpoint(f"{C}:80")) is None  # unlisted, no discovery: removed
    newcomer = member(reg, "10.0.0.9:80")
    assert newcomer.reason == NEVER_SEEN
    # the newcomer reuses the freed slot under a new uid, so workers see a different member
    c_slot, c_uid = kept[f"{C}:80"][:2]
    assert (newcomer.slot, newcomer.uid != c_uid) == (c_slot, True)
    assert dict(reg.take_dirty())[c_slot] is newcomer


def test_reload_with_the_same_config_loses_nobody() -> None:
    reg = registry(f"{A}:80", f"{B}:80", discover=True)
    beat(reg, A, now=T0)
    beat(reg, B, hb(0), now=T0)
    beat(reg, C, now=T0)            # discovered
    beat(reg, C, hb(port=81), now=T0)
    before = snapshot(reg)
    reg.reconfigure(reg.rules, static(f"{A}:80", f"{B}:80"), (), now=T0 + 1)
    assert snapshot(reg) == before


def test_unlisted_static_member_becomes_discovered_when_discovery_is_on() -> None:
    reg = registry(f"{A}:80", f"{B}:80", discover=True)
    beat(reg, A, now=T0)
    reg.reconfigure(reg.rules, static(f"{B}:80"), (), now=T0 + 1)
    a = member(reg, f"{A}:80")
    assert not a.static and a.reason == ELIGIBLE and a.heartbeats == 1
    # and is forgotten in time, like any discovered member
    reg.expire(T0 + 30 * S)
    assert reg.find(parse_endpoint(f"{A}:80")) is None


def test_unlisted_never_seen_member_is_removed_even_with_discovery() -> None:
    reg = registry(f"{A}:80", f"{B}:80", discover=True)
    b_slot = member(reg, f"{B}:80").slot
    reg.reconfigure(reg.rules, static(f"{A}:80"), (), now=T0 + 1)
    assert reg.find(parse_endpoint(f"{B}:80")) is None
    assert (b_slot, None) in reg.take_dirty()


def test_discovered_member_listed_on_reload_becomes_static() -> None:
    reg = registry(discover=True)
    (found,) = beat(reg, C, now=T0)
    reg.reconfigure(reg.rules, static(f"{C}:80"), (), now=T0 + 1)
    assert member(reg, f"{C}:80") is found and found.static
    reg.expire(T0 + 60 * S)
    assert member(reg, f"{C}:80").reason == STALE  # static now: kept


def test_static_member_evicts_the_oldest_discovered_one_when_full() -> None:
    reg = registry(discover=True, capacity=2)
    (old,) = beat(reg, A, now=T0)
    (young,) = beat(reg, B, now=T0 + S)
    reg.reconfigure(reg.rules, static(f"{C}:80"), (), now=T0 + 2 * S)
    assert reg.find(old.endpoint) is None and reg.find(young.endpoint) is young
    assert member(reg, f"{C}:80").slot == old.slot


def test_from_config() -> None:
    cfg = loads("""
[proxy]
retry = 7
[heartbeat]
max_age = 2.5
forget_after = 12
discover = true
default_port = 8000
max_ready = 100
max_members = 16
[[member]]
address = "10.0.0.1"
lbset = 2
name = "one"
""", "/x.toml")
    reg = Registry.from_config(cfg, keys=(KEY,))
    assert reg.rules == Rules(max_age=2_500_000_000, forget_after=12 * S, retry=7 * S,
                              discover=True, default_port=8000, max_ready=100,
                              require_signature=False, signature_window=10.0, capacity=16,
                              startup_grace=2_500_000_000)
    assert reg.keys == (KEY,)
    (m,) = list(reg)
    assert (str(m.endpoint), m.lbset, m.name, m.label, m.static) == ("10.0.0.1:8000", 2, "one",
                                                                      "one", True)


# --- what the master reads back


def test_take_dirty_and_take_changes() -> None:
    reg = Registry(rules(discover=True))
    reg.set_static(static(f"{A}:80", f"{B}:80"), now=T0)
    a, b = member(reg, f"{A}:80"), member(reg, f"{B}:80")
    assert reg.take_dirty() == [(a.slot, a), (b.slot, b)]
    assert reg.take_dirty() == []
    assert reg.take_changes() == []  # never seen -> never seen is no change
    beat(reg, B, hb(3))
    assert reg.take_dirty() == [(b.slot, b)]
    assert reg.take_changes() == [Change(b, NEVER_SEEN, ELIGIBLE)]
    beat(reg, B, hb(4), now=T0 + 1)  # same reason, new numbers: dirty, no change
    assert reg.take_dirty() == [(b.slot, b)]
    assert reg.take_changes() == []
    beat(reg, B, hb(0), now=T0 + 2)
    assert reg.take_dirty() == [(b.slot, b)]
    assert reg.take_changes() == [Change(b, ELIGIBLE, READY_ZERO)]
    (c,) = beat(reg, C, now=T0 + 3)
    assert reg.take_dirty() == [(c.slot, c)]
    assert [(ch.member, ch.after) for ch in reg.take_changes()] == [(c, ELIGIBLE)]


def test_next_deadline() -> None:
    reg = registry(f"{A}:80", f"{B}:80", discover=True, retry=3 * S)
    beat(reg, A, now=T0)
    assert reg.next_deadline == T0 + 10 * S
    beat(reg, B, now=T0 + S)
    assert reg.next_deadline == T0 + 10 * S  # a later heartbeat does not postpone it
    b = member(reg, f"{B}:80")
    reg.mark_error(b.slot, b.uid, T0 + 2 * S)
    assert reg.next_deadline == T0 + 5 * S   # the end of the error comes first
    # early: nothing happens, not even re-evaluation
    b.ready = 0
    reg.expire(T0 + 5 * S - 1)
    assert b.reason == IN_ERROR and reg.next_deadline == T0 + 5 * S
    b.ready = 1
    reg.expire(T0 + 5 * S)
    assert b.reason == ELIGIBLE
    assert reg.next_deadline == T0 + 10 * S  # A goes stale next
    reg.expire(T0 + 10 * S)
    assert member(reg, f"{A}:80").reason == STALE
    assert reg.next_deadline == T0 + 11 * S  # then B
    reg.expire(T0 + 11 * S)
    # both static and stale: the next look is forget_after from now
    assert reg.next_deadline == T0 + 41 * S


def test_next_deadline_includes_forgetting_discovered_members() -> None:
    reg = registry(discover=True)
    beat(reg, C, now=T0)
    reg.expire(T0 + 10 * S)
    assert reg.next_deadline == T0 + 30 * S
    reg.expire(T0 + 30 * S)
    assert list(reg) == []


def test_reload_with_discovery_off_removes_discovered_members():
    from hbfork.core.config import loads
    from hbfork.core.heartbeat import Heartbeat
    from hbfork.core.members import Registry, Rules

    on = loads('[heartbeat]\ndiscover = true\n[[member]]\naddress = "10.0.0.1:80"\n', "c.toml")
    off = loads('[[member]]\naddress = "10.0.0.1:80"\n', "c.toml")
    registry = Registry.from_config(on)
    registry.apply(parse_ip("10.0.0.9"), Heartbeat(5, 0, 80), now=1, wall=0.0)
    assert {str(m.ip) for m in registry} == {"10.0.0.1", "10.0.0.9"}
    registry.reconfigure(Rules.from_config(off), off.members, (), now=2)
    assert {str(m.ip) for m in registry} == {"10.0.0.1"}


def test_reload_applies_a_changed_disabled_flag_but_keeps_operator_state_otherwise():
    from hbfork.core.config import loads
    from hbfork.core.members import Registry, Rules

    enabled = loads('[[member]]\naddress = "10.0.0.1:80"\n', "c.toml")
    disabled = loads('[[member]]\naddress = "10.0.0.1:80"\ndisabled = true\n', "c.toml")
    registry = Registry.from_config(enabled)
    member = next(iter(registry))
    registry.set_admin(member, drained=True, now=1)
    registry.reconfigure(Rules.from_config(enabled), enabled.members, (), now=2)
    assert member.drained and not member.disabled  # unchanged file: operator state kept
    registry.reconfigure(Rules.from_config(disabled), disabled.members, (), now=3)
    assert member.disabled
