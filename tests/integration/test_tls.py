"""TLS at the front with real processes and real clients (curl, openssl s_client, http.client).
Certificates are made for each test (tests/certs.py)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.certs import Authority
from tests.integration.harness import free_port, wait_until

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")


class TlsFront:
    """A proxy with one TLS listener, certificates for www.test and *.api.test."""

    def __init__(self, cluster, tmp: Path, **sections) -> None:
        self.ca = Authority(tmp / "pki")
        self.www = self.ca.issue("www", "www.test", "test")
        self.api = self.ca.issue("api", "*.api.test")
        self.port = free_port()
        self.plain = free_port()
        listen = [{"address": f"127.0.0.1:{self.port}", "tls": True, "hsts": 3600},
                  {"address": f"127.0.0.1:{self.plain}", "redirect_https": True,
                   "https_port": self.port}]
        certificates = [{"cert": str(self.www.cert), "key": str(self.www.key)},
                        {"cert": str(self.api.cert), "key": str(self.api.key)}]
        self.proxy = cluster.proxy([], heartbeat={"discover": True}, listen=listen,
                                   certificate=certificates, **sections)
        self.backend = cluster.backend("b", 20, heartbeat=self.proxy.heartbeat_address)
        self.proxy.wait_eligible(self.backend.address)

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca.path))
        return context

    def connection(self, host: str = "www.test") -> http.client.HTTPSConnection:
        return _Connection("127.0.0.1", self.port, host, self.context())


class _Connection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with `host` as SNI and for the certificate check."""

    def __init__(self, ip: str, port: int, host: str, context: ssl.SSLContext) -> None:
        super().__init__(host, port, context=context, timeout=10)
        self.ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self.ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@pytest.fixture
def front(cluster, tmp_path):
    return TlsFront(cluster, tmp_path)


def test_https_keep_alive_requests_and_headers(front):
    conn = front.connection()
    for _ in range(5):
        conn.request("GET", "/?headers=1")
        response = conn.getresponse()
        seen = json.loads(response.read())
        assert response.status == 200
    conn.close()
    assert response.getheader("Strict-Transport-Security") == "max-age=3600"
    assert "X-Forwarded-Proto: https\r\n" in seen["head"]
    assert f"X-Forwarded-Port: {front.port}\r\n" in seen["head"]
    assert conn.sock is None


def test_the_proxys_own_answers_carry_hsts_too(front):
    conn = front.connection()
    conn.request("GET", "/", headers={"Content-Length": "1, 2"})  # refused by the proxy: 400
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 400
    assert response.getheader("Strict-Transport-Security") == "max-age=3600"


def test_sni_picks_the_certificate(front):
    for host, expected in (("www.test", "www.test"), ("v1.api.test", "*.api.test")):
        conn = front.connection(host)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        names = [v for k, v in conn.sock.getpeercert()["subjectAltName"]]
        conn.close()
        assert expected in names


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_curl(front):
    result = subprocess.run(
        [CURL, "-sS", "--http1.1", "--cacert", str(front.ca.path), "--resolve",
         f"www.test:{front.port}:127.0.0.1", f"https://www.test:{front.port}/"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "b\n"


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
@pytest.mark.parametrize(("flag", "works"), [("-tls1_2", True), ("-tls1_3", True),
                                             ("-tls1_1", False), ("-tls1", False)])
def test_old_protocols_are_refused(front, flag, works):
    result = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{front.port}", "-servername", "www.test",
         flag, "-CAfile", str(front.ca.path), "-alpn", "http/1.1"],
        input="", capture_output=True, text=True, timeout=30)
    handshook = "Cipher is (NONE)" not in result.stdout and ", Cipher is " in result.stdout
    assert handshook is works, result.stdout[-500:] + result.stderr[-500:]
    if works:
        assert "ALPN protocol: http/1.1" in result.stdout


def test_plain_http_to_the_tls_port_is_closed_and_the_worker_lives(front):
    sock = socket.create_connection(("127.0.0.1", front.port), timeout=5)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: www.test\r\n\r\n")
    try:
        answer = sock.recv(200)
    except ConnectionResetError:
        answer = b""
    sock.close()
    # a short plain 400, or nothing: either way the connection is closed
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400 "), answer
    conn = front.connection()
    conn.request("GET", "/")
    assert conn.getresponse().status == 200
    conn.close()
    results = front.proxy.status()["tls"]["handshakes"]
    assert results["plain_http"] >= 1


def test_redirect_to_https(front):
    conn = http.client.HTTPConnection("127.0.0.1", front.plain, timeout=5)
    conn.request("GET", "/a/b?c=1", headers={"Host": "www.test"})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 301
    assert response.getheader("Location") == f"https://www.test:{front.port}/a/b?c=1"


def test_a_stalled_handshake_is_dropped_while_others_are_served(cluster, tmp_path):
    front = TlsFront(cluster, tmp_path, tls={"handshake_timeout": 1})
    stalled = socket.create_connection(("127.0.0.1", front.port), timeout=5)
    stalled.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
    started = time.monotonic()
    for _ in range(3):
        conn = front.connection()
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
        conn.close()
    assert stalled.recv(100) == b""  # closed at the deadline
    assert time.monotonic() - started >= 0.9
    stalled.close()
    assert front.proxy.status()["tls"]["handshakes"]["timeout"] == 1


def test_failed_handshakes_leave_the_workers_connection_count(cluster, tmp_path):
    """A handshake that fails or times out is no connection any more: it must not count
    against max_connections (a scanner would stop the worker accepting) nor hold a graceful
    stop until shutdown_timeout."""
    front = TlsFront(cluster, tmp_path, tls={"handshake_timeout": 1})
    stalled = [socket.create_connection(("127.0.0.1", front.port), timeout=5) for _ in range(3)]
    for sock in stalled:
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
    for _ in range(3):  # plain HTTP to the TLS port: answered 400 and closed
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: www.test\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                while plain.recv(4096):
                    pass
    wait_until(lambda: front.proxy.status()["tls"]["handshakes"]["timeout"] == 3, 10,
               message="the stalled handshakes to time out")
    for sock in stalled:
        sock.close()
    wait_until(lambda: front.proxy.status()["totals"]["connections"] == 0, 5,
               message="failed handshakes to leave the workers' connection count")
    assert front.proxy.status()["tls"]["handshakes"]["plain_http"] >= 3


def test_a_thousand_handshakes_leak_nothing(front):
    workers = [w["pid"] for w in front.proxy.workers()]

    def fds() -> int:
        return sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in workers)

    before = fds()
    context = front.context()
    for _ in range(1000):
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="www.test"):
            pass
    wait_until(lambda: fds() <= before + 2, 10, message="every connection closed")
    assert front.proxy.status()["tls"]["handshakes"]["ok"] \
        + front.proxy.status()["tls"]["handshakes"]["resumed"] >= 1000


def test_resumption_skips_the_full_handshake(front):
    context = front.context()
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="www.test") as first:
        first.sendall(b"GET / HTTP/1.1\r\nHost: www.test\r\n\r\n")
        first.recv(1000)  # TLS 1.3 sends its tickets after the handshake
        session = first.session
    resumed = 0
    for _ in range(3):  # any worker can resume it: the ticket keys are shared
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="www.test", session=session) as again:
            again.sendall(b"GET / HTTP/1.1\r\nHost: www.test\r\n\r\n")
            again.recv(1000)
            resumed += again.session_reused
            session = again.session
    assert resumed == 3


def test_certificates_rotate_on_reload_without_losing_requests(front, tmp_path):
    failures: list[str] = []
    stop = threading.Event()
    done = [0]

    def load() -> None:
        while not stop.is_set():
            try:
                conn = front.connection()
                conn.request("GET", "/")
                if conn.getresponse().status != 200:
                    failures.append("status")
                conn.close()
                done[0] += 1
            except (OSError, http.client.HTTPException) as err:
                failures.append(repr(err))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: done[0] > 50, 10, message="load")
        old_serial = _serial(front)
        renewed = front.ca.issue("www", "www.test", "test")  # same files, new certificate
        assert renewed.cert == front.www.cert
        front.proxy.send_signal(signal.SIGHUP)
        wait_until(lambda: _serial(front) != old_serial, 20, message="the new certificate")
        count = done[0]
        wait_until(lambda: done[0] > count + 50, 10, message="load after the rotation")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert failures == []


def _serial(front) -> int:
    conn = front.connection()
    conn.request("GET", "/")
    serial = int(conn.sock.getpeercert()["serialNumber"], 16)  # before a close can drop it
    conn.getresponse().read()
    conn.close()
    return serial


def test_a_bad_certificate_on_reload_keeps_the_old_one(front):
    serial = _serial(front)
    front.proxy.config["certificate"][0]["key"] = str(front.ca.other_key("mismatch"))
    front.proxy.write_config()
    front.proxy.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in front.proxy.output(), 10, message="the reload to fail")
    assert "does not match the certificate" in front.proxy.output()
    assert _serial(front) == serial


# --- TLS to members


class TlsMember:
    """A member that speaks HTTPS (Python's http.server behind TLS), with heartbeats."""

    def __init__(self, ca: Authority, ip: str, heartbeat_port: int) -> None:
        import http.server

        issued = ca.issue(f"member-{ip}", "member.test", ip=ip)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(issued.cert), str(issued.key))

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = f"tls member sni={self.connection.server_hostname}\n".encode() \
                    if hasattr(self.connection, "server_hostname") else b"tls member\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Backend", "tls-member")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((ip, 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        from hbfork.beat import Beacon
        self.beacon = Beacon(("127.0.0.1", heartbeat_port), port=self.port, source=ip,
                             interval=0.2)
        self.beacon.start(lambda: (10, 0))

    def stop(self) -> None:
        self.beacon.stop()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("ca_kind", "verify", "works"), [
    ("right", True, True), ("wrong", True, False), ("wrong", False, True)])
def test_tls_to_members(cluster, tmp_path, ca_kind, verify, works):
    ca = Authority(tmp_path / "pki")
    other = Authority(tmp_path / "other", "another CA")
    heartbeat = free_port(kind=socket.SOCK_DGRAM)
    member = TlsMember(ca, "127.0.0.7", heartbeat)
    try:
        pool = {"name": "secure", "tls": True, "tls_verify": verify,
                "tls_ca": str((ca if ca_kind == "right" else other).path),
                "tls_server_name": "member.test",
                "member": [{"address": f"127.0.0.7:{member.port}"}]}
        proxy = cluster.proxy([], pool=[pool], route=[{"path": "/", "pool": "secure"}],
                              heartbeat={"listen": f"127.0.0.1:{heartbeat}"})
        proxy.wait_eligible(f"127.0.0.7:{member.port}")
        for _ in range(3):  # keep-alive reuse of the TLS member connection too
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
            conn.request("GET", "/")
            response = conn.getresponse()
            body = response.read()
            conn.close()
            if works:
                assert response.status == 200 and body.startswith(b"tls member"), body
            else:
                assert response.status in (502, 503), (response.status, body)
                break
        if not works:
            wait_until(lambda: "TLS" in proxy.output(), 5, message="the TLS failure logged")
    finally:
        member.stop()


# --- a TLS listener in TCP mode: terminate, then relay plain bytes


@pytest.fixture
def tcp_front(cluster, tmp_path):
    ca = Authority(tmp_path / "pki")
    www = ca.issue("www", "www.test")
    port = free_port()
    proxy = cluster.proxy([], proxy={"mode": "tcp"}, heartbeat={"discover": True},
                          listen=[{"address": f"127.0.0.1:{port}", "tls": True}],
                          certificate=[{"cert": str(www.cert), "key": str(www.key)}])
    backend = cluster.backend("b", 20, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    return ca, port, proxy


def tls_socket(ca: Authority, port: int, ragged_eofs: bool = True) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(ca.path))
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(sock, server_hostname="www.test",
                               suppress_ragged_eofs=ragged_eofs)


def test_tcp_mode_terminates_tls_and_relays_keep_alive_requests(tcp_front):
    ca, port, proxy = tcp_front
    conn = _Connection("127.0.0.1", port, "www.test", ssl.create_default_context(
        cafile=str(ca.path)))
    for _ in range(5):  # one TLS connection, one member connection: a byte relay
        conn.request("GET", "/?headers=1")
        response = conn.getresponse()
        seen = json.loads(response.read())
        assert response.status == 200
    conn.close()
    # The member gets the client's bytes as sent: TCP mode adds no X-Forwarded-*.
    assert seen["head"].startswith("GET /?headers=1 HTTP/1.1\r\n")
    assert "X-Forwarded" not in seen["head"]
    assert proxy.status()["tls"]["handshakes"]["ok"] >= 1


def test_tcp_mode_over_tls_streams_large_bodies_both_ways(tcp_front):
    ca, port, _ = tcp_front
    body = os.urandom(3 << 20)
    with tls_socket(ca, port) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: www.test\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        answer = read_http(sock)
        assert json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()
        size = 8 << 20
        sock.sendall(b"GET /?size=%d HTTP/1.1\r\nHost: www.test\r\n\r\n" % size)
        assert len(read_http(sock)) == size


def test_tcp_mode_over_tls_ends_with_close_notify_when_the_member_closes(tcp_front):
    ca, port, _ = tcp_front
    # Ragged EOFs not suppressed: a TCP FIN without TLS close_notify would raise SSLEOFError.
    with tls_socket(ca, port, ragged_eofs=False) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: www.test\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"b\n")


def read_http(sock: ssl.SSLSocket) -> bytes:
    """The body of one Content-Length response read from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(1 << 20)
        assert chunk, len(body)
        body += chunk
    assert len(body) == length
    return body
