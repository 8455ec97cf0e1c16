"""Routes and sticky sessions through a real HttpSession (fake context, socket pairs)."""

from __future__ import annotations

import socket

import pytest

from hbfork.proxy.http.session import HttpSession
from hbfork.proxy.http.state import STICKY_HIT, STICKY_LOST
from tests.unit.proxy.fakes import FakeContext, Reader, member

POOLS = """
[[pool]]
name = "app"
stickysession = "JSESSIONID|jsessionid"
[[pool.member]]
address = "192.0.2.1:8080"
route = "n1"
[[pool.member]]
address = "192.0.2.2:8080"
route = "n2"
[[pool]]
name = "api"
members = ["192.0.2.3:8080"]
[[route]]
path = "/app/static"
pass = false
[[route]]
host = "www.example.com"
path = "/app/"
pool = "app"
strip_prefix = true
reverse = true
[[route]]
path = "/api"
pool = "api"
preserve_host = false
"""
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

# Every test here runs with the fast path on and off: the general path must behave the same.
pytestmark = pytest.mark.usefixtures("both_http_paths")


def start(ctx: FakeContext) -> socket.socket:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    HttpSession(ctx, ours, "198.51.100.7")
    return client


def exchange(ctx: FakeContext, request: bytes, answer: bytes = OK,
             client: socket.socket | None = None) -> tuple[bytes, dict[int, bytes]]:
    """Send `request`; every member that gets a request head answers `answer`. Returns the
    client's bytes and what each member slot received."""
    client = client or start(ctx)
    client.sendall(request)
    got: dict[int, bytes] = {}
    readers: dict[int, Reader] = {}

    def serve() -> None:
        for slot, fake in ctx.members.items():
            if fake.peers and slot not in got:
                reader = readers.setdefault(slot, Reader(fake.peers[-1]))
                if b"\r\n\r\n" in reader.poll():
                    got[slot] = reader.data
                    fake.peers[-1].sendall(answer)

    reply = Reader(client)
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll() and (
        not reply.data.startswith(b"HTTP/1.1 200") or reply.data.endswith(b"ok")), serve=serve)
    return reply.data, got


def context(*members_down: int) -> FakeContext:
    members = [member(1), member(2), member(3)]
    for slot in members_down:
        members[slot - 1].down = True
    return FakeContext(members, POOLS)


def test_a_route_sends_the_rewritten_path_to_its_pool() -> None:
    ctx = context()
    reply, got = exchange(ctx, b"GET /app/a/b?x=1 HTTP/1.1\r\nHost: WWW.example.com.\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200")
    assert list(got) == [1]
    assert got[1].startswith(b"GET /a/b?x=1 HTTP/1.1\r\n")
    assert b"Host: WWW.example.com.\r\n" in got[1]  # preserve_host


def test_preserve_host_false_sends_the_members_address() -> None:
    ctx = context()
    _, got = exchange(ctx, b"GET /api/v1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
    assert got[3].startswith(b"GET /api/v1 HTTP/1.1\r\n")
    assert b"Host: 192.0.2.3:8080\r\n" in got[3]
    assert b"X-Forwarded-Host: api.example.com\r\n" in got[3]


def test_an_exclusion_is_answered_here_and_keeps_the_connection() -> None:
    ctx = context()
    client = start(ctx)
    reply, got = exchange(ctx, b"GET /app/static/x.png HTTP/1.1\r\nHost: h\r\n\r\n",
                          client=client)
    assert reply.startswith(b"HTTP/1.1 404 ") and b"Connection: keep-alive" in reply
    assert got == {} and ctx.connects == []
    reply, _ = exchange(ctx, b"GET /api HTTP/1.1\r\nHost: h\r\n\r\n", client=client)
    assert reply.endswith(b"ok")


def test_no_route_is_404_and_bypass_tricks_hit_the_exclusion() -> None:
    ctx = context()
    for target in (b"/nothing", b"/app/x"):  # /app/ serves only www.example.com
        reply, _ = exchange(ctx, b"GET " + target + b" HTTP/1.1\r\nHost: other\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 404 "), target
    for trick in (b"/app/x/../static/a", b"/app/%2e%2e/app/static/a", b"//app//static/a",
                  b"/app;x/static/a", b"/app/./static/a", b"/api/../app/static/a"):
        reply, _ = exchange(ctx, b"GET " + trick + b" HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 404 "), trick
    assert ctx.connects == []


def test_an_absolute_form_targets_host_is_the_one_routed_and_sent() -> None:
    """RFC 9112 §3.2.2: the target's authority replaces Host, with or without routes."""
    ctx = context()
    # /app/ serves only www.example.com: routed by the target's host, not the Host field.
    reply, _ = exchange(ctx, b"GET http://other.test/app/x HTTP/1.1\r\n"
                             b"Host: www.example.com\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 404 ")
    reply, got = exchange(ctx, b"GET http://H:80/api/x HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    assert reply.endswith(b"ok") and got[3].startswith(b"GET /api/x HTTP/1.1")
    assert b"\r\nX-Forwarded-Host: H:80\r\n" in got[3] and b"evil.test" not in got[3]
    reply, _ = exchange(ctx, b"GET http://u:p@H/api HTTP/1.1\r\nHost: H\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ")


def test_sticky_cookie_and_url_parameter_pick_their_member() -> None:
    ctx = context()
    head = b"GET /app/x HTTP/1.1\r\nHost: www.example.com\r\nCookie: a=1; JSESSIONID=S.n2\r\n\r\n"
    _, got = exchange(ctx, head)
    assert list(got) == [2]
    _, got = exchange(ctx, b"GET /app/x;jsessionid=S.n2 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    assert list(got) == [2] and got[2].startswith(b"GET /x;jsessionid=S.n2 ")
    assert ctx.outcomes == [STICKY_HIT, STICKY_HIT]


def test_unknown_routes_and_garbage_are_no_route() -> None:
    ctx = context()
    for cookie in (b"JSESSIONID=S.nope", b"JSESSIONID=garbage", b"JSESSIONID=\xff.\xfe"):
        reply, got = exchange(ctx, b"GET /app/x HTTP/1.1\r\nHost: www.example.com\r\nCookie: "
                              + cookie + b"\r\n\r\n")
        assert reply.endswith(b"ok") and list(got) == [1], cookie
    assert ctx.outcomes == [0, 0, 0]


def test_a_down_sticky_member_fails_over_or_503s_with_nofailover() -> None:
    ctx = context(2)
    head = b"GET /app/x HTTP/1.1\r\nHost: www.example.com\r\nCookie: JSESSIONID=S.n2\r\n\r\n"
    reply, got = exchange(ctx, head)
    assert reply.endswith(b"ok") and list(got) == [1]
    assert ctx.outcomes == [STICKY_LOST]
    strict = FakeContext([member(1), member(2, refuse=False), member(3)],
                         POOLS.replace('name = "app"\n', 'name = "app"\nnofailover = true\n'))
    strict.members[2].down = True
    reply, got = exchange(strict, head)
    assert reply.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in reply and got == {}


def test_a_sticky_member_that_refuses_fails_over() -> None:
    ctx = FakeContext([member(1), member(2, refuse=True), member(3)], POOLS)
    head = b"GET /app/x HTTP/1.1\r\nHost: www.example.com\r\nCookie: JSESSIONID=S.n2\r\n\r\n"
    reply, got = exchange(ctx, head)
    assert reply.endswith(b"ok") and list(got) == [1]
    assert ctx.connects == [2, 1] and ctx.outcomes == [STICKY_LOST]


def test_sticky_cookie_is_set_when_the_request_had_no_route() -> None:
    pools = POOLS.replace('stickysession = "JSESSIONID|jsessionid"',
                          'sticky_cookie = "ROUTEID"\nsticky_cookie_secure = true')
    ctx = FakeContext([member(1), member(2), member(3)], pools)
    reply, got = exchange(ctx, b"GET /app/x HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    assert b"Set-Cookie: ROUTEID=.n1; Path=/; HttpOnly; Secure\r\n" in reply
    reply, got = exchange(ctx, b"GET /app/x HTTP/1.1\r\nHost: www.example.com\r\n"
                               b"Cookie: ROUTEID=.n2\r\n\r\n")
    assert list(got) == [2] and b"Set-Cookie" not in reply


def test_proxypassreverse_maps_member_locations_back() -> None:
    ctx = context()
    answer = (b"HTTP/1.1 302 Found\r\nLocation: http://192.0.2.1:8080/login?next=/\r\n"
              b"Content-Location: http://192.0.2.9:8080/other\r\nContent-Length: 0\r\n\r\n")
    reply, _ = exchange(ctx, b"GET /app/x HTTP/1.1\r\nHost: www.example.com\r\n\r\n", answer)
    assert b"Location: http://www.example.com/app/login?next=/\r\n" in reply
    assert b"Content-Location: http://192.0.2.9:8080/other\r\n" in reply
