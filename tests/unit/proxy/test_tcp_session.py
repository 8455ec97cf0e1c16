"""TcpSession against a fake context: bytes both ways, half-close, and connect failover."""

from __future__ import annotations

import socket

from hbfork.proxy.tcp import TcpSession
from tests.unit.proxy.fakes import FakeContext, Reader, member


def start(ctx: FakeContext) -> tuple[TcpSession, socket.socket]:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    return TcpSession(ctx, ours, "198.51.100.7"), client


def at_eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False


def test_relays_bytes_both_ways_and_half_closes() -> None:
    ctx = FakeContext([member(1)])
    session, client = start(ctx)
    ctx.run_until(lambda: ctx.members[1].peers)
    upstream = Reader(ctx.members[1].accept())
    client.sendall(b"ping")
    ctx.run_until(lambda: upstream.poll() == b"ping")
    upstream.sock.sendall(b"pong")
    reply = Reader(client)
    ctx.run_until(lambda: reply.poll() == b"pong")
    assert ctx.upstreams.in_flight == {1: 1}
    # The client is done sending: the member sees EOF, and can still answer.
    client.shutdown(socket.SHUT_WR)
    ctx.run_until(lambda: at_eof(upstream.sock))
    upstream.sock.sendall(b"last")
    upstream.sock.close()
    ctx.run_until(lambda: session.closed)
    assert reply.poll() == b"ponglast"
    assert ctx.upstreams.in_flight == {1: 0}
    assert ctx.counts["bytes_in"] == 4 and ctx.counts["bytes_out"] == 8


def test_a_refused_connect_fails_over() -> None:
    ctx = FakeContext([member(1, refuse=True), member(2)])
    start(ctx)
    ctx.run_until(lambda: ctx.members[2].peers)
    assert ctx.connects == [1, 2]
    assert ctx.failed == [(1, "ECONNREFUSED")]
    assert ctx.counts["retry"] == 1


def test_no_member_closes_the_client() -> None:
    ctx = FakeContext([])
    session, client = start(ctx)
    assert session.closed
    assert client.recv(1) == b""
    assert ctx.counts["no_member"] == 1
