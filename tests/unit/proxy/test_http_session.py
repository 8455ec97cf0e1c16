"""HttpSession against a fake context: socket pairs for the client and the members, no worker.

These drive the state machine through its real I/O paths: the request/response relay, connect
failover, 503 with no member, keep-alive reuse of member connections (and the keep-alive race),
pipelining, and a member that closes without answering.
"""

from __future__ import annotations

import socket

import pytest

from hbfork.proxy.http.session import HttpSession
from hbfork.proxy.http.spool_file import Lag
from hbfork.proxy.http.state import HEAD
from tests.unit.proxy.fakes import FakeContext, Reader, member

GET = b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

# Every test here runs with the fast path on and off: the general path must behave the same.
pytestmark = pytest.mark.usefixtures("both_http_paths")


def start(ctx: FakeContext) -> tuple[HttpSession, socket.socket]:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    return HttpSession(ctx, ours, "198.51.100.7"), client


def serve_one(ctx: FakeContext, slot: int, answer: bytes, got: list[bytes]):
    """A member side that answers the first complete request head on its newest connection."""
    def serve() -> None:
        peers = ctx.members[slot].peers
        if peers and not got:
            reader = Reader(peers[-1])
            data = reader.poll()
            if b"\r\n\r\n" in data:
                got.append(data)
                peers[-1].sendall(answer)
    return serve


def test_relays_a_request_and_its_response() -> None:
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    client.sendall(GET)
    got: list[bytes] = []
    reply = Reader(client)
    ctx.run_until(lambda: reply.poll().endswith(b"hello"), serve=serve_one(ctx, 1, OK, got))
    head = got[0].decode()
    assert head.startswith("GET /x HTTP/1.1\r\n")
    assert "Host: front.example\r\n" in head
    assert "X-Forwarded-For: 198.51.100.7\r\n" in head
    assert "X-Forwarded-Host: front.example\r\n" in head
    assert reply.data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert ctx.done == [(200, 1)]
    assert ctx.upstreams.in_flight == {1: 0}
    assert ctx.upstreams.finished_statuses == [(1, 200)]
    assert not session.closed  # keep-alive: waiting for the next request


def test_a_refused_connect_fails_over_to_another_member() -> None:
    ctx = FakeContext([member(1, refuse=True), member(2)])
    _, client = start(ctx)
    client.sendall(GET)
    got: list[bytes] = []
    reply = Reader(client)
    ctx.run_until(lambda: reply.poll().endswith(b"hello"), serve=serve_one(ctx, 2, OK, got))
    assert ctx.connects == [1, 2]
    assert ctx.failed == [(1, "ECONNREFUSED")]
    assert ctx.counts.get("retry") == 1
    assert ctx.done == [(200, 2)]


def test_every_member_refusing_is_502() -> None:
    ctx = FakeContext([member(1, refuse=True), member(2, refuse=True)], retries=5)
    _, client = start(ctx)
    client.sendall(GET)
    reply = Reader(client)
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll())
    assert reply.data.startswith(b"HTTP/1.1 502 ")
    assert [slot for slot, _ in ctx.failed] == [1, 2]


def test_no_member_is_503_with_retry_after_and_keeps_the_connection() -> None:
    ctx = FakeContext([])
    session, client = start(ctx)
    client.sendall(GET)
    reply = Reader(client)
    ctx.run_until(lambda: b"no member" in reply.poll())
    assert reply.data.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1\r\n" in reply.data
    assert b"Connection: keep-alive" in reply.data
    assert ctx.counts["no_member"] == 1
    assert not session.closed


def test_keep_alive_reuses_the_member_connection() -> None:
    ctx = FakeContext([member(1)])
    _, client = start(ctx)
    reply = Reader(client)
    for n in (1, 2):
        client.sendall(GET)
        got: list[bytes] = []
        ctx.run_until(lambda n=n: reply.poll().count(b"hello") == n,
                      serve=serve_one(ctx, 1, OK, got))
        assert got and got[0].startswith(b"GET /x")
    assert ctx.connects == [1]  # one member connection served both requests
    assert ctx.done == [(200, 1), (200, 1)]


def test_a_pooled_connection_closed_by_the_member_is_retried_fresh() -> None:
    ctx = FakeContext([member(1)])
    _, client = start(ctx)
    reply = Reader(client)
    client.sendall(GET)
    ctx.run_until(lambda: reply.poll().endswith(b"hello"), serve=serve_one(ctx, 1, OK, []))
    # The member closes the idle pooled connection just as the next request takes it.
    ctx.members[1].peers[-1].close()
    client.sendall(GET)
    got: list[bytes] = []

    def serve() -> None:
        if len(ctx.members[1].peers) == 2:
            serve_one(ctx, 1, OK, got)()

    ctx.run_until(lambda: reply.poll().count(b"hello") == 2, serve=serve)
    assert ctx.connects == [1, 1]
    assert ctx.done == [(200, 1), (200, 1)]


def test_pipelined_requests_are_answered_in_order() -> None:
    ctx = FakeContext([member(1)])
    _, client = start(ctx)
    client.sendall(GET.replace(b"/x", b"/a") + GET.replace(b"/x", b"/b"))
    seen: list[bytes] = []
    buffered = b""

    def serve() -> None:
        nonlocal buffered
        peers = ctx.members[1].peers
        if not peers:
            return
        buffered += Reader(peers[-1]).poll()
        while b"\r\n\r\n" in buffered:
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            path = head.split(b" ")[1]
            seen.append(path)
            body = b"was " + path
            peers[-1].sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                              % (len(body), body))

    reply = Reader(client)
    ctx.run_until(lambda: reply.poll().endswith(b"was /b"), serve=serve)
    assert seen == [b"/a", b"/b"]
    assert reply.data.index(b"was /a") < reply.data.index(b"was /b")


@pytest.mark.parametrize("method", [b"POST", b"GET"])
def test_a_member_that_closes_without_answering_is_502(method: bytes) -> None:
    ctx = FakeContext([member(1)])
    _, client = start(ctx)
    body = b"x=1" if method == b"POST" else b""
    client.sendall(method + b" /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s"
                   % (len(body), body))

    def serve() -> None:
        peers = ctx.members[1].peers
        if peers and peers[-1].fileno() >= 0 and b"\r\n\r\n" in Reader(peers[-1]).poll():
            peers[-1].close()

    reply = Reader(client)
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll(), serve=serve)
    assert reply.data.startswith(b"HTTP/1.1 502 ")
    assert ctx.done == [(502, 1)]  # the member that caused it is named (issue 25 item 7)


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def _chunks_in_reads(ctx: FakeContext, reads: list[bytes], reply: Reader):
    """A member side that answers the request with `reads`, one send each, each once the
    client has the end of the one before it (so every one is a read of its own)."""
    waiting = list(reads)
    last = b""

    def serve() -> None:
        nonlocal last
        peers = ctx.members[1].peers
        if not peers or not waiting:
            return
        if not last and b"\r\n\r\n" not in Reader(peers[-1]).poll():
            return  # the request head first
        if not last or reply.poll().endswith(last):
            data = waiting.pop(0)
            peers[-1].sendall(data)
            last = data[-3:]

    return serve


def test_a_clean_chunked_body_reaches_the_client_byte_for_byte_across_reads() -> None:
    ctx = FakeContext([member(1)])
    _, client = start(ctx)
    client.sendall(GET)
    reply = Reader(client)
    reads = [CHUNKED_HEAD + b"5\r\nhello\r\n", b"6\r\n world\r\n", b"0\r\n\r\n"]
    ctx.run_until(lambda: reply.poll().endswith(b"0\r\n\r\n"),
                  serve=_chunks_in_reads(ctx, reads, reply))
    assert reply.data.endswith(b"\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert ctx.done == [(200, 1)]


def test_a_bad_chunk_in_a_later_read_ends_the_response_and_the_connection() -> None:
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    client.sendall(GET)
    reply = Reader(client)
    reads = [CHUNKED_HEAD + b"5\r\nhello\r\n", b"zz\r\nbad\r\n"]
    ctx.run_until(lambda: session.closed, serve=_chunks_in_reads(ctx, reads, reply))
    data = reply.poll()
    assert data.endswith(b"5\r\nhello\r\n")  # what came before it, and nothing of it
    assert b"zz" not in data and b"bad" not in data


def test_a_malformed_request_is_400_and_the_connection_closes() -> None:
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    client.sendall(b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: "
                   b"chunked\r\n\r\n")
    reply = Reader(client)
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll())
    assert reply.data.startswith(b"HTTP/1.1 400 ")
    assert ctx.connects == []  # nothing reached a member
    client.close()
    ctx.run_until(lambda: session.closed)
    assert ctx.closed_sessions == [session]


# --- the front queue


def test_a_connection_returns_after_an_exchange_that_went_well() -> None:
    """Issue 24: a new connection's request ranks queue_fresh_offset later in the front queue;
    once a response was read without lagging, the next ranks by its arrival."""
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    assert not session.returning
    got: list[bytes] = []
    reply = Reader(client)
    client.sendall(GET)
    ctx.run_until(lambda: reply.poll().endswith(b"hello"), serve=serve_one(ctx, 1, OK, got))
    ctx.run_until(lambda: session.returning)


def test_a_connection_whose_response_lagged_ranks_as_a_new_one() -> None:
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    session.returning = True        # as after a quick exchange
    reply = Reader(client)
    client.sendall(GET)
    ctx.run_until(lambda: ctx.connects == [1])
    lag = session.ex.lag = Lag(ctx.loop.timer(lambda now: None))
    lag.lagged = True               # what LagWindow.lags() leaves on a reader too slow
    ctx.run_until(lambda: reply.poll().endswith(b"hello"), serve=serve_one(ctx, 1, OK, []))
    ctx.run_until(lambda: session.state == HEAD)
    assert not session.returning
    client.sendall(GET)             # read at once: returning again
    ctx.run_until(lambda: reply.poll().count(b"hello") == 2, serve=serve_one(ctx, 1, OK, []))
    ctx.run_until(lambda: session.returning)


def test_a_request_waits_while_every_member_is_full_then_goes() -> None:
    ctx = FakeContext([member(1)])
    ctx.members[1].full = True
    session, client = start(ctx)
    client.sendall(GET)
    ctx.run_until(lambda: ctx.queue == [session])
    assert ctx.connects == []  # nothing sent while it waits
    ctx.members[1].full = False
    ctx.dispatch_queue()
    got: list[bytes] = []
    reply = Reader(client)
    ctx.run_until(lambda: reply.poll().endswith(b"hello"), serve=serve_one(ctx, 1, OK, got))
    assert ctx.queue == [] and ctx.done == [(200, 1)]


def test_a_new_request_goes_behind_those_waiting_even_when_room_appears() -> None:
    ctx = FakeContext([member(1)])
    ctx.members[1].full = True
    first, first_client = start(ctx)
    first_client.sendall(GET)
    ctx.run_until(lambda: ctx.queue == [first])
    first.queued_at -= 1.0        # it has waited a second (order matters from ORDER_AFTER on)
    ctx.members[1].full = False   # a place frees up before the queue is dispatched
    second, second_client = start(ctx)
    second_client.sendall(GET)
    ctx.run_until(lambda: ctx.queue == [first, second])
    assert ctx.connects == []     # the newcomer did not take the place
    ctx.dispatch_queue()          # oldest first
    assert ctx.queue == [] and len(ctx.connects) == 2


def test_a_new_request_takes_a_free_place_past_a_waiter_of_a_few_milliseconds() -> None:
    ctx = FakeContext([member(1)])
    ctx.members[1].full = True
    first, first_client = start(ctx)
    first_client.sendall(GET)
    ctx.run_until(lambda: ctx.queue == [first])
    ctx.members[1].full = False   # the waiter's turn comes at the queue's next look
    _, second_client = start(ctx)
    second_client.sendall(GET)
    ctx.run_until(lambda: len(ctx.connects) == 1)
    assert ctx.queue == [first]   # the newcomer went at once: no place left idle meanwhile


def test_a_queue_timeout_is_503_with_retry_after() -> None:
    ctx = FakeContext([member(1)], extra="[balance]\nqueue_timeout = 0.05\n")
    ctx.members[1].full = True
    session, client = start(ctx)
    client.sendall(GET)
    reply = Reader(client)
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll())
    assert reply.data.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1\r\n" in reply.data
    assert b"queue_timeout" in reply.data
    assert ctx.left == ["timeout"] and ctx.queue == [] and not session.closed


def test_queue_timeout_zero_answers_503_at_once() -> None:
    ctx = FakeContext([member(1)], extra="[balance]\nqueue_timeout = 0\n")
    ctx.members[1].full = True
    _, client = start(ctx)
    client.sendall(GET)
    reply = Reader(client)
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll())
    assert reply.data.startswith(b"HTTP/1.1 503 ") and b"every member is full" in reply.data
    assert ctx.queue == []


def test_a_client_that_leaves_while_queued_leaves_the_queue() -> None:
    ctx = FakeContext([member(1)])
    ctx.members[1].full = True
    session, client = start(ctx)
    client.sendall(GET)
    ctx.run_until(lambda: ctx.queue == [session])
    client.close()
    ctx.run_until(lambda: session.closed)
    assert ctx.queue == [] and ctx.left == ["gone"] and ctx.connects == []
