"""Micro-benchmark of the access log in the worker's loop thread: the CPU one request's line
costs in each format, for a fast-path exchange (lean heads), with the writer thread writing to
a file meanwhile (its CPU is not counted: time.thread_time of the loop thread).

A benchmark, not a test: it prints numbers and asserts nothing. `combined+` (the default) is
the reference in the same run. To compare with another checkout, run this file with that
checkout first on PYTHONPATH (`PYTHONPATH=/path/to/other python -P -m ...`).

    python -m loadtest.bench.micro.accesslog [--requests N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

from hbfork.core.lean import LeanCache
from hbfork.ops.accesslog import AccessLog
from hbfork.proxy.http.exchange import Exchange
from hbfork.proxy.targets import Target

HEAD = (b"GET /a?b=1 HTTP/1.1\r\nHost: shop.example:8443\r\nUser-Agent: wrk/4.1\r\n"
        b"Accept: */*\r\n\r\n")
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: m1\r\n\r\n"
FORMATS = {
    "combined+": ("combined+", ()),
    "json": ("json", ()),
    "common (LogFormat)": ('%h %l %u %t "%r" %>s %b', ()),
    "combined+3 (LogFormat)": ('%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" '
                               "%{X-Request-ID}i %{BALANCER_WORKER_NAME}e %D", ()),
    "json, 8 fields": ("json", ("time", "client", "method", "path", "status", "bytes",
                                "member", "total_seconds")),
}


def exchange(cache: LeanCache) -> Exchange:
    ex = Exchange("192.0.2.9", exchange_started=100.0, member_started=100.001,
                  bytes_to_client=2, keep_alive=True)
    lean = cache.request(HEAD)
    assert lean is not None
    ex.request, ex.lean_head = lean[0], HEAD
    response = cache.response(RESPONSE, False)
    assert response is not None
    ex.response = response[0]
    if hasattr(ex, "lean_response"):
        ex.lean_response = RESPONSE
    return ex


def measure(kind: str, fields: tuple[str, ...], requests: int, repeat: int,
            directory: str) -> float:
    """Best µs of loop-thread CPU per request."""
    target = Target(1, 1, socket.AF_INET, ("10.0.0.1", 8080), "m1", 0)
    cache = LeanCache(8192)
    log = AccessLog(os.path.join(directory, "access.log"), kind, *([fields] if fields else []))
    request = getattr(log, "request", None)
    best = float("inf")
    for _ in range(repeat):
        exchanges = [exchange(cache) for _ in range(requests)]
        started = time.thread_time()
        if request is not None:
            for ex in exchanges:
                request(ex, 200, target, 100.0125)
        else:  # a checkout from before AccessLog.request
            for ex in exchanges:
                log.log(ex.log_fields(200, target, 100.0125))
        best = min(best, (time.thread_time() - started) / requests * 1e6)
    log.close()
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-accesslog-") as directory:
        results = {}
        for name, (kind, fields) in FORMATS.items():
            try:
                results[name] = measure(kind, fields, args.requests, args.repeat, directory)
            except (TypeError, ValueError) as err:  # a checkout without this format
                print(f"{name:<24} not supported here ({err})")
        reference = results.get("combined+", 0.0)
        print(f"{'format':<24}{'µs/request':>11}{'vs combined+':>14}")
        for name, value in results.items():
            print(f"{name:<24}{value:>11.2f}{value - reference:>+13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
