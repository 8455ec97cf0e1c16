"""Large request bodies of known length go to the member through a kernel pipe (splice).

The session must move exactly the body (never the pipelined request after it), keep
back-pressure (the client is not read while the pipe holds bytes the member has not taken),
fall back to copying where splice is refused, and give the pipe back when the exchange ends.
"""

from __future__ import annotations

import hashlib
import os
import socket

import pytest

from hbfork.proxy.http import member as member_side
from hbfork.proxy.http.session import HttpSession
from hbfork.proxy.relay import PIPE_SIZE, splice_available
from tests.unit.proxy.fakes import FakeContext, Reader, member, read_available

pytestmark = [pytest.mark.usefixtures("both_http_paths"),
              pytest.mark.skipif(not splice_available(), reason="no os.splice here")]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def start(ctx: FakeContext) -> tuple[HttpSession, socket.socket]:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    return HttpSession(ctx, ours, "198.51.100.7"), client


class Member:
    """The member's end: collects what arrives, answers each complete request (head plus
    Content-Length body) with OK. `paused` stops it reading (a slow member)."""

    def __init__(self, ctx: FakeContext, slot: int, per_call: int = 0) -> None:
        self.ctx, self.slot = ctx, slot
        self.data = b""
        self.requests: list[tuple[bytes, bytes]] = []
        self.paused = False
        self.per_call = per_call  # read at most this much per call (0: all there is)

    def serve(self) -> None:
        peers = self.ctx.members[self.slot].peers
        if not peers or self.paused:
            return
        if self.per_call:
            peers[-1].setblocking(False)
            try:
                self.data += peers[-1].recv(self.per_call)
            except BlockingIOError:
                pass
        else:
            self.data += read_available(peers[-1])
        while b"\r\n\r\n" in self.data:
            head, rest = self.data.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.requests.append((head, rest[:length]))
            self.data = rest[length:]
            peers[-1].setblocking(True)
            peers[-1].sendall(OK)


def post(body: bytes, target: str = "/up") -> bytes:
    return (f"POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def send_all(ctx: FakeContext, sock: socket.socket, data: bytes, serve) -> None:
    """Write `data` from the client while running the loop (the session drains it)."""
    sock.setblocking(False)
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view[:256 * 1024]):]
        except BlockingIOError:
            pass
        ctx.loop.run_once(0.001)
        serve()


@pytest.fixture
def splices(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte counts of every splice(2) call made (the real call is made)."""
    calls: list[int] = []
    real = os.splice

    def counting(src: int, dst: int, count: int, *args, **kwargs) -> int:
        n = real(src, dst, count, *args, **kwargs)
        calls.append(n)
        return n

    monkeypatch.setattr(os, "splice", counting)
    return calls


def test_a_large_body_is_spliced_whole_and_the_next_request_kept(splices) -> None:
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    body = os.urandom(3 * PIPE_SIZE + 12345)
    backend = Member(ctx, 1)
    reply = Reader(client)
    send_all(ctx, client, post(body) + post(b"small", "/next"), backend.serve)
    ctx.run_until(lambda: reply.poll().count(b"\r\n\r\nok") == 2, serve=backend.serve)
    assert [hashlib.sha256(b).hexdigest() for _, b in backend.requests] == \
        [hashlib.sha256(body).hexdigest(), hashlib.sha256(b"small").hexdigest()]
    assert backend.requests[1][0].startswith(b"POST /next ")
    assert sum(splices) >= 2 * (len(body) - 256 * 1024)  # in and out of the pipe, mostly
    assert session.member.body_relay is None   # the pipe went with the exchange
    assert ctx.done == [(200, 1), (200, 1)]


def test_the_client_waits_while_the_member_is_slow(splices) -> None:
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    body = os.urandom(8 * PIPE_SIZE)
    backend = Member(ctx, 1)
    backend.paused = True
    client.setblocking(False)
    sent = 0
    view = memoryview(post(body))
    for _ in range(300):  # the member reads nothing: the client must stall, bounded
        try:
            sent += client.send(view[sent:sent + 256 * 1024])
        except BlockingIOError:
            pass
        ctx.loop.run_once(0.001)
    relay = session.member.body_relay
    assert relay is not None and relay.in_pipe <= PIPE_SIZE
    assert sent < len(view)   # back-pressure reached the client
    backend.paused = False
    send_all(ctx, client, bytes(view[sent:]), backend.serve)
    reply = Reader(client)
    ctx.run_until(lambda: reply.poll().endswith(b"ok"), serve=backend.serve)
    assert backend.requests[0][1] == body


def test_copying_when_splice_is_off(monkeypatch: pytest.MonkeyPatch, splices) -> None:
    monkeypatch.setattr(member_side, "SPLICE_BODIES", False)
    ctx = FakeContext([member(1)])
    _, client = start(ctx)
    body = os.urandom(2 * PIPE_SIZE)
    backend = Member(ctx, 1)
    reply = Reader(client)
    send_all(ctx, client, post(body), backend.serve)
    ctx.run_until(lambda: reply.poll().endswith(b"ok"), serve=backend.serve)
    assert backend.requests[0][1] == body
    assert splices == []


def test_a_member_that_answers_before_the_body_ends_gets_a_closed_connection() -> None:
    """The member answers (say 413) with the body still coming: what is in the pipe can never
    be sent on that connection, so it is not pooled."""
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    head = post(b"")[:-len(b"Content-Length: 0\r\n\r\n")]
    reply = Reader(client)
    answered = []

    def early_answer() -> None:
        peers = ctx.members[1].peers
        if peers and not answered:
            data = read_available(peers[-1])
            if data:
                answered.append(True)
                peers[-1].sendall(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")

    send_all(ctx, client, head + f"Content-Length: {4 * PIPE_SIZE}\r\n\r\n".encode()
             + os.urandom(256 * 1024), early_answer)
    ctx.run_until(lambda: b"413" in reply.poll(), serve=early_answer)
    ctx.run_until(lambda: session.member.body_relay is None)
    assert not ctx.conn_pool.idle.get(1)  # never pooled with a request half sent
    assert ctx.done == [(413, 1)]


def test_a_steadily_slow_member_still_gets_most_of_the_body_spliced(splices) -> None:
    """The member reads less per turn than the client sends: the head and the first part of
    the body wait in the session's queue. The client is not read again until that queue is
    written, and the rest goes through the pipe (reading on into the buffers meanwhile, the
    queue would never empty and all of the body would be copied)."""
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    body = os.urandom(4 * PIPE_SIZE)
    backend = Member(ctx, 1, per_call=16 * 1024)
    shrunk = []

    def serve() -> None:
        if session.member.conn is not None and not shrunk:  # a small socket buffer to the member
            session.member.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            shrunk.append(True)
        backend.serve()

    reply = Reader(client)
    send_all(ctx, client, post(body), serve)
    ctx.run_until(lambda: reply.poll().endswith(b"ok"), serve=serve, timeout=20)
    assert backend.requests[0][1] == body
    assert sum(splices) >= 2 * (len(body) - PIPE_SIZE), sum(splices)


def test_request_buffering_reads_no_more_than_it_needs_and_the_rest_is_spliced(splices) -> None:
    """A body is buffered before its member is chosen (request_buffering), but a client that
    is ahead (its socket holds far more) must not have more than that copied: the rest goes
    through the pipe, as it would without buffering."""
    ctx = FakeContext([member(1)])
    ctx.buffer = memoryview(bytearray(256 * 1024))  # the worker's: larger than the limit
    session, client = start(ctx)
    limit = ctx.http.request_buffering
    body = os.urandom(2 * PIPE_SIZE)
    head = post(body)[:-len(body)]
    client.sendall(head)
    ctx.run_until(lambda: session.client.inbuf == b"" and session.ex.request is not None)
    client.setblocking(False)
    sent = client.send(body[:4 * limit])  # what the socket takes: more than the limit
    assert sent > 2 * limit
    backend = Member(ctx, 1)
    reply = Reader(client)
    send_all(ctx, client, body[sent:], backend.serve)
    ctx.run_until(lambda: reply.poll().endswith(b"ok"), serve=backend.serve)
    assert backend.requests[0][1] == body
    # Into the pipe and out of it: all but the buffered part.
    spliced, size = sum(splices), len(body)
    assert spliced >= 2 * (size - limit)
