"""Sending RFC 5424 messages (hbfork.core.syslog frames them) to a UDP endpoint or a unix
datagram socket. A datagram socket never waits for a reader: a message that cannot be sent
(nobody listens, the socket's buffer is full) is dropped and counted, never retried, so a
missing syslog daemon can slow nothing down. The socket is connected lazily and again after a
failure (a restarted daemon makes /dev/log anew)."""

from __future__ import annotations

import os
import socket
import time

from hbfork.core.syslog import Framer, SyslogDestination

RECONNECT_SECONDS = 1.0


class SyslogSender:
    def __init__(self, destination: SyslogDestination, facility: int, msgid: str,
                 app: str = "hbfork", blocking: bool = False) -> None:
        self.destination = destination
        self.framer = Framer(facility, socket.gethostname(), app, os.getpid(), msgid)
        self.blocking = blocking     # a writer thread may wait; a worker loop never does
        self.sock: socket.socket | None = None
        self.dropped = 0
        self.last_error = ""
        self._failed_at = 0.0

    def send(self, severity: int, message: str, epoch: float) -> bool:
        """Send one message; False (and counted) when it was dropped."""
        sock = self.sock or self._connect()
        if sock is None:
            self.dropped += 1
            return False
        try:
            sock.send(self.framer.frame(severity, message, epoch))
            return True
        except OSError as err:
            self.dropped += 1
            self.last_error = err.strerror or str(err)
            if not isinstance(err, BlockingIOError):
                self.close()  # refused or gone: connect again (later)
            return False

    def _connect(self) -> socket.socket | None:
        now = time.monotonic()
        if self._failed_at and now - self._failed_at < RECONNECT_SECONDS:
            return None
        udp = self.destination.udp
        family = socket.AF_UNIX if udp is None else \
            (socket.AF_INET6 if udp.ip.version == 6 else socket.AF_INET)
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(self.blocking)
        try:
            sock.connect(self.destination.path if udp is None else (str(udp.ip), udp.port))
        except OSError as err:
            sock.close()
            self._failed_at = now
            self.last_error = err.strerror or str(err)
            return None
        self._failed_at = 0.0
        self.sock = sock
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self._failed_at = time.monotonic()
