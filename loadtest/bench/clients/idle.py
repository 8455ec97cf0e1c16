"""Idle keep-alive clients: many connections that each made one request and then stay open,
to measure what holding them costs a front (memory, CPU while idle, its active clients)."""

from __future__ import annotations

import errno
import re
import selectors
import socket
import time


class IdleClients:
    """`count` keep-alive connections, each having made one request, then left idle."""

    def __init__(self, host: str, port: int, count: int, batch: int = 256,
                 timeout: float = 60, wave_timeout: float = 10) -> None:
        self.host, self.port, self.count = host, port, count
        self.socks: list[socket.socket] = []
        self.answered = 0
        self.failed = 0
        self._open(batch, timeout, wave_timeout)

    def _open(self, batch: int, timeout: float, wave_timeout: float) -> None:
        request = f"GET / HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
        deadline = time.monotonic() + timeout
        while len(self.socks) + self.failed < self.count and time.monotonic() < deadline:
            wave = min(batch, self.count - len(self.socks) - self.failed)
            self._wave(wave, request, min(deadline, time.monotonic() + wave_timeout))

    def _wave(self, n: int, request: bytes, deadline: float) -> None:
        selector = selectors.DefaultSelector()
        pending: dict[socket.socket, bytes] = {}
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((self.host, self.port))
            if err not in (0, errno.EINPROGRESS):
                sock.close()
                self.failed += 1
                continue
            pending[sock] = b""
            selector.register(sock, selectors.EVENT_WRITE)
        while pending and time.monotonic() < deadline:
            for key, events in selector.select(1.0):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        self._drop(selector, pending, sock)
                        continue
                    sock.send(request)
                    selector.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(selector, pending, sock)
                    continue
                pending[sock] += data
                if _complete(pending[sock]):
                    selector.unregister(sock)
                    del pending[sock]
                    self.socks.append(sock)
                    self.answered += 1
        for sock in list(pending):
            self._drop(selector, pending, sock)
        selector.close()

    def _drop(self, selector: selectors.BaseSelector, pending: dict, sock: socket.socket
              ) -> None:
        selector.unregister(sock)
        del pending[sock]
        sock.close()
        self.failed += 1

    def still_open(self) -> int:
        """Connections the server has not closed (a closed one reads as EOF)."""
        alive = 0
        for sock in self.socks:
            try:
                data = sock.recv(1, socket.MSG_PEEK)
                alive += bool(data)   # unexpected bytes: still open
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    return len(body) >= int(match.group(1)) if match else True
