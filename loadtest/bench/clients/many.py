"""Many distinct clients by address: keep-alive connections from N loopback sources
(127.1.x.y, one each), used in turn with a fixed number of requests in flight, so a front
keyed by client address sees N clients. Run as a separate process, so its CPU is not the
front's:

    python -m loadtest.bench.clients.many HOST:PORT CLIENTS SECONDS IN_FLIGHT

Once every connection is open and has carried one request, it prints "ready" and waits for a
line on stdin (so the orchestrator can sample the front's CPU after the accepts), then prints
one JSON line: requests, non2xx, errors, seconds, rps; and only then closes its connections.
"""

from __future__ import annotations

import json
import selectors
import socket
import sys
import time
from collections import deque
from typing import Any

from loadtest.bench.clients.blast import source_addresses

REQUEST = b"GET /index.html HTTP/1.1\r\nHost: bench\r\n\r\n"


def _complete(data: bytes) -> tuple[int, int] | None:
    """(status, bytes used) of the response at the start of `data`, or None if partial."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end].lower()
    length = 0
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:stop if stop > 0 else len(head)])
    if len(data) < end + 4 + length:
        return None
    return int(data[9:12]), end + 4 + length


def connect(target: tuple[str, int], clients: int) -> deque[socket.socket]:
    idle: deque[socket.socket] = deque()
    for address in source_addresses(clients):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address, 0))
        sock.connect(target)
        sock.setblocking(False)
        idle.append(sock)
    return idle


def run(idle: deque[socket.socket], seconds: float, in_flight: int,
        most: int = 0) -> dict[str, Any]:
    """Requests for `seconds` (or `most` requests, when given), `in_flight` at a time."""
    selector = selectors.DefaultSelector()
    sent = 0
    buffers: dict[socket.socket, bytes] = {}
    requests = non2xx = errors = 0
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        while len(buffers) < in_flight and idle and now < end and not (most and sent >= most):
            sent += 1
            sock = idle.popleft()
            try:
                sock.send(REQUEST)
            except OSError:
                errors += 1
                continue
            buffers[sock] = b""
            selector.register(sock, selectors.EVENT_READ)
        if not buffers:
            break
        for key, _ in selector.select(1.0):
            sock = key.fileobj  # type: ignore[assignment]
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                errors += 1
                selector.unregister(sock)
                del buffers[sock]
                sock.close()
                continue
            data = buffers[sock] + chunk
            done = _complete(data)
            if done is None:
                buffers[sock] = data
                continue
            status, _ = done
            requests += 1
            non2xx += not 200 <= status < 300
            selector.unregister(sock)
            del buffers[sock]
            idle.append(sock)  # back of the line: every client gets its turn
    elapsed = time.monotonic() - start
    return {"requests": requests, "non2xx": non2xx, "errors": errors, "seconds": elapsed,
            "rps": requests / elapsed if elapsed else 0.0}


def main(argv: list[str]) -> int:
    if len(argv) == 4:
        host, port = argv[0].rsplit(":", 1)
        idle = connect((host, int(port)), int(argv[1]))
        # One request on every connection first: the front has accepted them all by then.
        run(idle, 600, int(argv[3]), len(idle))
        print("ready", flush=True)
        sys.stdin.readline()
        print(json.dumps(run(idle, float(argv[2]), int(argv[3]))), flush=True)
        for sock in idle:
            sock.close()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
