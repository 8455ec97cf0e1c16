"""TCP mode: each client connection is relayed, byte for byte, to one member picked for it.

A connect that is refused or times out marks the member in error (through the master) and the
next member is tried, up to `retries` others. Once connected, bytes flow both ways with
back-pressure (a side is read only when what was read from it before has been fully written)
and half-close (one side's EOF becomes a shutdown(SHUT_WR) of the other once flushed). Each
direction is a relay.Direction: bulk transfers go through a kernel pipe with splice(2) once a
read has brought 64 KiB, small exchanges are copied through the worker's buffer.

On a TLS listener the client socket is an SSLSocket (the worker finished the handshake): both
directions copy (hbfork terminates TLS and relays plain bytes), decrypted bytes OpenSSL holds
beyond what epoll can see are read at once, and the member's EOF becomes a TLS close_notify to
the client rather than a TCP half-close (which would leave the client's TLS stream cut short).
"""

from __future__ import annotations

import errno
import socket
import ssl
import time

from hbfork.core.client_address import Origin
from hbfork.proxy.context import SessionContext
from hbfork.proxy.loop import EPOLLIN, ERROR, HANGUP, RDHUP, READ, WRITE
from hbfork.proxy.proxy_header import send_header
from hbfork.proxy.relay import SPLICE_AFTER, Direction
from hbfork.proxy.upstreams import RETRIES_SPENT, Acquired, PoolView, Target, Wait
from hbfork.system.logs import log

_RESET = (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH)


class TcpSession:
    __slots__ = (
        "client",
        "client_fd",
        "client_ip",
        "closed",
        "connecting",
        "ctx",
        "down",
        "member",
        "origin",
        "outcome",
        "queue_rank",
        "queued_at",
        "reserved",
        "started",
        "target",
        "timer",
        "tls",
        "tried",
        "up",
        "upstream",
        "upstream_fd",
    )
    # The front queue ranks every connection by its arrival (plain FIFO): each is a new one,
    # with no exchanges to tell them apart (HTTP ranks new connections queue_fresh_offset later).
    returning = True

    def __init__(self, ctx: SessionContext, client: socket.socket, client_ip: str = "-",
                 listen: object = None, origin: Origin | None = None) -> None:
        self.ctx = ctx
        self.client_ip = client_ip  # the client: the peer, or what its PROXY header said
        self.origin = origin  # what a PROXY header said (None: the socket's own addresses)
        self.client = client
        self.client_fd = client.fileno()
        self.started = ctx.loop.now
        self.member: Target | None = None  # the last member tried (the access log's)
        self.outcome = ""  # how it ended, when not by both sides closing (the access log's)
        self.upstream: socket.socket | None = None
        self.upstream_fd = -1
        self.target: Target | None = None
        self.tried: set[int] = set()
        self.connecting = False
        self.closed = False
        self.queued_at = 0.0   # waiting in the front queue since (0: not waiting)
        self.queue_rank = 0    # its rank there (hbfork.core.queue_order), set by the queue
        self.reserved = False  # counted in flight to self.target
        self.timer = ctx.loop.timer(self.on_deadline)
        self.tls = isinstance(client, ssl.SSLSocket)
        if self.tls:  # no splicing ciphertext: both directions copy
            self.up = Direction(splice=False)
            self.down = Direction(splice=False, tls_sink=True)
        else:
            self.up = Direction()    # client -> member
            self.down = Direction()  # member -> client
        ctx.loop.add(self.client_fd, 0, self._on_client)
        self._connect_next()

    # --- connecting, with failover

    def _connect_next(self) -> None:
        ctx = self.ctx
        pool = ctx.upstreams.default
        got = ctx.upstreams.acquire(pool, ctx.loop.now, self.tried, None, bool(self.queued_at))
        if type(got) is not Acquired:
            if type(got) is Wait:
                return self._wait(pool)
            if got.reason != RETRIES_SPENT:
                ctx.count_no_member(pool)
            self.outcome = "connect_failed" if self.tried else "no_member"
            return self.close()
        target = got.target
        if self.tried:
            ctx.count_retry()
        self.tried.add(target.slot)
        self.target, self.reserved = target, True  # choose() counted it in flight already
        self.member = target
        try:
            sock, err = ctx.connect(target)
        except OSError as error:  # out of fds or memory: our problem, not the member's
            ctx.resource_error(error)
            self.outcome = "resources"
            return self.close()
        self.target, self.upstream, self.upstream_fd = target, sock, sock.fileno()
        if err not in (0, errno.EINPROGRESS):
            return self._connect_failed(err)
        self.connecting = True
        ctx.loop.add(self.upstream_fd, WRITE, self._on_upstream)
        ctx.loop.set_timer(self.timer, ctx.loop.now + pool.connect_timeout)

    def _wait(self, pool: PoolView) -> None:
        """Every member is full: the connection waits (accepted, not yet connected)."""
        if not self.queued_at:
            if not self.ctx.enqueue(pool, self):
                self.outcome = "queue_full"
                return self.close()
            self.ctx.loop.set_mask(self.client_fd, RDHUP)  # to see it leave
            self.ctx.loop.set_timer(self.timer, self.ctx.loop.now + pool.queue_timeout)

    def try_dispatch(self) -> bool:
        """From the queue: connect now if a member has room; True when it no longer waits."""
        if self.closed:
            return True
        self._connect_next()
        if self.closed or self.target is not None:
            self.queued_at = 0.0
            return True
        return False

    @property
    def pinned(self) -> bool:
        return False

    def _release(self) -> None:
        if self.reserved and self.target is not None:
            self.reserved = False
            self.ctx.upstreams.finished(self.target, 0)

    def _connect_failed(self, err: int) -> None:
        assert self.target is not None and self.upstream is not None
        self.ctx.member_failed(self.target, errno.errorcode.get(err, str(err)),
                               self.ctx.upstreams.default.retry_ms)
        self._release()
        self.ctx.loop.remove(self.upstream_fd)
        self.upstream.close()
        self.upstream, self.upstream_fd, self.connecting = None, -1, False
        self.target = None
        self._connect_next()

    def _connected(self) -> None:
        assert self.target is not None and self.upstream is not None
        version = self.ctx.upstreams.default.settings.proxy_protocol
        if version and not send_header(self.upstream, version, self.origin, self.client):
            return self._connect_failed(errno.EPIPE)  # first, before any client byte
        self.connecting = False
        self._touch()
        self._update_interest()

    def on_deadline(self, now: float) -> None:
        if self.queued_at:
            self.ctx.leave_queue(self.ctx.upstreams.default, self, "timeout")
            self.queued_at = 0.0
            self.outcome = "queue_timeout"
            self.close()
        elif self.connecting:
            self._connect_failed(errno.ETIMEDOUT)
        else:
            self.outcome = "idle_timeout"
            self.close()  # idle for client_timeout in both directions

    def _touch(self) -> None:
        loop = self.ctx.loop
        loop.set_timer(self.timer, loop.now + self.ctx.http.client_timeout)

    # --- events

    def _on_client(self, mask: int) -> None:
        if mask == EPOLLIN and self.upstream is not None and not self.connecting and \
                self.up.idle_copy() and not self.tls:
            return self._copy_now(self.client, self.up, self.upstream, True)
        if self.queued_at:
            if mask & (ERROR | RDHUP):
                self.close()  # gone while waiting: it leaves the queue
            return
        if self.connecting or self.upstream is None:
            if mask & ERROR:  # the client went away while we dial: give up
                self.close()
            return
        self._pump(mask, self.client, self.up, self.upstream, self.down)

    def _on_upstream(self, mask: int) -> None:
        assert self.upstream is not None
        if mask == EPOLLIN and not self.connecting and self.down.idle_copy() and not self.tls:
            return self._copy_now(self.upstream, self.down, self.client, False)
        if self.connecting:
            err = self.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            return self._connect_failed(err) if err else self._connected()
        self._pump(mask, self.upstream, self.down, self.client, self.up)

    def _pump(self, mask: int, sock: socket.socket, inbound: Direction, peer: socket.socket,
              outbound: Direction) -> None:
        """`sock` is readable and/or writable: read into `inbound`, flush `outbound` to it."""
        try:
            if mask & WRITE and outbound.waiting():
                self._flush(outbound, sock)
            if mask & ~WRITE and not inbound.eof and not inbound.waiting():
                self._read(sock, inbound, peer)
        except OSError as err:
            if err.errno not in _RESET:
                log.debug("tcp relay error: %s", err)
            self.outcome = "reset"
            return self.close()
        self._touch()
        if self.up.shut and self.down.shut:
            return self.close()
        if mask & HANGUP and inbound.eof and outbound.shut:
            # Nothing more to read from or write to this socket, yet epoll reports HUP on
            # every wait: stop watching it while the other direction finishes.
            self.ctx.loop.remove(sock.fileno())
        self._update_interest()

    def _copy_now(self, source: socket.socket, pipe: Direction, sink: socket.socket,
                  from_client: bool) -> None:
        """The common event, straight through: `source` is readable, nothing of this direction
        waits and it still copies (small exchanges): read, write, done. Anything else (EOF, a
        sink that takes only part, an error) is left in the Direction for the general path."""
        ctx = self.ctx
        buffer = ctx.buffer
        try:
            n = source.recv_into(buffer)
        except BlockingIOError:
            return
        except OSError:
            return self._pump(EPOLLIN, source, pipe, sink, self.down if from_client else self.up)
        if n == 0:
            pipe.eof = True
            if not pipe.waiting():
                self._shut(pipe, sink)
            if self.up.shut and self.down.shut:
                return self.close()
            return self._update_interest()
        if n >= SPLICE_AFTER:
            pipe.bulk = True  # a bulk transfer: the next read splices
        pipe.total += n
        ctx.count_bytes(from_client, n)
        try:
            sent = sink.send(buffer[:n])
        except BlockingIOError:
            sent = 0
        except OSError as err:
            if err.errno not in _RESET:
                log.debug("tcp relay error: %s", err)
            self.outcome = "reset"
            return self.close()
        loop = ctx.loop
        loop.set_timer(self.timer, loop.now + ctx.http.client_timeout)
        if sent < n:
            pipe.pending = bytes(buffer[sent:n])
            self._update_interest()

    def _read(self, source: socket.socket, pipe: Direction, sink: socket.socket) -> None:
        n = pipe.read(source, sink, self.ctx.buffer)
        if n > 0:
            pipe.total += n
            self.ctx.count_bytes(source is self.client, n)
        if pipe.eof and not pipe.waiting():
            self._shut(pipe, sink)
        if self.tls and source is self.client:
            self._read_tls_pending()

    def _read_tls_pending(self) -> None:
        """Decrypted client bytes OpenSSL already holds: epoll will not report them, so they
        are taken now (as long as the member takes what is read)."""
        up, client = self.up, self.client
        while not up.eof and not up.waiting() and client.pending():  # type: ignore[attr-defined]
            assert self.upstream is not None
            n = up.read(client, self.upstream, self.ctx.buffer)
            if n > 0:
                up.total += n
                self.ctx.count_bytes(True, n)
            if up.eof and not up.waiting():
                self._shut(up, self.upstream)

    def _flush(self, pipe: Direction, sink: socket.socket) -> None:
        pipe.flush(sink)
        if pipe.eof and not pipe.waiting():
            self._shut(pipe, sink)
        if self.tls and pipe is self.up and self.upstream is not None:
            self._read_tls_pending()  # the member took what waited: OpenSSL may hold more

    @staticmethod
    def _shut(pipe: Direction, sink: socket.socket) -> None:
        if not pipe.shut:
            pipe.shut = True
            if isinstance(sink, ssl.SSLSocket):
                _close_notify(sink)
                return
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _update_interest(self) -> None:
        loop = self.ctx.loop
        up, down = self.up, self.down
        up_waiting, down_waiting = up.waiting(), down.waiting()
        client_mask = (READ if not up.eof and not up_waiting else 0) | \
            (WRITE if down_waiting else 0)
        upstream_mask = (READ if not down.eof and not down_waiting else 0) | \
            (WRITE if up_waiting else 0)
        loop.set_mask(self.client_fd, client_mask)
        loop.set_mask(self.upstream_fd, upstream_mask)

    # --- end

    def drain(self) -> None:
        """Graceful stop: a relayed connection is left to finish (or to hit the deadline)."""

    def log_fields(self, now: float) -> dict[str, object]:
        """What the access log records of the connection that just closed."""
        member = self.member
        outcome = self.outcome or ("closed" if self.up.shut and self.down.shut else "aborted")
        return {"client": self.client_ip, "peer": self.client_ip,
                "member": member.address if member is not None else "",
                "member_name": member.label if member is not None else "",
                "bytes_in": self.up.total, "bytes_out": self.down.total,
                "bytes": self.down.total, "total_seconds": now - self.started,
                "outcome": outcome, "status": 0,
                "started": time.time() - (now - self.started)}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.queued_at:
            self.outcome = self.outcome or "client_gone"
            self.ctx.leave_queue(self.ctx.upstreams.default, self, "gone")
            self.queued_at = 0.0
        loop = self.ctx.loop
        loop.cancel(self.timer)
        self._release()
        self.up.close()
        self.down.close()
        if self.upstream is not None:
            loop.remove(self.upstream_fd)
            self.upstream.close()
        loop.remove(self.client_fd)
        self.client.close()
        self.ctx.session_closed(self)


def _close_notify(sock: ssl.SSLSocket) -> None:
    """End our half of a TLS stream: send close_notify (SSLSocket.shutdown would drop the TLS
    layer and cut the stream). Without the client's own close_notify yet, OpenSSL says it
    wants to read: that is expected, and the client's bytes can still be read after it."""
    try:
        sock.unwrap()
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        pass
    except (ssl.SSLError, OSError, ValueError):
        pass  # the connection is gone already: closing is all that is left
