"""The HTTP fast path (hbfork.proxy.http.fast) against a fake context: which exchanges take it,
what the member and the client receive then, and that every other exchange falls back to the
general path with the bytes already read (the whole session corpus also runs with the fast path
off and on: test_http_session.py, test_routing_session.py)."""

from __future__ import annotations

import socket

from hbfork.proxy.http.session import HttpSession
from hbfork.proxy.http.state import STICKY_HIT, STICKY_LOST
from tests.unit.proxy.fakes import FakeContext, Reader, member

GET = b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"


def start(ctx: FakeContext) -> tuple[HttpSession, socket.socket, Reader]:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    return HttpSession(ctx, ours, "198.51.100.7"), client, Reader(client)


class Member:
    """Answers each complete request head on the member's newest connection with the next
    answer of a script, and keeps what it received."""

    def __init__(self, ctx: FakeContext, slot: int, *answers: bytes) -> None:
        self.ctx, self.slot, self.answers = ctx, slot, list(answers)
        self.got: list[bytes] = []
        self.buffer = b""
        self.out = b""  # what the member still has to send (its socket is non-blocking)
        self.reader: Reader | None = None

    def __call__(self) -> None:
        peers = self.ctx.members[self.slot].peers
        if not peers:
            return
        if self.reader is None or self.reader.sock is not peers[-1]:
            self.reader, self.buffer, self.out = Reader(peers[-1]), b"", b""
        self.buffer += self.reader.poll()
        self.reader.data = b""
        while b"\r\n\r\n" in self.buffer and self.answers:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.got.append(head + b"\r\n\r\n")
            self.out += self.answers.pop(0)
        if self.out:
            try:
                self.out = self.out[peers[-1].send(self.out):]
            except BlockingIOError:
                pass


def exchange(ctx: FakeContext, client: socket.socket, reply: Reader, serve: Member,
             request: bytes, ending: bytes, count: int = 1) -> bytes:
    """Send `request`; wait for `count` times `ending` in what comes back; return that."""
    mark = len(reply.poll())
    client.sendall(request)
    ctx.run_until(lambda: reply.poll()[mark:].count(ending) >= count, serve=serve)
    return reply.data[mark:]


def warm(ctx: FakeContext, client: socket.socket, reply: Reader, serve: Member) -> None:
    """A first request: it dials the member, so it is the general path's; the connection
    goes to the pool for the next one."""
    exchange(ctx, client, reply, serve, GET, b"hello")
    assert ctx.counts.get("fast_path") is None
    assert ctx.connects == [1]


def test_a_get_over_a_pooled_connection_takes_the_fast_path() -> None:
    ctx = FakeContext([member(1)])
    session, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, OK)
    warm(ctx, client, reply, serve)
    answer = exchange(ctx, client, reply, serve, GET, b"hello")
    assert ctx.counts["fast_path"] == 1
    assert ctx.connects == [1]  # the pooled connection served it
    # The member gets the head as received plus our X-Forwarded-* fields, as on the general
    # path (the first request).
    assert serve.got[1] == (b"GET /x HTTP/1.1\r\nHost: front.example\r\n"
                            b"X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: http\r\n"
                            b"X-Forwarded-Host: front.example\r\n\r\n")
    assert serve.got[0] == serve.got[1]
    # The response goes out as the member sent it: its Connection: keep-alive is our option.
    assert answer == OK
    assert ctx.done == [(200, 1), (200, 1)]
    assert ctx.upstreams.in_flight == {1: 0}
    assert not session.closed


def test_many_requests_in_a_row_stay_on_the_fast_path() -> None:
    ctx = FakeContext([member(1)])
    _, client, reply = start(ctx)
    serve = Member(ctx, 1, *[OK] * 50)
    warm(ctx, client, reply, serve)
    for _ in range(49):
        assert exchange(ctx, client, reply, serve, GET, b"hello") == OK
    assert ctx.counts["fast_path"] == 49
    assert ctx.connects == [1]
    assert len(ctx.done) == 50


def test_a_member_that_closes_after_answering_is_not_pooled_and_the_client_stays() -> None:
    close = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    ctx = FakeContext([member(1)])
    session, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, close, OK)
    warm(ctx, client, reply, serve)
    second = exchange(ctx, client, reply, serve, GET, b"hello")
    assert second == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"  # its close is cut
    assert not session.closed
    exchange(ctx, client, reply, serve, GET, b"hello")
    assert ctx.connects == [1, 1]  # the third request needed a new connection


def test_a_keep_alive_header_from_the_member_is_cut() -> None:
    apache = (b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5, max=100\r\nConnection: Keep-Alive\r\n"
              b"Content-Length: 5\r\n\r\nhello")
    ctx = FakeContext([member(1)])
    _, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, apache)
    warm(ctx, client, reply, serve)
    answer = exchange(ctx, client, reply, serve, GET, b"hello")
    assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert ctx.counts["fast_path"] == 1


def test_a_client_asking_to_close_gets_connection_close_and_the_member_does_not() -> None:
    ctx = FakeContext([member(1)])
    session, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, OK)
    warm(ctx, client, reply, serve)
    last = b"GET /x HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n"
    answer = exchange(ctx, client, reply, serve, last, b"hello")
    assert b"connection" not in serve.got[1].lower()  # we keep the member connection
    assert answer == (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                                    b"Connection: close\r\n\r\nhello")
    ctx.run_until(lambda: session.closed)
    assert ctx.counts["fast_path"] == 1


def test_a_body_that_arrives_after_the_head_is_streamed_by_the_general_path() -> None:
    ctx = FakeContext([member(1)])
    _, client, reply = start(ctx)
    head_only = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhel"
    serve = Member(ctx, 1, OK, head_only)
    warm(ctx, client, reply, serve)
    client.sendall(GET)
    ctx.run_until(lambda: reply.poll().endswith(b"hel") and len(serve.got) == 2, serve=serve)
    ctx.members[1].peers[-1].sendall(b"lo world")
    ctx.run_until(lambda: reply.poll().endswith(b"hello world"))
    assert ctx.done == [(200, 1), (200, 1)]
    exchange(ctx, client, reply, Member(ctx, 1, OK), GET, b"hello")
    assert ctx.connects == [1]  # the member connection was pooled after the streamed body


def test_bytes_after_the_response_send_it_to_the_general_path_and_close_the_member() -> None:
    ctx = FakeContext([member(1)])
    _, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, OK + b"junk")
    warm(ctx, client, reply, serve)
    exchange(ctx, client, reply, serve, GET, b"hello")
    assert ctx.counts.get("fast_path") is None
    assert ctx.done == [(200, 1), (200, 1)]
    exchange(ctx, client, reply, Member(ctx, 1, OK), GET, b"hello")
    assert ctx.connects == [1, 1]  # that connection was not reused


def test_exchanges_the_fast_path_leaves_to_the_general_path() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    cases = [
        (b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
         b"Content-Length: 5\r\n\r\n"),
        (b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", OK, b"hello"),
        (b"GET /x HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", OK, b"hello"),
        (b"GET /x HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n", OK, b"hello"),
        (b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-hop\r\nx-hop: 1\r\n\r\n",
         OK, b"hello"),
        (GET, chunked, b"0\r\n\r\n"),
        (GET, no_content, b"No Content\r\n\r\n"),
    ]
    for request, answer, ending in cases:
        ctx = FakeContext([member(1)])
        session, client, reply = start(ctx)
        serve = Member(ctx, 1, OK, answer)
        warm(ctx, client, reply, serve)
        exchange(ctx, client, reply, serve, request, ending)
        assert ctx.counts.get("fast_path") is None, request
        assert len(ctx.done) == 2 and not session.closed, request


def test_pipelined_requests_are_answered_in_order() -> None:
    ctx = FakeContext([member(1)])
    _, client, reply = start(ctx)
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n%02d" % n for n in range(4)]
    serve = Member(ctx, 1, OK, *answers)
    warm(ctx, client, reply, serve)
    answers = exchange(ctx, client, reply, serve, b"".join(
        b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % n for n in range(4)), b"03")
    bodies = [part[-2:] for part in answers.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"00", b"01", b"02", b"03"]


def test_a_pooled_connection_the_member_closed_is_retried_fresh_for_a_get() -> None:
    ctx = FakeContext([member(1)])
    _, client, reply = start(ctx)
    serve = Member(ctx, 1, OK)
    warm(ctx, client, reply, serve)
    ctx.members[1].peers[-1].close()  # the keep-alive race: closed as we reuse it
    exchange(ctx, client, reply, Member(ctx, 1, OK), GET, b"hello")
    assert ctx.connects == [1, 1]
    assert ctx.done == [(200, 1), (200, 1)]


def test_a_routed_request_gets_its_rewritten_path_and_the_members_host() -> None:
    extra = """
[[pool]]
name = "app"
[[pool.member]]
address = "192.0.2.1:8080"
[[route]]
path = "/shop/"
pool = "app"
rewrite = "/"
preserve_host = false
"""
    ctx = FakeContext([member(1)], extra)
    _, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, OK)
    shop = b"GET /shop/cart?id=1 HTTP/1.1\r\nHost: front.example\r\nAccept: */*\r\n\r\n"
    exchange(ctx, client, reply, serve, shop, b"hello")
    exchange(ctx, client, reply, serve, shop, b"hello")
    assert ctx.counts["fast_path"] == 1
    general, fast = (dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
                     for head in serve.got)
    for head in serve.got:
        assert head.startswith(b"GET /cart?id=1 HTTP/1.1\r\n")
    assert fast == general
    assert fast[b"Host"] == b"192.0.2.1:8080"
    assert fast[b"X-Forwarded-Host"] == b"front.example"


def test_a_client_that_reads_slowly_gets_the_whole_response() -> None:
    big = b"x" * (2 << 20)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    ctx = FakeContext([member(1)])
    _, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, answer)
    warm(ctx, client, reply, serve)
    assert exchange(ctx, client, reply, serve, GET, big).endswith(big)
    assert ctx.done == [(200, 1), (200, 1)]


def test_a_draining_worker_answers_with_connection_close() -> None:
    ctx = FakeContext([member(1)])
    session, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, OK)
    warm(ctx, client, reply, serve)
    ctx.draining = True
    answer = exchange(ctx, client, reply, serve, GET, b"hello")
    assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
    ctx.run_until(lambda: session.closed)


STICKY_POOL = """
[[pool]]
name = "default"
stickysession = "JSESSIONID|jsessionid"
[[pool.member]]
address = "192.0.2.1:8080"
route = "n1"
[[pool.member]]
address = "192.0.2.2:8080"
route = "n2"
"""


def test_a_sticky_session_whose_member_has_room_takes_the_fast_path() -> None:
    ctx = FakeContext([member(1), member(2)], STICKY_POOL)
    _, client, reply = start(ctx)
    serve = Member(ctx, 2, *[OK] * 21)
    # the session's cookie in the second of two Cookie fields, as browsers may send them
    sticky = (b"GET /x HTTP/1.1\r\nHost: h\r\nCookie: theme=dark\r\n"
              b"Cookie: JSESSIONID=8C2A.n2\r\n\r\n")
    exchange(ctx, client, reply, serve, sticky, b"hello")   # dials: the general path
    for _ in range(20):
        assert exchange(ctx, client, reply, serve, sticky, b"hello") == OK
    assert ctx.counts["fast_path"] == 20
    assert ctx.connects == [2] and len(serve.got) == 21
    assert ctx.outcomes == [STICKY_HIT] * 21


def test_a_sticky_session_whose_member_is_down_leaves_the_fast_path() -> None:
    ctx = FakeContext([member(1), member(2)], STICKY_POOL)
    _, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, OK)
    plain = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
    exchange(ctx, client, reply, serve, plain, b"hello")   # a pooled connection to member 1
    ctx.members[2].down = True
    sticky = b"GET /x HTTP/1.1\r\nHost: h\r\nCookie: JSESSIONID=8C2A.n2\r\n\r\n"
    answer = exchange(ctx, client, reply, serve, sticky, b"hello")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hello")
    assert ctx.counts.get("fast_path") is None   # the failover is the general path's
    assert ctx.outcomes == [0, STICKY_LOST]


def test_an_exchange_starts_as_its_fields_defaults() -> None:
    # Exchange.__init__ is written out for speed: every field must get its declared default.
    import dataclasses

    from hbfork.proxy.http.exchange import Exchange
    ex = Exchange("192.0.2.1")
    for field in dataclasses.fields(Exchange):
        if field.name != "client_ip":
            assert getattr(ex, field.name) == field.default, field.name
    assert Exchange("192.0.2.1", status=7).status == 7


def test_a_new_connection_the_fast_path_served_becomes_returning() -> None:
    """Issue 24: a new connection has no quick exchange behind it (its requests rank
    queue_fresh_offset later in the front queue); one the fast path served went well."""
    ctx = FakeContext([member(1)])
    first, client, reply = start(ctx)
    serve = Member(ctx, 1, OK, OK)
    assert not first.returning
    warm(ctx, client, reply, serve)    # the general path's (it dials): it went well too
    assert first.returning
    second, client2, reply2 = start(ctx)
    assert not second.returning
    exchange(ctx, client2, reply2, serve, GET, b"hello")
    assert ctx.counts["fast_path"] == 1 and second.returning
