"""TcpSession against a fake context: bytes both ways, half-close, connect failover, and bulk
transfers through splice(2) and its copying fallback."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat

import pytest

from hbfork.proxy import relay
from hbfork.proxy.loop import READ
from hbfork.proxy.tcp import TcpSession
from hbfork.proxy.upstreams import Target
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


# --- bulk transfers: splice(2) through a kernel pipe, and the copying fallback. Each runs on
# AF_UNIX socket pairs (what FakeContext dials) and on real loopback TCP connections, since the
# kernel implements splice separately for the two.


class TcpContext(FakeContext):
    """Members reached over real loopback TCP connections instead of socket pairs."""

    def connect(self, target: Target) -> tuple[socket.socket, int]:
        self.connects.append(target.slot)
        ours, theirs = tcp_pair()
        self.members[target.slot].peers.append(theirs)
        return ours, 0


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(ours, non-blocking; theirs) ends of one loopback TCP connection."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        ours = socket.create_connection(listener.getsockname())
        theirs, _ = listener.accept()
    ours.setblocking(False)
    return ours, theirs


@pytest.fixture(params=["unix", "tcp"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def splicing() -> None:
    """The tests that must see the splice path need what it needs: os.splice, and a pipe of
    relay.PIPE_SIZE (refused once the user's pipe quota is used up, by any process)."""
    if not relay.splice_available():
        pytest.skip("no os.splice on this platform")
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, relay.PIPE_SIZE)
    except OSError as err:
        pytest.skip(f"no {relay.PIPE_SIZE >> 10} KiB pipe for this user now: {err}")
    finally:
        os.close(read_end)
        os.close(write_end)


def start_kind(kind: str) -> tuple[FakeContext, TcpSession, socket.socket, socket.socket]:
    """A session over `kind` sockets, connected: (ctx, session, client end, member end)."""
    ctx = (TcpContext if kind == "tcp" else FakeContext)([member(1)])
    ours, client = tcp_pair() if kind == "tcp" else socket.socketpair()
    ours.setblocking(False)
    session = TcpSession(ctx, ours, "198.51.100.7")
    ctx.run_until(lambda: ctx.members[1].peers and not session.connecting)
    peer = ctx.members[1].accept()
    client.setblocking(False)
    peer.setblocking(False)
    return ctx, session, client, peer


def exchange(ctx: FakeContext, session: TcpSession, client: socket.socket,
             peer: socket.socket, up: bytes, down: bytes) -> set[str]:
    """Send `up` from the client and `down` from the member at once, each side reading as it
    goes; return which directions were seen spliced."""
    to_peer, to_client = Reader(peer), Reader(client)
    left = {client: memoryview(up), peer: memoryview(down)}
    seen: set[str] = set()

    def serve() -> None:
        for sock, view in left.items():
            if view:
                try:
                    left[sock] = view[sock.send(view[:65536]):]
                except BlockingIOError:
                    pass
        to_peer.poll()
        to_client.poll()
        seen.update(name for name, d in (("up", session.up), ("down", session.down))
                    if d.spliced)

    ctx.run_until(lambda: len(to_peer.data) == len(up) and len(to_client.data) == len(down),
                  timeout=30, serve=serve)
    assert to_peer.data == up and to_client.data == down  # every byte, in order
    return seen


def payload(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(256)) * (n // 256)


@pytest.mark.usefixtures("splicing")
def test_bulk_transfer_is_spliced_both_ways_then_half_closes(kind: str) -> None:
    ctx, session, client, peer = start_kind(kind)
    up, down = payload(3 << 20, 1), payload(5 << 20, 2)
    assert exchange(ctx, session, client, peer, up, down) == {"up", "down"}
    assert ctx.counts["bytes_in"] == len(up) and ctx.counts["bytes_out"] == len(down)
    client.shutdown(socket.SHUT_WR)  # the member sees EOF once all is through, can answer
    ctx.run_until(lambda: at_eof(peer))
    peer.sendall(b"bye")
    peer.close()
    reply = Reader(client)
    ctx.run_until(lambda: session.closed)
    assert reply.poll() == b"bye" and at_eof(client)
    assert session.up.pipe_r == session.down.pipe_r == -1  # the pipes were closed


def test_small_exchanges_are_copied_without_a_pipe(kind: str) -> None:
    ctx, session, client, peer = start_kind(kind)
    assert exchange(ctx, session, client, peer, b"GET / HTTP/1.0\r\n\r\n", b"x" * 600) == set()
    assert session.up.pipe_w == session.down.pipe_w == -1


@pytest.mark.usefixtures("splicing")
def test_splice_refused_by_the_kernel_falls_back_to_copying(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def refuse(*args: object, **kwargs: object) -> int:
        calls.append(args)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "splice", refuse)
    ctx, session, client, peer = start_kind(kind)
    up, down = payload(1 << 20, 3), payload(2 << 20, 4)
    exchange(ctx, session, client, peer, up, down)
    assert calls  # it was tried, refused, and the relay went on copying
    assert not session.up.splice and not session.down.splice
    assert session.up.pipe_r == session.down.pipe_r == -1


@pytest.mark.usefixtures("splicing")
def test_splice_failing_with_bytes_in_the_pipe_loses_none(
        kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Into the pipe works, out of it is refused: the bytes in the pipe are read back and sent
    by copying, ahead of anything read later."""
    real = os.splice

    def half(src: int, dst: int, count: int, *args: object, **kwargs: object) -> int:
        if stat.S_ISFIFO(os.fstat(src).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(src, dst, count, *args, **kwargs)

    monkeypatch.setattr(os, "splice", half)
    ctx, session, client, peer = start_kind(kind)
    up, down = payload(1 << 20, 5), payload(1 << 20, 6)
    exchange(ctx, session, client, peer, up, down)
    assert not session.up.splice and not session.down.splice


def test_no_full_size_pipe_means_copying(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the user's pipe quota F_SETPIPE_SZ fails (EPERM): a small pipe would be slower than
    copying, so the direction copies, and its pipe is closed."""
    real = fcntl.fcntl

    def quota(fd: int, cmd: int, *args: object) -> object:
        if cmd == fcntl.F_SETPIPE_SZ:
            raise OSError(errno.EPERM, "Operation not permitted")
        return real(fd, cmd, *args)

    monkeypatch.setattr(fcntl, "fcntl", quota)
    ctx, session, client, peer = start_kind(kind)
    assert exchange(ctx, session, client, peer, payload(1 << 20, 10), payload(1 << 20, 11)) \
        == set()
    assert not session.up.splice and session.up.pipe_r == -1


def test_without_splice_in_os_the_relay_copies(kind: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "splice")
    ctx, session, client, peer = start_kind(kind)
    assert exchange(ctx, session, client, peer, payload(1 << 20, 7), b"ok") == set()


@pytest.mark.usefixtures("splicing")
def test_a_member_that_does_not_read_stops_the_client_being_read(kind: str) -> None:
    """Back-pressure on the splice path: at most one pipe's worth is held, and the client is
    not read again until it has gone out."""
    ctx, session, client, peer = start_kind(kind)
    exchange(ctx, session, client, peer, payload(1 << 20, 8), b"")  # now splicing
    # Fixed socket buffers (no TCP autotuning, which can grow loopback buffers to absorb
    # megabytes), so what the sockets can hold is small next to what the client offers.
    assert session.upstream is not None
    for sock in (client, session.client, session.upstream, peer):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 128 * 1024)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 128 * 1024)
    data = payload(16 << 20, 9)
    sent = 0
    stalled = 0
    while stalled < 50 and sent < len(data):  # until the client's writes stop going through
        try:
            sent += client.send(data[sent:sent + 65536])
            stalled = 0
        except BlockingIOError:
            stalled += 1
        ctx.loop.run_once(0.001)
    assert sent < len(data), "the relay kept taking bytes nobody read"
    assert session.up.spliced and session.up.waiting()
    assert session.up.in_pipe <= relay.PIPE_SIZE
    assert not ctx.loop.masks[session.client_fd] & READ  # the client is not read meanwhile
    received = Reader(peer)
    ctx.run_until(lambda: len(received.poll()) == sent, timeout=30)
    assert received.data == data[:sent]
