"""The binary-upgrade conversation (hbfork.core.upgrade) and the member hand-over
(Registry.adopt): pure, no processes."""

from __future__ import annotations

import json

import pytest

from hbfork.core import upgrade
from hbfork.core.addresses import parse_endpoint
from hbfork.core.members import DRAINED, ELIGIBLE, IN_ERROR, NEVER_SEEN, STALE
from hbfork.core.upgrade import Hello, Passed
from tests.unit.core.test_members import T0, S, member, registry

HELLO = Hello(parent=42, table="hbfork-42", pidfile="/run/hbfork/hbfork.pid",
              control_socket="/run/hbfork/hbfork.pid.ctl", sockets=(
                  Passed(upgrade.LISTENER, "0.0.0.0:80"), Passed(upgrade.LISTENER, "[::]:80"),
                  Passed(upgrade.STATUS, "127.0.0.1:8081"),
                  Passed(upgrade.HEARTBEAT, "239.0.0.1:27999", "10.0.0.1"),
                  Passed(upgrade.CONTROL, "/run/hbfork/hbfork.pid.ctl")))


def test_a_hello_survives_the_wire() -> None:
    assert upgrade.decode_hello(upgrade.encode_hello(HELLO), 5) == HELLO
    assert HELLO.sockets[1].endpoint == parse_endpoint("[::]:80")


@pytest.mark.parametrize("data, fds, problem", [
    (b"not json", 0, "not JSON"),
    (b"[]", 0, "protocol"),
    (json.dumps({"upgrade": 2}).encode(), 0, "protocol 2 is not 1"),
    (json.dumps({"upgrade": 1, "parent": 1}).encode(), 0, "incomplete"),
    (upgrade.encode_hello(HELLO), 4, "names 5 sockets, 4 were passed"),
    (upgrade.encode_hello(Hello(1, "t", None, None, (Passed("tunnel", "1.2.3.4:5"),))), 1,
     "unknown socket role"),
    (upgrade.encode_hello(Hello(1, "t", None, None, (Passed("listener", "nowhere"),))), 1,
     "no port"),
])
def test_a_hello_this_code_cannot_use_is_refused_with_the_reason(data: bytes, fds: int,
                                                                 problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        upgrade.decode_hello(data, fds)


def test_replies() -> None:
    ready = upgrade.decode_reply(upgrade.encode_ready(1234, "1.2.3", 1700000000.5))
    assert (ready.ok, ready.pid, ready.version, ready.loaded) == (True, 1234, "1.2.3",
                                                                  1700000000.5)
    failed = upgrade.decode_reply(upgrade.encode_failed("configuration error:\n  bad\tkey"))
    assert (failed.ok, failed.reason) == (False, "configuration error: bad key")
    for junk in (b"", b"ready", b"ready x y z", b"hello", b"\xff\xfe"):
        assert not upgrade.decode_reply(junk).ok, junk  # never mistaken for ready


# --- Registry.adopt: the old master's member states, on the same monotonic clock


def test_adopted_state_keeps_a_member_eligible_without_a_heartbeat() -> None:
    reg = registry("10.0.0.1:80", "10.0.0.2:80")
    now = T0 + 5 * S
    reg.adopt(parse_endpoint("10.0.0.1:80"), 7, 2, T0 - 60 * S, T0, 0, False, False, True, now)
    fresh = member(reg, "10.0.0.1:80")
    assert (fresh.reason, fresh.weight, fresh.ready, fresh.last_seen) == (ELIGIBLE, 7, 7, T0)
    assert member(reg, "10.0.0.2:80").reason == NEVER_SEEN  # nothing adopted
    # It goes stale when the old heartbeat is max_age old, as it would have in the old master.
    reg.expire(T0 + 10 * S)
    assert fresh.reason == STALE


def test_adopted_operator_and_error_states() -> None:
    reg = registry("10.0.0.1:80", "10.0.0.2:80")
    reg.adopt(parse_endpoint("10.0.0.1:80"), 7, 2, T0, T0, 0, True, False, False, T0)
    reg.adopt(parse_endpoint("10.0.0.2:80"), 7, 2, T0, T0, T0 + 3 * S, False, False, False, T0)
    assert member(reg, "10.0.0.1:80").reason == DRAINED
    assert member(reg, "10.0.0.2:80").reason == IN_ERROR


def test_newer_news_is_kept_and_unknown_members_are_left_out() -> None:
    reg = registry("10.0.0.1:80")
    target = parse_endpoint("10.0.0.1:80")
    reg.adopt(target, 9, 0, T0, T0 + S, 0, False, False, True, T0 + S)
    reg.adopt(target, 3, 0, T0, T0, 0, False, False, True, T0 + S)  # older copy: ignored
    assert member(reg, "10.0.0.1:80").ready == 9
    assert reg.adopt(parse_endpoint("10.0.0.9:80"), 5, 0, T0, T0, 0, False, False, True,
                     T0) is None  # not configured and not discovering
    discovering = registry(discover=True)
    assert discovering.adopt(parse_endpoint("10.0.0.9:80"), 5, 0, T0, T0, 0, False, False,
                             True, T0) is not None
    assert member(discovering, "10.0.0.9:80").reason == ELIGIBLE


def test_an_eligible_member_does_not_start_a_new_slow_start() -> None:
    reg = registry("10.0.0.1:80", slow_start=30 * S)
    reg.adopt(parse_endpoint("10.0.0.1:80"), 40, 0, T0, T0, 0, False, False, True, T0)
    assert member(reg, "10.0.0.1:80").weight == 40
