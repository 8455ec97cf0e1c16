"""Per-worker pools of idle keep-alive connections to members, bounded and idle-timed-out.

An idle connection stays registered for reading: if the member closes it (or sends anything,
which it must not), it is dropped at once instead of failing the next request that takes it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from hbfork.proxy.loop import READ, Loop
from hbfork.proxy.tls import TlsWriter, peek
from hbfork.proxy.upstreams import Target


class MemberConnection:
    __slots__ = ("closed", "fd", "handshaking", "on_idle_event", "pool", "pooled", "private",
                 "probe", "reused", "sock", "target", "timer", "tls")

    def __init__(self, sock: socket.socket, target: Target, pool: ConnectionPool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.target = target
        self.pool = pool
        self.reused = False      # True once it served a request and came back to the pool
        self.closed = False
        self.tls: TlsWriter | None = None  # a TLS connection: writes go through it
        self.handshaking = False  # connected, TLS handshake not finished yet
        self.pooled = False       # idle in the pool, waiting for a request
        self.private = False      # it told the member its client (a PROXY header): never pooled
        self.probe = False        # dialled to a member that closed kept ones (core.reopen)
        self.timer = pool.loop.timer(self.on_deadline)
        # Bound once: the loop calls it for any event while the connection is idle.
        self.on_idle_event = self._on_idle_event

    def start_tls(self, context: ssl.SSLContext, server_name: str) -> None:
        """Wrap the connected socket for TLS; the handshake is driven by the session."""
        self.sock = context.wrap_socket(self.sock, server_hostname=server_name,
                                        do_handshake_on_connect=False)
        self.tls = TlsWriter()
        self.handshaking = True

    def on_deadline(self, now: float) -> None:
        # Idle in the pool for pool_idle_timeout. The timer is not stopped when a request takes
        # the connection (that would cost a timer move per request): a deadline that comes
        # while it is in use is ignored, and checkin sets the next one.
        if self.pooled:
            self.pool.discard(self)

    def _on_idle_event(self, mask: int) -> None:
        self.pool.discard(self)  # the member closed it, or sent what it must not
        self.pool.member_closed(self.target.slot)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            loop = self.pool.loop
            loop.cancel(self.timer)
            loop.remove(self.fd)
            self.sock.close()


class ConnectionPool:
    def __init__(self, loop: Loop, size: int, idle_timeout: float) -> None:
        self.loop = loop
        self.idle: dict[int, list[MemberConnection]] = {}
        self.size = size
        self.idle_timeout = idle_timeout
        self.closed = False  # after close_all(): connections checked in are closed
        # Told when a member closes a connection it kept alive, by the pool and by the sessions
        # (an answer saying close, a reused connection found closed): slot. hbfork.core.reopen.
        self.member_closed: Callable[[int], None] = lambda slot: None

    def checkout(self, target: Target, verify: bool = True,
                 tls: bool = False) -> MemberConnection | None:
        """An idle connection to `target` (a TLS one when `tls`), or None. With `verify`, one
        that still looks open (a MSG_PEEK syscall); without, a close that epoll has not
        reported yet is possible."""
        conns = self.idle.get(target.slot)
        while conns:
            conn = conns.pop()
            conn.pooled = False
            if conn.target.uid != target.uid or (conn.tls is not None) != tls:
                conn.close()
                continue
            if verify and not still_open(conn.sock):
                conn.close()
                self.member_closed(target.slot)
                continue
            return conn
        return None

    def checkin(self, conn: MemberConnection) -> None:
        """Keep `conn` for the next request to its member, or close it if the pool is full."""
        conns = self.idle.setdefault(conn.target.slot, [])
        if self.closed or len(conns) >= self.size or conn.closed or conn.private:
            conn.close()
            return
        conn.reused = True
        conn.pooled = True
        loop = self.loop
        loop.handlers[conn.fd] = conn.on_idle_event
        loop.set_mask(conn.fd, READ)
        loop.set_timer(conn.timer, loop.now + self.idle_timeout)
        conns.append(conn)

    def discard(self, conn: MemberConnection) -> None:
        conn.pooled = False
        conns = self.idle.get(conn.target.slot)
        if conns and conn in conns:
            conns.remove(conn)
        conn.close()

    def close_all(self) -> None:
        """Close every idle connection, and from now on every connection checked in."""
        self.closed = True
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


def still_open(sock: socket.socket) -> bool:
    try:
        peek(sock)
    except BlockingIOError:
        return True  # nothing to read: open and idle, as it should be
    except OSError:
        return False
    return False  # EOF, or bytes a member must not send unasked
