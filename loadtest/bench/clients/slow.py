"""Slow clients, as slowhttptest makes them: `body` connections send a POST head announcing a
large body, then one small piece of it every `interval` seconds (slowhttptest -B); `reader`
connections ask for a large response with a small receive window and read a few bytes every
`interval` seconds (slowhttptest -X). A connection the front closes is opened again, so the
pressure stays at `count` connections for the whole run. One thread drives them all."""

from __future__ import annotations

import errno
import socket
import threading

BODY, READER = "body", "reader"


class SlowClients:
    def __init__(self, host: str, port: int, kind: str, count: int, *, interval: float = 1.0,
                 body_length: int = 10_000_000, response_path: str = "/?size=50000000",
                 piece: int = 16) -> None:
        self.host, self.port, self.kind, self.count = host, port, kind, count
        self.interval, self.piece = interval, piece
        if kind == BODY:
            self.request = (f"POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: "
                            f"{body_length}\r\nContent-Type: text/plain\r\n\r\n").encode()
        else:
            self.request = f"GET {response_path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        self.socks: list[socket.socket | None] = [None] * count
        self.opened = 0      # connections opened, reopenings included
        self.cut = 0         # connections the front closed (or answered) that were reopened
        self.answers: dict[str, int] = {}  # the status lines of what the front answered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"slow-{kind}", daemon=True)

    def start(self) -> SlowClients:
        for i in range(self.count):
            self._open(i)
        self._thread.start()
        return self

    def open_now(self) -> int:
        return sum(s is not None for s in self.socks)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.socks:
            if sock is not None:
                sock.close()

    def _open(self, i: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.kind == READER:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        try:
            sock.connect((self.host, self.port))
            sock.sendall(self.request)
        except OSError:
            sock.close()
            self.socks[i] = None
            return
        sock.setblocking(False)
        self.socks[i] = sock
        self.opened += 1

    def _tick(self, i: int, sock: socket.socket) -> None:
        try:
            if self.kind == BODY:
                try:
                    data = sock.recv(4096)  # an answer (408, 503...) means it was refused
                except BlockingIOError:
                    sock.send(b"x" * self.piece)
                    return
                if data:
                    line = data.split(b"\r\n", 1)[0].decode("latin-1")
                    self.answers[line] = self.answers.get(line, 0) + 1
            else:
                data = sock.recv(self.piece)
                if data:
                    if data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 200"):
                        line = data.split(b"\r\n", 1)[0].decode("latin-1")
                        self.answers[line] = self.answers.get(line, 0) + 1
                    return
        except BlockingIOError:
            return
        except OSError as err:
            if err.errno not in (errno.ECONNRESET, errno.EPIPE):
                raise
        sock.close()
        self.cut += 1
        self._open(i)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for i, sock in enumerate(self.socks):
                if self._stop.is_set():
                    return
                if sock is None:
                    self._open(i)
                else:
                    self._tick(i, sock)
