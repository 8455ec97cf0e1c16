"""TCP mode: each client connection is relayed, byte for byte, to one member picked for it.

A connect that is refused or times out marks the member in error (through the master) and the
next member is tried, up to `retries` others. Once connected, bytes flow both ways with
back-pressure (a side is read only when what was read from it before has been fully written)
and half-close (one side's EOF becomes a shutdown(SHUT_WR) of the other once flushed).
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from hbfork.loop import ERROR, HANGUP, READ, WRITE
from hbfork.upstreams import Target

if TYPE_CHECKING:
    from hbfork.worker import Worker

_RESET = (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH)


def start_connect(target: Target) -> tuple[socket.socket, int]:
    """A non-blocking connect to `target`: (socket, 0 or EINPROGRESS or an errno)."""
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, sock.connect_ex(target.sockaddr)
    except OSError:
        sock.close()
        raise


class Pipe:
    """One direction of a relay: bytes read from `source` waiting to be written to `sink`."""

    __slots__ = ("eof", "pending", "shut")

    def __init__(self) -> None:
        self.pending = b""   # read but not yet written
        self.eof = False     # the source will send no more
        self.shut = False    # the sink has been shut down for writing


class TcpSession:
    __slots__ = (
        "client",
        "client_fd",
        "closed",
        "connecting",
        "down",
        "target",
        "timer",
        "tried",
        "up",
        "upstream",
        "upstream_fd",
        "worker",
    )

    def __init__(self, worker: Worker, client: socket.socket) -> None:
        self.worker = worker
        self.client = client
        self.client_fd = client.fileno()
        self.upstream: socket.socket | None = None
        self.upstream_fd = -1
        self.target: Target | None = None
        self.tried: set[int] = set()
        self.connecting = False
        self.closed = False
        self.timer = worker.loop.timer(self.on_deadline)
        self.up = Pipe()    # client -> member
        self.down = Pipe()  # member -> client
        worker.loop.add(self.client_fd, 0, self._on_client)
        self._connect_next()

    # --- connecting, with failover

    def _connect_next(self) -> None:
        worker = self.worker
        if len(self.tried) > worker.config.http.retries:
            return self.close()
        target = worker.upstreams.choose(self.tried)
        if target is None:
            worker.count_no_member()
            return self.close()
        if self.tried:
            worker.count_retry()
        self.tried.add(target.slot)
        try:
            sock, err = start_connect(target)
        except OSError as error:  # out of fds or memory: our problem, not the member's
            worker.resource_error(error)
            return self.close()
        self.target, self.upstream, self.upstream_fd = target, sock, sock.fileno()
        if err not in (0, errno.EINPROGRESS):
            return self._connect_failed(err)
        self.connecting = True
        worker.loop.add(self.upstream_fd, WRITE, self._on_upstream)
        worker.loop.set_timer(self.timer, worker.loop.now + worker.config.http.connect_timeout)

    def _connect_failed(self, err: int) -> None:
        assert self.target is not None and self.upstream is not None
        self.worker.member_failed(self.target, errno.errorcode.get(err, str(err)))
        self.worker.loop.remove(self.upstream_fd)
        self.upstream.close()
        self.upstream, self.upstream_fd, self.connecting = None, -1, False
        self._connect_next()

    def _connected(self) -> None:
        assert self.target is not None
        self.connecting = False
        self.worker.upstreams.started(self.target)
        self._touch()
        self._update_interest()

    def on_deadline(self, now: float) -> None:
        if self.connecting:
            self._connect_failed(errno.ETIMEDOUT)
        else:
            self.close()  # idle for client_timeout in both directions

    def _touch(self) -> None:
        loop = self.worker.loop
        loop.set_timer(self.timer, loop.now + self.worker.config.http.client_timeout)

    # --- events

    def _on_client(self, mask: int) -> None:
        if self.connecting or self.upstream is None:
            if mask & ERROR:  # the client went away while we dial: give up
                self.close()
            return
        self._pump(mask, self.client, self.up, self.upstream, self.down)

    def _on_upstream(self, mask: int) -> None:
        assert self.upstream is not None
        if self.connecting:
            err = self.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            return self._connect_failed(err) if err else self._connected()
        self._pump(mask, self.upstream, self.down, self.client, self.up)

    def _pump(self, mask: int, sock: socket.socket, inbound: Pipe, peer: socket.socket,
              outbound: Pipe) -> None:
        """`sock` is readable and/or writable: read into `inbound`, flush `outbound` to it."""
        try:
            if mask & WRITE and outbound.pending:
                self._flush(outbound, sock)
            if mask & ~WRITE and not inbound.eof and not inbound.pending:
                self._read(sock, inbound, peer)
        except OSError as err:
            if err.errno not in _RESET:
                self.worker.log.debug("tcp relay error: %s", err)
            return self.close()
        self._touch()
        if self.up.shut and self.down.shut:
            return self.close()
        if mask & HANGUP and inbound.eof and outbound.shut:
            # Nothing more to read from or write to this socket, yet epoll reports HUP on
            # every wait: stop watching it while the other direction finishes.
            self.worker.loop.remove(sock.fileno())
        self._update_interest()

    def _read(self, source: socket.socket, pipe: Pipe, sink: socket.socket) -> None:
        buffer = self.worker.buffer
        try:
            n = source.recv_into(buffer)
        except BlockingIOError:
            return
        if n == 0:
            pipe.eof = True
        else:
            self.worker.count_bytes(source is self.client, n)
            try:
                sent = sink.send(buffer[:n])
            except BlockingIOError:
                sent = 0
            if sent < n:
                pipe.pending = bytes(buffer[sent:n])
        if pipe.eof and not pipe.pending:
            self._shut(pipe, sink)

    def _flush(self, pipe: Pipe, sink: socket.socket) -> None:
        try:
            sent = sink.send(pipe.pending)
        except BlockingIOError:
            return
        pipe.pending = pipe.pending[sent:]
        if pipe.eof and not pipe.pending:
            self._shut(pipe, sink)

    @staticmethod
    def _shut(pipe: Pipe, sink: socket.socket) -> None:
        if not pipe.shut:
            pipe.shut = True
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _update_interest(self) -> None:
        loop = self.worker.loop
        up, down = self.up, self.down
        client_mask = (READ if not up.eof and not up.pending else 0) | \
            (WRITE if down.pending else 0)
        upstream_mask = (READ if not down.eof and not down.pending else 0) | \
            (WRITE if up.pending else 0)
        loop.set_mask(self.client_fd, client_mask)
        loop.set_mask(self.upstream_fd, upstream_mask)

    # --- end

    def drain(self) -> None:
        """Graceful stop: a relayed connection is left to finish (or to hit the deadline)."""

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.worker.loop
        loop.cancel(self.timer)
        if self.upstream is not None:
            loop.remove(self.upstream_fd)
            self.upstream.close()
            if self.target is not None and not self.connecting:
                self.worker.upstreams.finished(self.target, 0)
        loop.remove(self.client_fd)
        self.client.close()
        self.worker.session_closed(self)
