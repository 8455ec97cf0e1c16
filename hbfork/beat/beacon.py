"""Sending heartbeats: the API a Python service uses to report its own load, and the engine of
`hbfork beat` and `hbfork backend`.

    from hbfork.beat.beacon import Beacon
    beacon = Beacon(("239.0.0.1", 27999), port=8080, source="10.0.0.11")
    beacon.start(lambda: (idle_workers(), busy_workers()))   # a daemon thread, once a second

Each datagram is mod_heartbeat's `v=1&ready=N&busy=M` plus `port=P` (so the receiver knows which
service on the host it describes), signed with `&ts=...&sig=...` when keys are given.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from hbfork.core import heartbeat
from hbfork.core.addresses import parse_ip

Load = Callable[[], tuple[int, int]]


class Beacon:
    def __init__(self, to: tuple[str, int], *, port: int | None = None,
                 source: str | None = None, ttl: int = 1, key: bytes | None = None,
                 interval: float = 1.0) -> None:
        self.to = to
        self.port = port
        self.source = source
        self.ttl = ttl
        self.key = key
        self.interval = interval
        self.sent = 0
        self._last_ts = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sock = self._open()

    def _open(self) -> socket.socket:
        destination = parse_ip(self.to[0])
        family = socket.AF_INET6 if destination.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if self.source:
            sock.bind((self.source, 0))
        if destination.is_multicast:
            if family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                if self.source:
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                    socket.inet_aton(self.source))
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, self.ttl)
        return sock

    def datagram(self, ready: int, busy: int) -> bytes:
        payload = heartbeat.encode(max(0, ready), max(0, busy), self.port)
        if self.key is None:
            return payload
        # ts must grow strictly even when beating faster than the clock's resolution.
        ts = max(time.time(), self._last_ts + 1e-6)
        self._last_ts = ts
        return heartbeat.sign(payload, self.key, ts)

    def send(self, ready: int, busy: int) -> None:
        """Send one heartbeat now; network errors are swallowed (the next beat retries)."""
        try:
            self.sock.sendto(self.datagram(ready, busy), self.to)
            self.sent += 1
        except OSError:
            pass

    def run(self, load: Load, count: int | None = None) -> None:
        """Beat every `interval` seconds until stop() (or `count` beats)."""
        next_at = time.monotonic()
        while not self._stop.is_set() and (count is None or self.sent < count):
            try:
                ready, busy = load()
            except Exception:
                ready, busy = 0, 0  # an unknown load must not attract traffic
            self.send(ready, busy)
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self, load: Load) -> threading.Thread:
        """Beat from a daemon thread."""
        self._thread = threading.Thread(target=self.run, args=(load,), name="hbfork-beat",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sock.close()
