"""HTTP mode end to end: real `hbfork run` and `hbfork backend` processes, raw client sockets.

Per-request balancing over one keep-alive connection is in test_routing.py; this file covers
the rest of issue 3: pipelining, HTTP/1.0, chunked and large bodies, 100-continue, bodiless
responses, streaming with bounded memory, failover, every error status, timeouts, Upgrade,
X-Forwarded-*, and the counters.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hbfork.beat.beacon import Beacon
from tests.integration.harness import free_port, get, wait_until

PATTERN = b"hbfork-"  # what the test backend streams for ?size=N


@dataclass
class Response:
    version: bytes
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    extra: dict[str, object] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    def json(self) -> dict:
        return json.loads(self.body)


class Client:
    """A raw HTTP/1.x client: exact bytes out, responses parsed strictly."""

    def __init__(self, port: int, timeout: float = 10, rcvbuf: int = 0) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        data = self.sock.recv(262144)
        self.buf += data
        return bool(data)

    def read_until(self, marker: bytes) -> bytes:
        while (at := self.buf.find(marker)) < 0:
            if not self._fill():
                raise EOFError(f"closed before {marker!r}; got {bytes(self.buf)!r}")
        out = bytes(self.buf[:at + len(marker)])
        del self.buf[:at + len(marker)]
        return out

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"closed with {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_eof(self) -> bytes:
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_head(self) -> Response:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        match = re.fullmatch(rb"(HTTP/1\.[01]) (\d{3})(?: .*)?", lines[0])
        assert match, lines[0]
        headers = [tuple(x.strip() for x in line.split(b":", 1)) for line in lines[1:]]
        return Response(match.group(1), int(match.group(2)), headers)  # type: ignore[arg-type]

    def read_response(self, method: str = "GET") -> Response:
        """The next final response (interim 1xx responses are skipped and kept in extra)."""
        interim = []
        while True:
            response = self.read_head()
            if response.status >= 200 or response.status == 101:
                break
            interim.append(response.status)
        response.extra["interim"] = interim
        if method == "HEAD" or response.status in (101, 204, 304):
            return response
        if (response.header("Transfer-Encoding") or "").lower().endswith("chunked"):
            response.body = self._read_chunked()
        elif response.header("Content-Length") is not None:
            response.body = self.read_exactly(int(response.header("Content-Length")))
        else:
            response.body = self.read_to_eof()
        return response

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.read_until(b"\r\n")[:-2].split(b";")[0], 16)
            if size == 0:
                while self.read_until(b"\r\n") != b"\r\n":
                    pass
                return bytes(out)
            out += self.read_exactly(size)
            assert self.read_exactly(2) == b"\r\n"

    def closed_by_peer(self, timeout: float = 5) -> bool:
        """True once the proxy closed the connection (EOF or reset), False at the deadline."""
        self.sock.settimeout(timeout)
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True


def request(method: str, target: str, *headers: str, body: bytes = b"",
            version: str = "HTTP/1.1", host: str | None = "test.local") -> bytes:
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(data: bytes, size: int) -> bytes:
    out = bytearray()
    for start in range(0, len(data), size):
        piece = data[start:start + size]
        out += b"%x;piece=%d\r\n" % (len(piece), start // size) + piece + b"\r\n"
    return bytes(out) + b"0\r\nX-Trailer: done\r\n\r\n"


def pattern(size: int) -> bytes:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


@pytest.fixture(params=["fast path", "general path"], autouse=True)
def http_path(request, cluster) -> bool:
    """Every test here runs twice: with the fast path on (common exchanges take it, the rest
    falls back) and with [http] fast_path = false (every exchange by the general path)."""
    fast = request.param == "fast path"
    cluster.http_defaults["fast_path"] = fast
    return fast


@pytest.fixture
def pair(cluster):
    """A proxy with two discovered members, a and b, both eligible."""
    proxy = cluster.proxy([], heartbeat={"discover": True})
    backends = [cluster.backend(name, 10, heartbeat=proxy.heartbeat_address) for name in "ab"]
    proxy.wait_eligible(*(b.address for b in backends))
    return proxy, backends


def one_member(cluster, **sections):
    proxy = cluster.proxy([], heartbeat={"discover": True}, **sections)
    backend = cluster.backend("solo", 10, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    return proxy, backend


@contextmanager
def client(proxy, **kwargs) -> Iterator[Client]:
    c = Client(proxy.port, **kwargs)
    try:
        yield c
    finally:
        c.close()


# --- client side: pipelining, HTTP/1.0, bodies


def test_pipelined_requests_are_answered_in_order(pair):
    proxy, _ = pair
    body = b"posted between two GETs"
    with client(proxy) as c:
        c.send(request("GET", "/?headers=1&n=1") + request("GET", "/?headers=1&n=2")
               + request("POST", "/?n=3", f"Content-Length: {len(body)}", body=body)
               + request("GET", "/?headers=1&n=4"))
        answers = [c.read_response() for _ in range(4)]
    assert [r.status for r in answers] == [200] * 4
    assert "GET /?headers=1&n=1 " in answers[0].json()["head"]
    assert "GET /?headers=1&n=2 " in answers[1].json()["head"]
    assert answers[2].json()["sha256"] == hashlib.sha256(body).hexdigest()
    assert "GET /?headers=1&n=4 " in answers[3].json()["head"]


def test_pipelined_requests_before_a_half_close_are_all_answered(pair):
    proxy, _ = pair
    with client(proxy) as c:
        c.send(b"".join(request("GET", f"/?headers=1&n={n}") for n in range(3)))
        c.sock.shutdown(socket.SHUT_WR)  # like `printf ... | nc`
        answers = [c.read_response() for _ in range(3)]
        assert c.closed_by_peer()
    assert [f"n={n} " in r.json()["head"] for n, r in enumerate(answers)] == [True] * 3
    assert answers[-1].header("Connection") == "close"


def test_http10_client_without_keep_alive(pair):
    proxy, _ = pair
    with client(proxy) as c:
        c.send(request("GET", "/", version="HTTP/1.0", host=None))
        response = c.read_response()
        assert c.closed_by_peer()
    assert (response.version, response.status) == (b"HTTP/1.0", 200)
    assert response.header("Connection") == "close"
    assert response.body in (b"a\n", b"b\n")


def test_http10_client_with_keep_alive(pair):
    proxy, _ = pair
    with client(proxy) as c:
        for _ in range(3):
            c.send(request("GET", "/?headers=1", "Connection: keep-alive", version="HTTP/1.0",
                           host=None))
            response = c.read_response()
            assert (response.version, response.status) == (b"HTTP/1.0", 200)
            assert response.header("Connection") == "keep-alive"
            head = response.json()["head"]
            assert head.startswith("GET /?headers=1 HTTP/1.1\r\n")  # upstream is 1.1
            assert re.search(r"\r\nHost: 127\.0\.0\.\d+:\d+\r\n", head), head


def test_chunked_response_is_dechunked_for_http10(pair):
    proxy, _ = pair
    size = 1_000_003
    with client(proxy) as c:
        c.send(request("GET", f"/?size={size}&chunked=1", "Connection: keep-alive",
                       version="HTTP/1.0"))
        response = c.read_response()
        assert c.closed_by_peer()  # close-delimited: the only framing 1.0 has left
    assert response.header("Transfer-Encoding") is None
    assert response.header("Content-Length") is None
    assert response.header("Connection") == "close"
    assert response.body == pattern(size)


def test_chunked_upload(pair):
    proxy, _ = pair
    data = os.urandom(3_000_000)
    with client(proxy) as c:
        c.send(request("POST", "/upload", "Transfer-Encoding: chunked",
                       body=chunked(data, 65_000)))
        response = c.read_response()
        c.send(request("GET", "/"))  # the connection is still in step
        assert c.read_response().status == 200
    assert response.status == 200
    assert response.json()["bytes"] == len(data)
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_chunked_download(pair):
    proxy, _ = pair
    size = 5_000_000
    with client(proxy) as c:
        c.send(request("GET", f"/?size={size}&chunked=1"))
        response = c.read_response()
        c.send(request("GET", "/?size=10"))
        assert c.read_response().body == pattern(10)
    assert response.header("Transfer-Encoding") == "chunked"
    assert response.body == pattern(size)


def test_content_length_upload_of_several_megabytes(pair):
    proxy, _ = pair
    data = os.urandom(8 * 1024 * 1024)
    response, body, conn = get(proxy.url, "/upload", method="PUT", body=data, timeout=30)
    conn.close()
    assert response.status == 200
    assert json.loads(body) == {"backend": json.loads(body)["backend"], "bytes": len(data),
                                "sha256": hashlib.sha256(data).hexdigest()}


def test_expect_100_continue(pair):
    proxy, _ = pair
    data = os.urandom(100_000)
    with client(proxy, timeout=5) as c:
        c.send(request("POST", "/", f"Content-Length: {len(data)}", "Expect: 100-continue"))
        interim = c.read_head()  # the body is held back until this arrives
        assert interim.status == 100
        c.send(data)
        response = c.read_response()
    assert response.status == 200
    assert response.json()["sha256"] == hashlib.sha256(data).hexdigest()


def test_expect_100_continue_refused_by_a_limit_gets_no_100(cluster):
    proxy, _ = one_member(cluster, http={"max_body_size": 1000})
    with client(proxy, timeout=5) as c:
        c.send(request("POST", "/", "Content-Length: 5000", "Expect: 100-continue"))
        response = c.read_response()
        assert response.status == 413 and response.extra["interim"] == []
        assert c.closed_by_peer()


@pytest.mark.parametrize(("method", "target", "status"), [
    ("HEAD", "/?size=12345", 200), ("GET", "/?status=204", 204), ("GET", "/?status=304", 304),
    ("HEAD", "/?size=99&chunked=1", 200),
])
def test_responses_without_a_body(pair, method, target, status):
    proxy, _ = pair
    with client(proxy) as c:
        for _ in range(2):  # the same connection stays in step after each
            c.send(request(method, target))
            response = c.read_response(method)
            assert response.status == status
            c.send(request("GET", "/?size=5"))
            assert c.read_response().body == pattern(5)
    if method == "HEAD" and "chunked" not in target:
        assert response.header("Content-Length") == "12345"


# --- streaming with back-pressure


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_large_response_to_a_slow_reader_keeps_worker_memory_bounded(cluster):
    proxy, _ = one_member(cluster)
    pids = [w["pid"] for w in proxy.workers()]
    get(proxy.url, "/?size=1000000")[2].close()  # warm up both the worker and the pool
    baseline = {pid: _rss_kib(pid) for pid in pids}
    size = 60 * 1024 * 1024
    peak = dict(baseline)
    received = 0
    digest = hashlib.sha256()
    started = time.monotonic()
    with client(proxy, rcvbuf=65536, timeout=30) as c:
        c.send(request("GET", f"/?size={size}"))
        response = c.read_head()
        assert response.status == 200 and response.header("Content-Length") == str(size)
        digest.update(bytes(c.buf))
        received = len(c.buf)
        c.buf.clear()
        reads = 0
        while received < size:
            piece = c.sock.recv(min(65536, size - received))
            assert piece, f"closed after {received} bytes"
            digest.update(piece)
            received += len(piece)
            reads += 1
            if reads % 8 == 0:
                time.sleep(0.02)  # the slow reader: ~25 MB/s at most
                for pid in pids:
                    peak[pid] = max(peak[pid], _rss_kib(pid))
    elapsed = time.monotonic() - started
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()
    growth_mib = max(peak[pid] - baseline[pid] for pid in pids) / 1024
    assert growth_mib < 30, (growth_mib, elapsed)


# --- failover


def test_pooled_connections_to_a_killed_member_fail_over(cluster):
    proxy = cluster.proxy([], proxy={"retry": 30}, heartbeat={"discover": True, "max_age": 30})
    alive = cluster.backend("alive", 10, heartbeat=proxy.heartbeat_address)
    doomed = cluster.backend("doomed", 10, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(alive.address, doomed.address)
    with client(proxy) as c:  # fill this worker's pool with connections to both
        seen = set()
        for _ in range(40):
            c.send(request("GET", "/"))
            seen.add(c.read_response().header("X-Backend"))
        assert seen == {"alive", "doomed"}
        doomed.stop()
        answers = []
        for _ in range(100):
            c.send(request("GET", "/"))
            answers.append(c.read_response())
    assert {(r.status, r.header("X-Backend")) for r in answers} == {(200, "alive")}


def test_all_members_refusing_is_502(cluster):
    proxy = cluster.proxy([], proxy={"retry": 30}, heartbeat={"discover": True, "max_age": 30})
    backends = [cluster.backend(n, 10, heartbeat=proxy.heartbeat_address) for n in "xy"]
    proxy.wait_eligible(*(b.address for b in backends))
    for backend in backends:
        backend.stop()
    with client(proxy) as c:
        c.send(request("GET", "/"))
        response = c.read_response()
        assert response.status == 502 and b"no member" in response.body
        # The workers' reports reach the master, which marks both in error for everyone.
        wait_until(lambda: all(proxy.member(b.address)["state"] == "in error"
                               for b in backends), 5, message="both members in error")
        c.send(request("GET", "/"))  # now both are in error: nobody to ask
        response = c.read_response()
    assert response.status == 503 and response.header("Retry-After") == "1"


class _ClosingMember(socketserver.ThreadingTCPServer):
    """Answers the first request on each connection, then closes the connection on the next
    one without answering: the keep-alive race, made to happen every time."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        self.seen: list[bytes] = []
        super().__init__(address, _ClosingHandler)


class _ClosingHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for number in range(2):
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline()
                if not line:
                    return
                head += line
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            body = self.rfile.read(int(length.group(1))) if length else b""
            self.server.seen.append(head.split(b"\r\n", 1)[0] + b" " + body)
            if number == 1:
                return  # close without answering
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Backend: race\r\n\r\nok\n")


def test_a_pooled_connection_closed_by_the_member_is_retried_only_if_safe(cluster):
    ip = "127.0.0.31"
    port = free_port(ip)
    member = _ClosingMember((ip, port))
    threading.Thread(target=member.serve_forever, daemon=True).start()
    proxy = cluster.proxy([{"address": f"{ip}:{port}"}], proxy={"workers": 1})
    beacon = Beacon(("127.0.0.1", proxy.heartbeat_port), port=port, source=ip, interval=0.2)
    beacon.start(lambda: (10, 0))
    try:
        proxy.wait_eligible(f"{ip}:{port}")
        with client(proxy) as c:
            statuses = []
            for _ in range(3):  # fresh, then pooled-and-closed -> retried on a fresh one
                c.send(request("GET", "/get"))
                statuses.append(c.read_response().status)
            c.send(request("POST", "/post", "Content-Length: 4", body=b"data"))
            post = c.read_response()
    finally:
        beacon.stop()
        member.shutdown()
        member.server_close()
    assert statuses == [200, 200, 200]
    assert post.status == 502  # a POST that reached the member is never replayed
    assert member.seen.count(b"POST /post HTTP/1.1 data") == 1


# --- errors the proxy answers itself


def test_response_timeout_is_504_and_the_connection_survives(cluster):
    proxy, _ = one_member(cluster, http={"response_timeout": 1})
    with client(proxy) as c:
        started = time.monotonic()
        c.send(request("GET", "/?delay=4000"))
        response = c.read_response()
        waited = time.monotonic() - started
        assert response.status == 504 and b"did not answer" in response.body
        assert 0.8 < waited < 3.5, waited
        c.send(request("GET", "/?size=3"))
        assert c.read_response().body == b"hbf"
    wait_until(lambda: proxy.status()["totals"]["upstream_timeouts"] == 1, 5,
               message="the timeout to be counted")


@pytest.mark.parametrize("raw", [
    request("POST", "/", "Content-Length: 3", "Transfer-Encoding: chunked", body=b"abc"),
    request("POST", "/", "Content-Length: 3", "Content-Length: 4", body=b"abcd"),
    request("POST", "/", "Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"),
    request("GET", "/", "X-Folded: one", " two"),
    request("GET", "/", "Bad Header: x"),
    request("GET", "/", host=None),
    b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    request("POST", "/", "Transfer-Encoding: chunked", body=b"zz\r\nabc\r\n0\r\n\r\n"),
], ids=["cl+te", "two-cl", "te-not-chunked", "obs-fold", "bad-name", "no-host", "bare-lf",
        "nul", "bad-chunk"])
def test_malformed_requests_are_400_and_close(pair, raw):
    proxy, _ = pair
    with client(proxy) as c:
        c.send(raw + request("GET", "/smuggled"))
        response = c.read_response()
        assert response.status == 400
        assert response.header("Connection") == "close"
        assert c.closed_by_peer()
        assert b"HTTP/1.1" not in bytes(c.buf)  # the smuggled request got no answer


def test_request_line_too_long_is_414(pair):
    proxy, _ = pair
    with client(proxy) as c:
        c.send(request("GET", "/" + "a" * 10000))
        assert c.read_response().status == 414
        assert c.closed_by_peer()


def test_header_section_too_large_is_431(pair):
    proxy, _ = pair
    with client(proxy) as c:
        c.send(request("GET", "/", *(f"X-Filler-{i}: {'f' * 100}" for i in range(200))))
        assert c.read_response().status == 431
        assert c.closed_by_peer()


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_body_over_max_body_size_is_413(cluster, framing):
    proxy, _ = one_member(cluster, http={"max_body_size": 100_000})
    data = os.urandom(300_000)
    if framing == "length":
        raw = request("POST", "/", f"Content-Length: {len(data)}", body=data)
    else:
        raw = request("POST", "/", "Transfer-Encoding: chunked", body=chunked(data, 30_000))
    with client(proxy) as c:
        c.send(raw)  # all of it, as a client that does not wait for an answer does
        response = c.read_response()
        assert response.status == 413
        assert c.closed_by_peer()
    with client(proxy) as c:  # a body under the limit is fine
        c.send(request("POST", "/", "Content-Length: 100000", body=data[:100_000]))
        assert c.read_response().json()["bytes"] == 100_000


def test_slow_request_head_is_408_and_close(cluster):
    proxy, _ = one_member(cluster, http={"header_timeout": 1})
    raw = request("GET", "/", "User-Agent: slowloris", "X-Padding: " + "p" * 40)
    with client(proxy) as c:
        started = time.monotonic()
        answer = b""
        for byte in raw:  # one byte every 0.1 s: the whole head would take ~8 s
            try:
                c.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            c.sock.settimeout(0.1)
            try:
                answer = c.sock.recv(4096)
            except TimeoutError:
                continue
            break
        waited = time.monotonic() - started
        c.buf += answer
        c.sock.settimeout(5)
        response = c.read_response()
        assert c.closed_by_peer()
    assert response.status == 408
    assert 0.8 < waited < 5, waited


def test_a_request_body_that_stops_coming_is_408(cluster):
    proxy, _ = one_member(cluster, http={"client_timeout": 1})
    with client(proxy) as c:
        c.send(request("POST", "/", "Content-Length: 1000", body=b"only ten b"))
        response = c.read_response()
        assert response.status == 408 and b"body" in response.body
        assert c.closed_by_peer()


def test_idle_keep_alive_connection_is_closed_after_keepalive_timeout(cluster):
    proxy, _ = one_member(cluster, http={"keepalive_timeout": 1})
    with client(proxy) as c:
        c.send(request("GET", "/"))
        assert c.read_response().status == 200
        started = time.monotonic()
        assert c.closed_by_peer(timeout=10)
        waited = time.monotonic() - started
        assert c.buf == b""  # closed quietly: no 408 for an idle connection
    assert 0.7 < waited < 6, waited


# --- Upgrade, forwarding headers


def test_upgrade_switches_to_a_byte_tunnel(pair):
    proxy, _ = pair
    with client(proxy) as c:
        c.send(request("GET", "/chat", "Connection: Upgrade", "Upgrade: websocket"))
        response = c.read_response()
        assert response.status == 101
        assert response.header("Upgrade") == "websocket"
        assert response.header("Connection") == "Upgrade"
        for message in (b"ping", b"\x00\xff binary \r\n\r\n", os.urandom(200_000)):
            c.send(message)
            assert c.read_exactly(len(message)) == message
        c.sock.shutdown(socket.SHUT_WR)
        assert c.closed_by_peer()


def test_forwarding_headers_reach_the_member(pair):
    proxy, _ = pair
    with client(proxy) as c:
        c.send(request("GET", "/?headers=1", "X-Forwarded-For: 203.0.113.9",
                       "X-Forwarded-Proto: https", "X-Forwarded-Host: spoofed.example",
                       "Connection: keep-alive, X-Hop", "X-Hop: secret", "Keep-Alive: 5",
                       "Proxy-Authorization: Basic eDp5", "X-End-To-End: kept",
                       host="site.example"))
        head = c.read_response().json()["head"]
    lines = head.split("\r\n")
    assert "X-Forwarded-For: 203.0.113.9, 127.0.0.1" in lines
    assert "X-Forwarded-Proto: http" in lines
    assert "X-Forwarded-Host: site.example" in lines
    assert "Host: site.example" in lines
    assert "X-End-To-End: kept" in lines
    for name in ("X-Hop", "Keep-Alive", "Proxy-Authorization", "Connection"):
        assert not any(line.lower().startswith(name.lower() + ":") for line in lines), name
    assert sum(line.lower().startswith("x-forwarded-for:") for line in lines) == 1


# --- counters


def test_every_request_is_counted_by_status_class(pair, http_path):
    proxy, _ = pair
    before = proxy.status()["totals"]
    with client(proxy) as c:
        for target in ("/", "/?size=10", "/?status=404", "/?status=503", "/?status=204"):
            c.send(request("GET", target))
            c.read_response()
        c.send(request("HEAD", "/"))
        c.read_response("HEAD")
    with client(proxy) as c:
        c.send(request("GET", "/chat", "Connection: Upgrade", "Upgrade: websocket"))
        assert c.read_response().status == 101
    with client(proxy) as c:
        c.send(b"NOT HTTP AT ALL\r\n\r\n")
        assert c.read_response().status == 400
    with client(proxy) as c:
        c.send(request("GET", "/", "Content-Length: 1", "Content-Length: 2"))
        assert c.read_response().status == 400
    sent = {"1xx": 1, "2xx": 4, "3xx": 0, "4xx": 3, "5xx": 1}

    def counted() -> bool:
        totals = proxy.status()["totals"]
        delta = {k: totals["responses"][k] - before["responses"][k] for k in sent}
        return delta == sent and totals["requests"] - before["requests"] == sum(sent.values())
    wait_until(counted, 5, message="every request to be counted")
    totals = proxy.status()["totals"]
    assert totals["client_errors"] - before["client_errors"] == 2
    # Of those, the GETs answered 200, 404 and 503 with a body over a pooled connection can
    # take the fast path (the first of a connection dials, 204 and HEAD are the general path's).
    fast = totals["fast_path"] - before["fast_path"]
    assert (fast > 0) if http_path else (fast == 0), fast
