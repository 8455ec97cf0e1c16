"""Heartbeats POSTed to [heartbeat] http_path through a real HttpSession (fake context, socket
pairs), on both HTTP paths: answered here, never dialed to a member, the body handed to the
master (FakeContext.beats)."""

from __future__ import annotations

import socket

import pytest

from hbfork.proxy.http.session import HttpSession
from tests.unit.proxy.fakes import FakeContext, Reader, member

pytestmark = pytest.mark.usefixtures("both_http_paths")

BEATS = '[heartbeat]\nhttp_path = "/HeartbeatListener"\n'
BODY = b"v=1&ready=20&busy=0&port=8009"


def start(ctx: FakeContext) -> socket.socket:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    HttpSession(ctx, ours, "198.51.100.7")
    return client


def post(body: bytes = BODY, method: bytes = b"POST", path: bytes = b"/HeartbeatListener",
         version: bytes = b"1.0") -> bytes:
    """As Tomcat's TcpSender writes it: a CRLF after the body, outside Content-Length."""
    return b"%s %s HTTP/%s\r\nContent-Length: %d\r\nUser-Agent: HeartbeatListener/1.0\r\n" \
        b"Connection: Keep-Alive\r\n\r\n%s\r\n" % (method, path, version, len(body), body)


def answer(ctx: FakeContext, client: socket.socket, request: bytes) -> bytes:
    client.sendall(request)
    reply = Reader(client)
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll() and
                  len(reply.data.partition(b"\r\n\r\n")[2]) >= _length(reply.data))
    return reply.data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_beats_are_answered_ok_and_handed_to_the_master_on_one_connection() -> None:
    ctx = FakeContext([member(1)], BEATS)
    client = start(ctx)
    for ready in (20, 19, 18):
        body = b"v=1&ready=%d&busy=0&port=8009" % ready
        reply = answer(ctx, client, post(body))
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nOK")
        assert b"Connection: keep-alive" in reply and b"Content-Length: 2\r\n" in reply
    assert ctx.beats == [("198.51.100.7", b"v=1&ready=%d&busy=0&port=8009" % r)
                         for r in (20, 19, 18)]
    assert ctx.connects == [] and [status for status, _ in ctx.done] == [200, 200, 200]


@pytest.mark.parametrize(("request_bytes", "status", "handed"), [
    (post(method=b"GET", body=b""), 405, False),
    (b"GET /HeartbeatListener?x HTTP/1.1\r\nHost: h\r\n\r\n", 405, False),
    (post(b"v=1&ready=1"), 400, True),
    (post(b""), 400, True),
    (post(b"v=1&ready=1&busy=0&pad=" + b"x" * 1000), 413, False),
    (b"POST /HeartbeatListener HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"5\r\nv=1&r\r\n0\r\n\r\n", 411, False),
])
def test_other_requests_are_answered_as_apache(request_bytes, status, handed) -> None:
    ctx = FakeContext([member(1)], BEATS)
    reply = answer(ctx, start(ctx), request_bytes)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply
    if status == 405:
        assert b"Allow: POST\r\n" in reply
    assert bool(ctx.beats) is handed and ctx.connects == []


def test_a_sender_outside_allow_gets_403_and_the_master_still_counts_it() -> None:
    ctx = FakeContext([member(1)], BEATS + 'allow = ["10.0.0.0/8"]\n')
    reply = answer(ctx, start(ctx), post())
    assert reply.startswith(b"HTTP/1.1 403 ") and ctx.beats == [("198.51.100.7", BODY)]


def test_a_busy_master_is_a_503() -> None:
    ctx = FakeContext([member(1)], BEATS)
    ctx.master_full = True
    reply = answer(ctx, start(ctx), post())
    assert reply.startswith(b"HTTP/1.1 503 ") and ctx.beats == []


def test_a_body_in_pieces_is_waited_for() -> None:
    ctx = FakeContext([member(1)], BEATS)
    client = start(ctx)
    whole = post()
    cut = whole.index(b"\r\n\r\n") + 6
    client.sendall(whole[:cut])
    for _ in range(10):  # the loop runs, reads the head, and does not answer it alone
        ctx.loop.run_once(0.01)
    assert ctx.beats == [] and ctx.done == []
    reply = answer(ctx, client, whole[cut:])
    assert reply.endswith(b"OK") and ctx.beats == [("198.51.100.7", BODY)]


def test_other_paths_go_to_members_and_a_beat_on_an_unlisted_listener_too() -> None:
    ctx = FakeContext([member(1)], BEATS)
    client = start(ctx)
    client.sendall(b"GET /HeartbeatListenerX HTTP/1.1\r\nHost: h\r\n\r\n")
    ctx.run_until(lambda: ctx.connects)
    assert ctx.connects == [1] and ctx.beats == []
    listed = FakeContext([member(1)], BEATS + 'http_listen = ["127.0.0.1:8080"]\n')
    client = start(listed)  # the session's listener is PLAIN (no address): not listed
    client.sendall(post())
    listed.run_until(lambda: listed.connects)
    assert listed.connects == [1] and listed.beats == []
