"""Accepting client connections in a worker, fairly across workers and within limits.

Every worker watches the shared listeners with EPOLLEXCLUSIVE, and re-registers them every
ACCEPT_REARM accepts: that moves it to the back of the kernel's wake-up queue so connections
spread over workers (plain EPOLLEXCLUSIVE wakes the same worker nearly every time). Accepting
pauses at `max_connections` and resumes when a connection closes; running out of file
descriptors pauses it for EMFILE_BACKOFF instead of spinning. A worker above its share of
connections hands what it accepts to a less loaded one (hbfork.proxy.handoff).
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Callable

from hbfork.core.ratelimit import LogLimiter
from hbfork.proxy.handoff import Handoff
from hbfork.proxy.loop import Loop
from hbfork.system.logs import log

ACCEPT_REARM = 16
ACCEPT_BATCH = 16
EMFILE_BACKOFF = 0.1

# (client socket, client IP, index of the listener) -> None; the callback owns the socket
OnAccepted = Callable[[socket.socket, str, int], None]


class Acceptor:
    def __init__(self, loop: Loop, listeners: list[socket.socket], limit: int,
                 open_count: Callable[[], int], on_accepted: OnAccepted,
                 on_count: Callable[[], None], handoff: Handoff | None = None) -> None:
        self.loop = loop
        self.listeners = listeners
        self.limit = limit
        self.open_count = open_count    # connections the worker holds now
        self.on_accepted = on_accepted
        self.on_count = on_count        # one more connection accepted (a counter)
        self.accepting = False
        self.closed = False             # draining: listeners closed, never accept again
        self.paused = False             # out of fds: accepting resumes when the timer fires
        self.since_rearm = 0
        self.handoff = handoff
        self.resume_timer = loop.timer(self._resume)
        self._log_limiter = LogLimiter(5.0)

    def start(self) -> None:
        if self.accepting or self.closed:
            return
        self.accepting = True
        for index, listener in enumerate(self.listeners):
            self.loop.add(listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE,
                          self._on_readable(listener, index))

    def stop(self) -> None:
        if self.accepting:
            self.accepting = False
            for listener in self.listeners:
                self.loop.remove(listener.fileno())

    def connection_closed(self) -> None:
        """A connection ended: resume accepting if the limit had paused it."""
        if not self.accepting and not self.closed and not self.paused \
                and self.open_count() < self.limit:
            self.start()

    def _on_readable(self, listener: socket.socket, index: int) -> Callable[[int], None]:
        def on_readable(mask: int) -> None:
            self._accept(listener, index)
        return on_readable

    def _accept(self, listener: socket.socket, index: int) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.open_count() >= self.limit:
                self.stop()  # resumed when a connection closes
                return
            try:
                client, address = listener.accept()
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                # Out of fds or memory, or unexpected: pause rather than spin or crash.
                self.back_off(err)
                return
            self.since_rearm += 1
            ip = _peer_ip(address)
            if self.handoff is not None and \
                    self.handoff.hand_over(client, ip, index, self.open_count()):
                continue
            self.on_count()
            self.on_accepted(client, ip, index)
        if self.handoff is not None:
            self.handoff.batch_done()
        if self.since_rearm >= ACCEPT_REARM and self.accepting:
            # Go to the back of the exclusive wake-up queue so the next wake-up is another
            # worker's (EPOLL_CTL_MOD cannot be used with EPOLLEXCLUSIVE).
            self.since_rearm = 0
            self.stop()
            self.start()

    def adopt(self, client: socket.socket, client_ip: str, index: int) -> None:
        """A connection another worker accepted and handed to us: ours like our own."""
        self.on_count()
        self.on_accepted(client, client_ip, index)

    def back_off(self, err: OSError) -> None:
        """Out of file descriptors: stop accepting for a moment instead of spinning."""
        self.stop()
        self.paused = True
        self.loop.set_timer(self.resume_timer, self.loop.now + EMFILE_BACKOFF)
        more = self._log_limiter.note("accept", self.loop.now)
        if more is not None:
            log.warning("accept failed (%s); pausing accepts for %.1fs with %d connections "
                        "open%s", os.strerror(err.errno or 0), EMFILE_BACKOFF,
                        self.open_count(), more)

    def _resume(self, now: float) -> None:
        self.paused = False
        if not self.closed and self.open_count() < self.limit:
            self.start()

    def close(self, backlog: int) -> None:
        """Draining: take the connections already queued, then close our listener copies.

        EPOLLEXCLUSIVE may have woken only us for connections still queued: they are taken
        (served, then closed) rather than left to the next arrival. Only our copies close:
        the master and newer workers keep theirs."""
        self.stop()
        self.closed = True
        for index, listener in enumerate(self.listeners):
            for _ in range(backlog):
                try:
                    client, address = listener.accept()
                except OSError:
                    break  # empty (EAGAIN), or out of fds: the new generation takes the rest
                self.on_count()
                self.on_accepted(client, _peer_ip(address), index)
            listener.close()


def _peer_ip(address: object) -> str:
    """The client's IP from accept()'s address ("-" where there is none, as on Unix sockets)."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return "-"
