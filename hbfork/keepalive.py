"""Per-worker pools of idle keep-alive connections to members, bounded and idle-timed-out.

An idle connection stays registered for reading: if the member closes it (or sends anything,
which it must not), it is dropped at once instead of failing the next request that takes it.

A connection taken from the pool keeps its idle deadline and ignores it when it comes due:
clearing it would make every return to the pool a new entry in the loop's deadline heap,
while a deadline that only moves later costs nothing there.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from hbfork.loop import READ
from hbfork.upstreams import Target

if TYPE_CHECKING:
    from hbfork.worker import Worker


class MemberConnection:
    __slots__ = ("closed", "deadline", "fd", "idle", "pool", "reused", "sock", "target")

    def __init__(self, sock: socket.socket, target: Target, pool: ConnectionPool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.target = target
        self.pool = pool
        self.reused = False      # True once it served a request and came back to the pool
        self.closed = False
        self.idle = False        # in the pool, waiting for a request
        self.deadline: float | None = None

    def on_deadline(self, now: float) -> None:
        if self.idle:
            self.pool.discard(self)  # idle for pool_idle_timeout

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.deadline = None
            self.pool.worker.loop.remove(self.fd)
            self.sock.close()


class ConnectionPool:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.idle: dict[int, list[MemberConnection]] = {}
        self.size = worker.config.http.pool_size
        self.idle_timeout = worker.config.http.pool_idle_timeout

    def checkout(self, target: Target) -> MemberConnection | None:
        """An idle connection to `target` that still looks open, or None."""
        conns = self.idle.get(target.slot)
        while conns:
            conn = conns.pop()
            conn.idle = False
            if conn.target.uid != target.uid or not _still_open(conn.sock):
                conn.close()
                continue
            return conn
        return None

    def checkin(self, conn: MemberConnection) -> None:
        """Keep `conn` for the next request to its member, or close it if the pool is full."""
        conns = self.idle.setdefault(conn.target.slot, [])
        if self.worker.draining or len(conns) >= self.size or conn.closed:
            conn.close()
            return
        conn.reused = True
        conn.idle = True
        loop = self.worker.loop
        loop.handlers[conn.fd] = lambda mask, conn=conn: self.discard(conn)
        loop.set_mask(conn.fd, READ)
        loop.set_deadline(conn, loop.now + self.idle_timeout)
        conns.append(conn)

    def discard(self, conn: MemberConnection) -> None:
        conn.idle = False
        conns = self.idle.get(conn.target.slot)
        if conns and conn in conns:
            conns.remove(conn)
        conn.close()

    def close_all(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


def _still_open(sock: socket.socket) -> bool:
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing to read: open and idle, as it should be
    except OSError:
        return False
    return False  # EOF, or bytes a member must not send unasked
