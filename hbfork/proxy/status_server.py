"""The status listener's I/O in a worker: one short request per connection, answered from the
shared table (hbfork.ops.status_pages renders it; /healthz is hbfork.ops.health) and closed."""

from __future__ import annotations

import os
import socket
import time

from hbfork.core import http11, http_heads
from hbfork.core.addresses import IPNetwork, ip_allowed, parse_ip
from hbfork.core.config import Config
from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import Limits
from hbfork.ops import health
from hbfork.ops.snapshot import snapshot
from hbfork.ops.status_pages import respond
from hbfork.proxy.loop import READ, WRITE, Loop
from hbfork.system.tls import TlsContexts
from hbfork.table.layout import W_MASTER_PID
from hbfork.table.table import Table

STATUS_TIMEOUT = 5.0


class StatusServer:
    def __init__(self, loop: Loop, table: Table, listener: socket.socket,
                 allow: tuple[IPNetwork, ...], limits: Limits,
                 config: Config | None = None, tls: TlsContexts | None = None) -> None:
        self.loop = loop
        self.table = table
        self.config = config
        self.certificates = [{"names": list(c.names), "file": c.cert, "not_after": c.not_after}
                             for c in (tls.certificates if tls else ())]
        self.listener = listener
        self.allow = allow
        self.limits = limits
        self.open = 0  # connections accepted and not closed yet (a draining worker waits)
        self.accepting = True
        loop.add(listener.fileno(), READ, self._on_accept)

    def _on_accept(self, mask: int) -> None:
        for _ in range(8):
            try:
                sock, address = self.listener.accept()
            except OSError:
                return  # nothing queued (EAGAIN), or out of fds: the next wake-up retries
            sock.setblocking(False)
            if not ip_allowed(parse_ip(address[0].split("%")[0]), self.allow):
                sock.close()
                continue
            _StatusConnection(self, sock)

    def healthz(self, method: bytes) -> bytes:
        table = self.table
        # A worker's parent is its master: if that changed, the master is gone (the worker
        # is about to exit too, but must not say "healthy" meanwhile).
        alive = os.getppid() == table.header(W_MASTER_PID)
        max_age = self.config.heartbeat.max_age if self.config is not None else 10.0
        return health.http_response(
            health.verdict(snapshot(table, self.config), max_age, alive), method)

    def close(self) -> None:
        """Accept no more (this worker's copy of the shared listener: the others, and the
        next generation, go on accepting); the connections open finish."""
        if self.accepting:
            self.accepting = False
            self.loop.remove(self.listener.fileno())
            self.listener.close()


class _StatusConnection:
    __slots__ = ("inbuf", "loop", "out", "server", "sock", "timer")

    def __init__(self, server: StatusServer, sock: socket.socket) -> None:
        self.server = server
        self.loop = server.loop
        self.sock = sock
        self.inbuf = bytearray()
        self.out = b""
        self.timer = self.loop.timer(self.on_deadline)
        server.open += 1
        self.loop.add(sock.fileno(), READ, self._on_event)
        self.loop.set_timer(self.timer, self.loop.now + STATUS_TIMEOUT)

    def on_deadline(self, now: float) -> None:
        self.close()

    def _on_event(self, mask: int) -> None:
        try:
            if self.out:
                return self._write()
            data = self.sock.recv(8192)
            if not data:
                return self.close()
            self.inbuf += data
            end = http11.find_head(self.inbuf, 0, 8192, 16384)
            if end < 0:
                return
            head = http11.parse_request_head(bytes(self.inbuf[:end]), self.server.limits)
            if head.target.split(b"?", 1)[0] == b"/healthz":
                self.out = self.server.healthz(head.method)
            else:
                self.out = respond(self.server.table, head.target, head.method,
                                   self.server.config, self.server.certificates)
        except ProtocolError as err:
            self.out = http_heads.error_response(err.status, err.detail,
                                                 date=http_heads.http_date(time.time()))
        except OSError:
            return self.close()
        self._write()

    def _write(self) -> None:
        try:
            sent = self.sock.send(self.out)
        except BlockingIOError:
            sent = 0
        except OSError:
            return self.close()
        self.out = self.out[sent:]
        if self.out:
            self.loop.set_mask(self.sock.fileno(), WRITE)
        else:
            self.close()

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        self.server.open -= 1
        self.loop.cancel(self.timer)
        self.loop.remove(self.sock.fileno())
        self.sock.close()
