"""`hbfork backend`: a small HTTP/1.1 server for demos and tests that beats its real load.

Every response carries `X-Backend: NAME`. It sends a heartbeat every second from its listen
address with ready = capacity - requests in flight and busy = requests in flight, plus port=.
SIGUSR1 pauses the heartbeats, SIGUSR2 resumes them (tests use this to make a member go stale).

By default it serves any number of requests at once (only its heartbeats say "capacity").
`--workers N` makes it a member that really has N workers, as Apache's are: at most N requests
are served at once, request N+1 waits (read, not answered) until a worker is free, as a
connection waits in a real server's listen backlog, and the heartbeats report the true idle
and busy workers (ready = N - busy). A worker is held per request, not per connection (like
mpm_event or a threaded application server: an idle keep-alive connection holds none).
`--delay-jitter MS` adds an exponentially distributed time with mean MS to every request's
service time (after `--delay-ms`), so service times vary as real ones do.

Query parameters shape the answer (handy for tests and load tests):
  size=N     respond with N bytes of "hbfork-" repeated (streamed, so 50 MB costs no memory;
             the pattern runs on across writes, so a client can check every byte)
  chunked=1  use chunked transfer coding for the response
  delay=MS   wait MS milliseconds before answering (added to --delay-ms)
  status=NNN respond with that status code
  close=1    close the connection after the response
  headers=1  respond with the request head as received (JSON), to check forwarding
  location=U add `Location: U`; setcookie=C adds `Set-Cookie: C` (to check response rewriting)
A request body (Content-Length or chunked) is read whole; the answer then reports its length and
SHA-256. `Connection: Upgrade` gets 101 and the connection echoes bytes from then on.

`--fault KIND` plays a member whose application fails while its heartbeats stay healthy (a
"gray failure"): on a share `--fault-rate` of requests it answers `--fault-status` at once
(status), reads the request and never answers (hang), or resets the connection (reset). Such
requests are not counted in the heartbeat's load: the web server (or heartbeat thread) that
beats does not see its application failing. With `--fault-on-signal` the fault starts only at
SIGHUP (a bad deploy breaking a running member; another SIGHUP ends it), so a benchmark can
time the moment it began.

`--health-file FILE` gives it a health URL, `/health`, for active checks: it answers as FILE
says when the request comes: absent or empty, 200 "OK"; a status ("500", "302"), that status
(body "FAIL" unless 200; a 3xx has `Location: /elsewhere`); "hang", never an answer. Tests
rewrite FILE to make the application fail and recover while the heartbeats go on.

`--stop graceful` makes SIGTERM a graceful stop as application servers do it (Tomcat/Spring
Boot's graceful shutdown, Apache's graceful-stop): the heartbeats stop, idle keep-alive
connections are closed at once (FIN; a request that races the close meets a reset), requests in
flight are answered with `Connection: close`, and the server stops accepting while its
listening socket stays open for `--stop-drain` seconds, so the kernel still completes new
connections into the backlog; when the socket closes, those are reset. The default
(`--stop abort`) drops every connection and closes the listener at once.
`--arrivals FILE` writes, at exit, when each request was read (time.monotonic(), the same clock
for every process on the host) and when the fault began, as JSON, so a benchmark can count the
requests that still reached this member after a front took it out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import signal
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from hbfork.beat.beacon import Beacon

MAX_HEAD = 64 * 1024
CHUNK = 256 * 1024
REASONS = {200: "OK", 101: "Switching Protocols", 204: "No Content", 304: "Not Modified",
           400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable"}


class Backend:
    def __init__(self, name: str, capacity: int, delay_ms: float, workers: int = 0,
                 jitter_ms: float = 0.0, seed: int | None = None, fault: str = "none",
                 fault_rate: float = 1.0, fault_status: int = 500,
                 fault_active: bool = True) -> None:
        self.fault, self.fault_rate, self.fault_status = fault, fault_rate, fault_status
        self.health_file = ""  # --health-file: see _health
        self.fault_active = fault_active      # False with --fault-on-signal until SIGHUP
        self.fault_started: float | None = \
            time.monotonic() if fault_active and fault != "none" else None
        self.arrivals: list[float] | None = None   # --arrivals: when each request was read
        self.stopping = False   # a graceful stop began: answer with Connection: close
        self.idle: set[asyncio.StreamWriter] = set()  # connections waiting for a request
        self.name = name
        self.capacity = capacity
        self.delay_ms = delay_ms
        self.jitter_ms = jitter_ms
        self.random = random.Random(seed)
        self.inflight = 0      # requests read and not yet answered (waiting ones included)
        self.requests = 0
        self.workers = workers  # 0: no limit (ready = capacity - inflight)
        self.busy = 0           # --workers: requests holding a worker
        self.waiting = 0        # --workers: requests read, waiting for a worker
        self.most_busy = 0      # the most requests ever served at once (tests read it)
        self.free = asyncio.Semaphore(workers) if workers > 0 else None
        self.pause: Callable[[float], Awaitable[None]] = asyncio.sleep  # tests replace it
        self.beating = True
        self.beacon: Beacon | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def toggle_fault(self) -> None:
        """SIGHUP with --fault-on-signal: the fault starts (or stops) now."""
        self.fault_active = not self.fault_active
        if self.fault_active:
            self.fault_started = time.monotonic()

    def begin_graceful_stop(self) -> None:
        """Answer what is in flight with Connection: close; close idle connections now."""
        self.stopping = True
        self.beating = False
        for writer in list(self.idle):
            writer.close()

    def load(self) -> tuple[int, int]:
        """(ready, busy) as the heartbeat reports them."""
        if self.workers > 0:
            return self.workers - self.busy, self.busy
        return max(0, self.capacity - self.inflight), self.inflight

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while not self.stopping and await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                ValueError):
            pass
        finally:
            self.writers.discard(writer)
            self.idle.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bool:
        self.idle.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        finally:
            self.idle.discard(writer)
        if self.arrivals is not None:
            self.arrivals.append(time.monotonic())
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        if self.health_file and target.split("?", 1)[0] == "/health":
            return await self._health(reader, writer, method)
        if self.fault != "none" and self.fault_active and \
                self.random.random() < self.fault_rate:
            return await self._faulty(reader, writer, method, headers)
        self.inflight += 1
        self.requests += 1
        try:
            async with self._worker():
                return await self._serve_one(reader, writer, method, target, version,
                                             headers, head)
        finally:
            self.inflight -= 1

    async def _faulty(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      method: str, headers: dict[str, str]) -> bool:
        """Fail this request as --fault says (see the module docstring)."""
        self.requests += 1
        await self._read_body(reader, headers)
        if self.fault == "hang":
            while await reader.read(65536):
                pass  # never answers; gone when the client (the proxy) gives up
            return False
        if self.fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close() sends RST
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        body = b"%d from %s\n" % (self.fault_status, self.name.encode())
        writer.write(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nX-Backend: %s\r\n\r\n" % (
            self.fault_status, REASONS.get(self.fault_status, "Error").encode(), len(body),
            self.name.encode()) + (b"" if method == "HEAD" else body))
        await writer.drain()
        return not self.stopping

    async def _health(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      method: str) -> bool:
        """`/health` as --health-file says (see the module docstring)."""
        try:
            with open(self.health_file) as handle:
                said = handle.read().strip()
        except FileNotFoundError:
            said = ""
        if said == "hang":
            while await reader.read(65536):
                pass
            return False
        status = int(said or 200)
        body = b"OK\n" if status == 200 else b"FAIL\n"
        location = b"Location: /elsewhere\r\n" if 300 <= status < 400 else b""
        writer.write(b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n%sX-Backend: %s\r\n\r\n" % (
            status, REASONS.get(status, "Status").encode(), len(body), location,
            self.name.encode()) + (b"" if method == "HEAD" else body))
        await writer.drain()
        return True

    @contextlib.asynccontextmanager
    async def _worker(self) -> AsyncIterator[None]:
        """Hold one of the --workers for the request (waiting, FIFO, while all are busy)."""
        if self.free is None:
            yield
            return
        self.waiting += 1
        try:
            await self.free.acquire()
        finally:
            self.waiting -= 1
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        try:
            yield
        finally:
            self.busy -= 1
            self.free.release()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         method: str, target: str, version: str, headers: dict[str, str],
                         head: bytes) -> bool:
        body_len, digest = await self._read_body(reader, headers)
        query = {k: v[-1] for k, v in parse_qs(urlsplit(target).query).items()}
        delay = self.delay_ms + float(query.get("delay", 0))
        if self.jitter_ms > 0:
            delay += self.random.expovariate(1 / self.jitter_ms)
        if delay:
            await self.pause(delay / 1000)
        if "upgrade" in headers.get("connection", "").lower():
            # Switches to the first protocol offered (any, h2c included, as a careless member
            # would), or to ?switch_to=NAME to play a member that answers something else.
            offered = headers.get("upgrade", "").split(",")[0].strip() or "echo"
            await self._upgrade(reader, writer, query.get("switch_to", offered))
            return False
        keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "") \
            and query.get("close") != "1" and not self.stopping
        await self._respond(writer, method, query, headers, head, body_len, digest, keep)
        return keep

    async def _read_body(self, reader: asyncio.StreamReader,
                         headers: dict[str, str]) -> tuple[int, str]:
        digest = hashlib.sha256()
        total = 0
        if "chunked" in headers.get("transfer-encoding", "").lower():
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers
                    break
                data = await reader.readexactly(size)
                await reader.readexactly(2)
                digest.update(data)
                total += size
        else:
            remaining = int(headers.get("content-length", "0") or 0)
            while remaining:
                data = await reader.read(min(CHUNK, remaining))
                if not data:
                    raise asyncio.IncompleteReadError(b"", remaining)
                digest.update(data)
                total += len(data)
                remaining -= len(data)
        return total, digest.hexdigest()

    async def _respond(self, writer: asyncio.StreamWriter, method: str, query: dict[str, str],
                       headers: dict[str, str], head: bytes, body_len: int, digest: str,
                       keep: bool) -> None:
        status = int(query.get("status", 200))
        size = int(query["size"]) if "size" in query else None
        if query.get("headers") == "1":
            body = json.dumps({"backend": self.name, "head": head.decode("latin-1")}).encode()
        elif body_len or method in ("POST", "PUT", "PATCH"):
            body = json.dumps({"backend": self.name, "bytes": body_len,
                               "sha256": digest}).encode()
        else:
            body = f"{self.name}\n".encode()
        length = size if size is not None else len(body)
        chunked = query.get("chunked") == "1"
        out = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
               f"X-Backend: {self.name}", "Content-Type: application/octet-stream"
               if size is not None else "Content-Type: text/plain"]
        if "location" in query:
            out.append(f"Location: {query['location']}")
        if "setcookie" in query:
            out.append(f"Set-Cookie: {query['setcookie']}")
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if status not in (204, 304):
            out.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
        out.append("Connection: keep-alive" if keep else "Connection: close")
        head_bytes = ("\r\n".join(out) + "\r\n\r\n").encode()
        if not no_body and size is None and not chunked:
            writer.write(head_bytes + body)  # one segment, as real servers send small answers
        elif no_body:
            writer.write(head_bytes)
        else:
            writer.write(head_bytes)
            if size is None:
                self._write(writer, body, chunked)
            else:
                await self._stream(writer, size, chunked)
            if chunked:
                writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def _write(writer: asyncio.StreamWriter, data: bytes, chunked: bool) -> None:
        if chunked:
            if data:
                writer.write(b"%x\r\n" % len(data) + data + b"\r\n")
        else:
            writer.write(data)

    async def _stream(self, writer: asyncio.StreamWriter, size: int, chunked: bool) -> None:
        block = b"hbfork-" * (CHUNK // 7)  # a whole number of patterns: no seams
        remaining = size
        while remaining:
            piece = block[:min(len(block), remaining)]
            self._write(writer, piece, chunked)
            remaining -= len(piece)
            await writer.drain()

    async def _upgrade(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       protocol: str) -> None:
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                     b"Upgrade: " + protocol.encode() + b"\r\nX-Backend: " +
                     self.name.encode() + b"\r\n\r\n")
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def _main(host: str, port: int, backend: Backend, stop_mode: str = "abort",
                drain: float = 1.0) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=1024,
                                    reuse_port=False)
    # A second descriptor of the listening socket: asyncio's close() of its own leaves the
    # socket listening (the kernel still completes connections) until this one is closed.
    held = listener.dup()
    server = await asyncio.start_server(backend.serve, sock=listener, limit=MAX_HEAD)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: setattr(backend, "beating", False))
    loop.add_signal_handler(signal.SIGUSR2, lambda: setattr(backend, "beating", True))
    loop.add_signal_handler(signal.SIGHUP, backend.toggle_fault)
    beat_task = asyncio.create_task(_beat(backend))
    try:
        await stop.wait()
        beat_task.cancel()
        server.close()   # no more accept()s; `held` keeps the socket listening
        if stop_mode == "graceful":
            backend.begin_graceful_stop()
            deadline = loop.time() + drain
            while loop.time() < deadline:
                await asyncio.sleep(0.01)
        held.close()     # connections still in the backlog are reset by the kernel
        for writer in list(backend.writers):
            writer.transport.abort()  # connection tasks see EOF and end on their own
        await asyncio.sleep(0)
        await server.wait_closed()
    finally:
        held.close()


async def _beat(backend: Backend) -> None:
    beacon = backend.beacon
    if beacon is None:
        return
    while True:
        if backend.beating:
            beacon.send(*backend.load())
        await asyncio.sleep(beacon.interval)


def run(listen: str, heartbeat_to: str | None, capacity: int, delay_ms: float, name: str,
        interval: float = 1.0, send_port: bool = True, key: bytes | None = None,
        workers: int = 0, jitter_ms: float = 0.0, seed: int | None = None,
        fault: str = "none", fault_rate: float = 1.0, fault_status: int = 500,
        health_file: str = "", fault_on_signal: bool = False, stop: str = "abort",
        stop_drain: float = 1.0, arrivals: str | None = None) -> int:
    from hbfork.core.addresses import parse_endpoint

    endpoint = parse_endpoint(listen)
    backend = Backend(name or str(endpoint), capacity, delay_ms, workers, jitter_ms, seed,
                      fault, fault_rate, fault_status, fault_active=not fault_on_signal)
    if arrivals:
        backend.arrivals = []
    backend.health_file = health_file
    if heartbeat_to:
        target = parse_endpoint(heartbeat_to)
        backend.beacon = Beacon(target.sockaddr, port=endpoint.port if send_port else None,
                                source=endpoint.host, interval=interval, key=key)
    try:
        asyncio.run(_main(endpoint.host, endpoint.port, backend, stop, stop_drain))
    except KeyboardInterrupt:
        pass
    finally:
        if arrivals:
            with open(arrivals, "w", encoding="utf-8") as out:
                json.dump({"name": backend.name, "requests": backend.requests,
                           "fault_started": backend.fault_started,
                           "arrivals": backend.arrivals}, out)
    return 0
