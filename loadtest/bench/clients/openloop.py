"""An open-loop HTTP load generator: requests arrive at a fixed mean rate whatever the server
does (wrk2's model; wrk2 is not packaged here), and each one's latency is measured from the
moment it was *due*, not from when it could be sent, so a stalled server cannot hide its
stall by slowing the client down (no coordinated omission).

    python -m loadtest.bench.clients.openloop --url http://10.0.0.1:8080/ --rate 1500 \\
        --seconds 20 --seed 1 --out result.json

Arrivals are Poisson by default (`--arrivals uniform` for wrk2's constant spacing), drawn from
a seeded generator, so two runs offer exactly the same schedule. Every request takes an idle
keep-alive connection, or opens one; past `--max-connections` it waits in the client (and
that wait counts in its latency; `client_queued` in the result says whether it happened, which
means the generator, not the server, was the limit). A request with no answer after
`--timeout` seconds is an error ("timeout") and its connection is dropped. Like browsers and
HTTP libraries (RFC 9112 9.3.1), a request sent on a reused keep-alive connection that the
server closes before any byte of the answer is sent again once on a new connection: a server
may close an idle connection just as a request goes out on it. Those are counted
(`retried_on_reuse`), and only a second failure is an error.

The result (JSON) has every request's latency in ms (answered or not, in arrival order), the
status codes, the X-Backend counts of the 2xx answers, errors by kind with their times, and how
late the generator itself sent (`lag_ms`), so a run where the client fell behind shows it.
Standard library only (and this package): it needs nothing else installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter, deque
from typing import Any
from urllib.parse import urlsplit

from loadtest.bench.procs import raise_nofile
from loadtest.bench.stats import pct

CHECK_EVERY = 0.1   # seconds between timeout sweeps


class Request:
    __slots__ = ("due", "index", "retried")

    def __init__(self, index: int, due: float) -> None:
        self.index = index
        self.due = due
        self.retried = False


class Conn(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: Request | None = None
        self.closed = False
        self.answers = 0   # responses it carried: > 0 means a request on it reuses it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: Request) -> None:
        assert self.transport is not None
        self.current = request
        self.gen.inflight[self] = request
        self.transport.write(self.gen.request_bytes)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.current is not None:
            parsed = parse_response(self.buffer)
            if parsed is None:
                return
            status, backend, close, used = parsed
            del self.buffer[:used]
            request, self.current = self.current, None
            self.answers += 1
            self.gen.inflight.pop(self, None)
            if close:
                self.drop()
            self.gen.answered(self, request, status, backend)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gen.forget(self)
        if self.current is not None:
            request, self.current = self.current, None
            self.gen.inflight.pop(self, None)
            if self.answers and not self.buffer and not request.retried:
                self.gen.retry(request)
            else:
                self.gen.failed(request, "reset" if exc else "closed")

    def drop(self) -> None:
        if not self.closed:
            self.closed = True
            self.gen.forget(self)
            if self.transport is not None:
                self.transport.abort()


def parse_response(buffer: bytearray) -> tuple[int, str, bool, int] | None:
    """(status, X-Backend, connection closes, bytes used) of one whole response, or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    start = end + 4
    close = "close" in headers.get("connection", "").lower()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        at = start
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
            at = line_end + 2
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", at - 2)
                if trailer_end < 0:
                    return None
                return status, headers.get("x-backend", ""), close, trailer_end + 4
            if len(buffer) < at + size + 2:
                return None
            at += size + 2
    length = int(headers.get("content-length", "0") or 0)
    if status in (204, 304) or 100 <= status < 200:
        length = 0
    if len(buffer) < start + length:
        return None
    return status, headers.get("x-backend", ""), close, start + length


class Generator:
    def __init__(self, host: str, port: int, path: str, timeout: float,
                 max_connections: int) -> None:
        self.host, self.port = host, port
        self.request_bytes = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                              "User-Agent: hbfork-openloop\r\n\r\n").encode()
        self.timeout = timeout
        self.max_connections = max_connections
        self.loop = asyncio.get_running_loop()
        self.t0 = 0.0
        self.idle: list[Conn] = []
        self.conns: set[Conn] = set()
        self.opening = 0
        self.waiting: deque[Request] = deque()   # no connection free: waits in the client
        self.inflight: dict[Conn, Request] = {}
        self.latency: list[float] = []
        self.status: Counter[str] = Counter()
        self.backends: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.error_times: list[tuple[float, str]] = []
        self.by_second: list[list[int]] = []   # [2xx, other] by the second a request was due
        self.last_ok = 0.0                      # when the last 2xx answer came (s after t0)
        self.lag: list[float] = []
        self.client_queued = 0
        self.retried_on_reuse = 0
        self.most_connections = 0
        self.done = 0
        self.total = 0
        self.finished = asyncio.Event()

    # --- arrivals

    def arrive(self, request: Request) -> None:
        self.lag.append((self.loop.time() - request.due) * 1e3)
        if self.idle:
            self.idle.pop().send(request)
        elif len(self.conns) + self.opening < self.max_connections:
            self.loop.create_task(self._open_and_send(request))
        else:
            self.client_queued += 1
            self.waiting.append(request)

    async def _open_and_send(self, request: Request) -> None:
        self.opening += 1
        try:
            _, conn = await asyncio.wait_for(self.loop.create_connection(
                lambda: Conn(self), self.host, self.port), self.timeout)
        except (TimeoutError, OSError) as err:
            self.failed(request, f"connect: {type(err).__name__}")
            return
        finally:
            self.opening -= 1
        self.conns.add(conn)
        self.most_connections = max(self.most_connections, len(self.conns))
        conn.send(request)

    def retry(self, request: Request) -> None:
        """Once, on a new connection: the reused one was closed before any answer."""
        request.retried = True
        self.retried_on_reuse += 1
        self.loop.create_task(self._open_and_send(request))

    def _next(self, conn: Conn) -> None:
        """`conn` is free: give it the oldest waiting request, or keep it idle."""
        if conn.closed:
            if self.waiting and len(self.conns) + self.opening < self.max_connections:
                self.loop.create_task(self._open_and_send(self.waiting.popleft()))
            return
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    # --- outcomes

    def answered(self, conn: Conn, request: Request, status: int, backend: str) -> None:
        self._record(request)
        self.status[str(status)] += 1
        if 200 <= status < 300:
            self.backends[backend or "(none)"] += 1
            self.last_ok = max(self.last_ok, self.loop.time() - self.t0)
            self._second(request, 0)
        else:
            self._second(request, 1)
            self.error_times.append((round(request.due - self.t0, 3), f"HTTP {status}"))
        self._next(conn)

    def failed(self, request: Request, kind: str) -> None:
        self._record(request)
        self._second(request, 1)
        self.errors[kind] += 1
        self.error_times.append((round(request.due - self.t0, 3), kind))
        if self.waiting and len(self.conns) + self.opening < self.max_connections:
            self.loop.create_task(self._open_and_send(self.waiting.popleft()))

    def _second(self, request: Request, outcome: int) -> None:
        second = int(request.due - self.t0)
        while len(self.by_second) <= second:
            self.by_second.append([0, 0])
        self.by_second[second][outcome] += 1

    def _record(self, request: Request) -> None:
        self.latency.append((request.index, (self.loop.time() - request.due) * 1e3))
        self.done += 1
        if self.done == self.total:
            self.finished.set()

    def forget(self, conn: Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    async def sweep(self) -> None:
        """Drop connections whose request has waited longer than the timeout."""
        while not self.finished.is_set():
            await asyncio.sleep(CHECK_EVERY)
            limit = self.loop.time() - self.timeout
            for conn, request in list(self.inflight.items()):
                if request.due < limit:
                    conn.current = None
                    self.inflight.pop(conn, None)
                    conn.drop()
                    self.failed(request, "timeout")
            while self.waiting and self.waiting[0].due < limit:
                self.failed(self.waiting.popleft(), "timeout")


def schedule(rate: float, seconds: float, arrivals: str, seed: int) -> list[float]:
    """Offsets (s) of every arrival: Poisson (exponential gaps) or evenly spaced."""
    if arrivals == "uniform":
        return [i / rate for i in range(int(rate * seconds))]
    rng = random.Random(seed)
    out, t = [], rng.expovariate(rate)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(rate)
    return out


async def run(url: str, rate: float, seconds: float, arrivals: str = "poisson", seed: int = 1,
              timeout: float = 10.0, max_connections: int = 1024) -> dict[str, Any]:
    parts = urlsplit(url)
    gen = Generator(parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/",
                    timeout, max_connections)
    offsets = schedule(rate, seconds, arrivals, seed)
    gen.total = len(offsets)
    sweeper = asyncio.create_task(gen.sweep())
    started_wall = time.time()
    gen.t0 = t0 = gen.loop.time() + 0.05
    i, n = 0, len(offsets)
    while i < n:
        now = gen.loop.time()
        while i < n and t0 + offsets[i] <= now:
            gen.arrive(Request(i, t0 + offsets[i]))
            i += 1
        if i < n:
            await asyncio.sleep(max(0.0, t0 + offsets[i] - gen.loop.time()))
    if n:
        try:
            await asyncio.wait_for(gen.finished.wait(), timeout + 2 * CHECK_EVERY + 1)
        except TimeoutError:
            pass
    sweeper.cancel()
    for conn in list(gen.conns):
        conn.drop()
    gen.latency.sort()
    lag = sorted(gen.lag)
    return {"url": url, "rate": rate, "seconds": seconds, "arrivals": arrivals, "seed": seed,
            "started": started_wall, "sent": n, "completed": gen.done,
            "latency_ms": [round(ms, 3) for _, ms in gen.latency],
            "status": dict(gen.status), "backends": dict(gen.backends),
            "errors": dict(gen.errors), "error_times": gen.error_times[:5000],
            "client_queued": gen.client_queued, "most_connections": gen.most_connections,
            "retried_on_reuse": gen.retried_on_reuse, "by_second": gen.by_second,
            "last_ok_s": round(gen.last_ok, 3),
            "lag_ms": {"p50": pct(lag, 50), "p99": pct(lag, 99), "max": lag[-1] if lag
                       else 0.0}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench.clients.openloop",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--max-connections", type=int, default=1024)
    parser.add_argument("--out", help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    # one descriptor per connection; as many as the hard limit allows
    raise_nofile(args.max_connections + 64)
    result = asyncio.run(run(args.url, args.rate, args.seconds, args.arrivals, args.seed,
                             args.timeout, args.max_connections))
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
