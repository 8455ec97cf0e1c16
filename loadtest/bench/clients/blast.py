"""A heartbeat blaster: valid heartbeats from many loopback sources, as fast as one process
sends them, to measure how many a master applies. Run as a separate process, so the
orchestrator can sample the proxy while it sends:

    python -m loadtest.bench.clients.blast HOST:PORT SOURCES SECONDS
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any


def source_addresses(count: int) -> list[str]:
    """127.1.0.1, 127.1.0.2, ...: `count` distinct loopback sources."""
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


def blast(target: tuple[str, int], sources: int, seconds: float) -> dict[str, Any]:
    """Send valid heartbeats round-robin from `sources` addresses as fast as possible."""
    socks = []
    for address in source_addresses(sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        sock.setblocking(False)
        socks.append(sock)
    payloads = [f"v=1&ready={10 + i % 90}&busy={i % 7}&port=80".encode()
                for i in range(sources)]
    sent = dropped = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        for sock, payload in zip(socks, payloads, strict=True):
            try:
                sock.sendto(payload, target)
                sent += 1
            except BlockingIOError:
                dropped += 1
    elapsed = time.monotonic() - start
    for sock in socks:
        sock.close()
    return {"sent": sent, "send_blocked": dropped, "seconds": elapsed,
            "sent_per_second": sent / elapsed}


def main(argv: list[str]) -> int:
    if len(argv) == 3:
        host, port = argv[0].rsplit(":", 1)
        print(json.dumps(blast((host, int(port)), int(argv[1]), float(argv[2]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
