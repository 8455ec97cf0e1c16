"""Per-client limits in a session (hbfork.proxy.client_limits) against a fake context: both
HTTP paths answer 429 with Retry-After, and a request the fast path judged and handed over is
never charged twice."""

from __future__ import annotations

import socket

import pytest

from hbfork.core.config import loads
from hbfork.proxy.client_limits import ClientLimits, ClientRate
from hbfork.proxy.http.session import HttpSession
from hbfork.table.client_table import TAT, ClientTable, key_hash
from hbfork.table.layout import WK_LIMITED_REQUESTS
from tests.unit.proxy.fakes import FakeContext, Reader, member
from tests.unit.proxy.test_fast_path import GET, OK, Member, exchange

LIMITS = "[limits]\nrequests_per_second = 0.001\nburst = 2\n"


def limited(ctx: FakeContext) -> memoryview:
    words = memoryview(bytearray(8 * 128)).cast("Q")
    ctx.client_limits = ClientLimits(ctx.config.limits, ClientTable(1024), words)  # type: ignore[assignment]
    return words


@pytest.mark.parametrize("fast_path", [True, False])
def test_over_the_rate_is_answered_429_on_both_paths(fast_path: bool) -> None:
    ctx = FakeContext([member(1)], LIMITS, fast_path=fast_path)
    words = limited(ctx)
    ours, client = socket.socketpair()
    ours.setblocking(False)
    HttpSession(ctx, ours, "198.51.100.7")
    reply = Reader(client)
    serve = Member(ctx, 1, OK, OK, OK)
    for _ in range(2):  # the burst: a dial, then (fast path) a pooled connection
        assert exchange(ctx, client, reply, serve, GET, b"hello").startswith(b"HTTP/1.1 200")
    assert ctx.counts.get("fast_path", 0) == (1 if fast_path else 0)
    for _ in range(2):
        answer = exchange(ctx, client, reply, serve, GET, b"requests\n")
        assert answer.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
        assert b"\r\nRetry-After: " in answer
    assert len(serve.got) == 2  # the member never saw them
    assert words[WK_LIMITED_REQUESTS] == 2


class Ex:
    client_ip = "203.0.113.9"


class Core:
    ex = Ex()


def rate(extra: str = LIMITS) -> tuple[ClientRate, ClientLimits]:
    limits = ClientLimits(loads("[heartbeat]\ndiscover = true\n" + extra).limits,
                          ClientTable(1024), memoryview(bytearray(8 * 128)).cast("Q"))
    made = limits.rate_for(Core())
    assert made is not None
    return made, limits


def tat_of(limits: ClientLimits, key: int) -> int:
    first = (key % limits.table.buckets) * 8 * 4
    for base in range(first, first + 32, 4):
        if limits.table.words[base] == key:
            return int(limits.table.words[base + TAT])
    return 0


def test_a_handed_over_verdict_is_not_charged_again() -> None:
    r, limits = rate()
    key = key_hash(Ex.client_ip)
    assert r.check(GET) == 0
    charged = tat_of(limits, key)
    r.handed_over(0)            # allowed by the fast path, then given to the general path
    assert r.check(GET) == 0    # the general path's check: no second charge
    assert tat_of(limits, key) == charged
    assert r.check(GET) == 0    # the next request is charged (the burst's second)
    assert tat_of(limits, key) > charged
    wait = r.check(GET)
    assert wait >= 1
    r.handed_over(wait)
    assert r.check(GET) == wait  # the general path answers what the fast path found


def test_header_key_and_its_fallback_to_the_address() -> None:
    r, limits = rate(LIMITS + 'key = "header:X-Api-Key"\n')
    with_key = b"GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: k\r\n\r\n"
    assert [r.check(with_key) for _ in range(3)][:2] == [0, 0]
    assert r.check(with_key) >= 1
    assert r.check(GET) == 0 and r.check(GET) == 0 and r.check(GET) >= 1  # by address
    assert tat_of(limits, key_hash(b"\0k")) and tat_of(limits, key_hash(Ex.client_ip))


def test_exempt_address_is_never_charged() -> None:
    r, limits = rate(LIMITS + 'exempt = ["203.0.113.0/24"]\n')
    assert all(r.check(GET) == 0 for _ in range(10))
    assert limits.table.in_use() == 0


def test_connection_admission_and_release() -> None:
    limits = ClientLimits(loads("[heartbeat]\ndiscover = true\n[limits]\n"
                                "connections_per_client = 2\n").limits,
                          ClientTable(1024), memoryview(bytearray(8 * 128)).cast("Q"))

    class S:
        closed = False

    sessions = [S(), S()]
    for s in sessions:
        key = limits.admit("192.0.2.1")
        assert key > 0
        limits.hold(s, key)
    assert limits.admit("192.0.2.1") == -1
    other = limits.admit("192.0.2.2")  # another client
    assert other > 0
    limits.hold(S(), other)
    limits.drop(sessions[0])
    again = limits.admit("192.0.2.1")
    assert again > 0
    limits.hold(S(), again)
    assert limits.table.connections(key_hash("192.0.2.1")) == 2
    handshake = S()
    key = limits.admit("192.0.2.3")
    limits.hold(handshake, key, handshake=True)
    assert limits.table.connections(key) == 1
    handshake.closed = True  # a failed TLS handshake: released by the sweep
    limits.sweep()
    assert limits.handshakes == {} and limits.table.connections(key) == 0
    limits.release_all()  # the worker leaves with sessions still open
    assert limits.held == {} and limits.table.connections(key_hash("192.0.2.1")) == 0
    assert limits.table.connections(key_hash("192.0.2.2")) == 0
