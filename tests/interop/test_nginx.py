"""Real nginx on both sides of hbfork, on loopback: nginx members behind it, nginx in front.

nginx is the web server most often found behind a front proxy, and its HTTP framing is strict
and complete: static files by sendfile, HEAD, conditional requests (304), ranges (206),
chunked gzip responses, request bodies it reads and discards, keep-alive with a request
limit. The member's own access log (with nginx's connection serial numbers) shows what
reached it and over how many connections. In front, nginx proxies to hbfork over pooled
HTTP/1.1 connections, as many sites put a CDN or nginx edge before their balancer.

Each test runs on both of hbfork's HTTP paths (the fast path and the general one).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import socket
import textwrap
from collections import Counter
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from hbfork.beat.beacon import Beacon
from tests.integration.harness import Process, Proxy, free_port, get, wait_until

pytestmark = pytest.mark.nginx

MEMBER_IP = "127.0.0.61"
FRONT_IP = "127.0.0.62"
CLIENT_IP = "127.0.0.64"      # the client's own address, as the edge nginx sees it
EDGE_SOURCE = "127.0.0.65"    # the edge nginx's address, as hbfork sees it
BIG = 2 * 1024 * 1024 + 17      # not a multiple of any buffer size
TEXT = b"a line of text that compresses well\n" * 4000


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")


class Nginx(Process):
    """nginx in the foreground from its own prefix directory, with an access log that names
    the connection (nginx's serial number) each request came on."""

    def __init__(self, directory: Path, name: str, server: str) -> None:
        binary = nginx_binary()
        assert binary is not None
        directory.mkdir(parents=True)
        for sub in ("logs", "tmp", "html"):
            (directory / sub).mkdir()
        self.directory = directory
        self.access_log = directory / "logs" / "access.log"
        conf = directory / "nginx.conf"
        conf.write_text(textwrap.dedent(f"""\
            daemon off;
            master_process on;
            worker_processes 1;
            {"user root root;" if os.geteuid() == 0 else ""}
            pid {directory}/nginx.pid;
            error_log stderr warn;
            events {{ worker_connections 512; }}
            http {{
                log_format trace '$connection $request_method $request_uri $status '
                                 '$body_bytes_sent "$http_x_forwarded_for"';
                access_log {self.access_log} trace;
                client_body_temp_path {directory}/tmp/body;
                proxy_temp_path {directory}/tmp/proxy;
                fastcgi_temp_path {directory}/tmp/fastcgi;
                uwsgi_temp_path {directory}/tmp/uwsgi;
                scgi_temp_path {directory}/tmp/scgi;
                sendfile on;
                keepalive_requests 100000;
                types {{ text/plain txt; application/octet-stream bin; }}
            """) + textwrap.indent(textwrap.dedent(server), "    ") + "}\n")
        super().__init__([binary, "-p", str(directory), "-c", str(conf), "-e", "stderr"],
                         directory / f"{name}.log")

    def requests(self) -> list[list[str]]:
        """The access log, a list of fields per request."""
        if not self.access_log.exists():
            return []
        return [line.split(" ", 5) for line in self.access_log.read_text().splitlines()]


def wait_listening(proc: Process, host: str, port: int) -> None:
    def listening() -> bool:
        if not proc.alive():
            raise AssertionError(f"exited:\n{proc.output()}")
        with socket.create_connection((host, port), timeout=1):
            return True

    wait_until(listening, 10, message=f"{host}:{port} to listen")


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nginx, int]]:
    if nginx_binary() is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    directory = tmp_path_factory.mktemp("nginx") / "member"
    port = free_port(MEMBER_IP)
    server = f"""\
        server {{
            listen {MEMBER_IP}:{port};
            root {directory}/html;
            gzip on;
            gzip_types text/plain;
            gzip_min_length 1;
            location = /upload {{ client_max_body_size 16m; return 204; }}
        }}
        """
    nginx = Nginx(directory, "member", server)
    html = directory / "html"
    (html / "small.txt").write_bytes(b"hello from nginx\n")
    (html / "big.bin").write_bytes(os.urandom(BIG))
    (html / "text.txt").write_bytes(TEXT)
    try:
        wait_listening(nginx, MEMBER_IP, port)
        yield nginx, port
    finally:
        nginx.stop()


@pytest.fixture(params=[True, False], ids=["fast", "general"])
def front(request: pytest.FixtureRequest, member: tuple[Nginx, int],
          tmp_path: Path) -> Iterator[Proxy]:
    """hbfork over the nginx member, which heartbeats through a Beacon (ready 10)."""
    _, port = member
    proxy = Proxy(tmp_path, [{"address": f"{MEMBER_IP}:{port}"}],
                  proxy={"workers": 1}, http={"fast_path": request.param})
    beacon = Beacon(("127.0.0.1", proxy.heartbeat_port), port=port, source=MEMBER_IP,
                    interval=0.2)
    beacon.start(lambda: (10, 0))
    try:
        proxy.wait_ready()
        proxy.wait_eligible(f"{MEMBER_IP}:{port}")
        yield proxy
    finally:
        beacon.stop()
        proxy.stop()


def connection(proxy: Proxy) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)


def test_static_files_whole_and_unaltered(front: Proxy, member: tuple[Nginx, int]) -> None:
    nginx, _ = member
    expected = (nginx.directory / "html" / "big.bin").read_bytes()
    conn = connection(front)
    response, small, conn = get(front.url, "/small.txt", conn=conn)
    assert response.status == 200 and small == b"hello from nginx\n"
    assert response.getheader("Server", "").startswith("nginx")
    for _ in range(3):  # sendfile bodies over one kept-alive client connection
        response, body, conn = get(front.url, "/big.bin", conn=conn)
        assert response.status == 200
        assert int(response.getheader("Content-Length")) == BIG
        assert hashlib.sha256(body).digest() == hashlib.sha256(expected).digest()
    response, missing, conn = get(front.url, "/nope", conn=conn)
    assert response.status == 404 and b"nginx" in missing
    conn.close()


def test_head_304_and_206_keep_the_connection_in_step(front: Proxy) -> None:
    conn = connection(front)
    response, body, conn = get(front.url, "/big.bin", conn=conn, method="HEAD")
    assert response.status == 200 and body == b""
    assert int(response.getheader("Content-Length")) == BIG   # announced, never sent
    modified = response.getheader("Last-Modified")
    etag = response.getheader("ETag")
    response, body, conn = get(front.url, "/big.bin", conn=conn,
                               headers={"If-Modified-Since": modified})
    assert response.status == 304 and body == b""
    response, body, conn = get(front.url, "/big.bin", conn=conn,
                               headers={"If-None-Match": etag})
    assert response.status == 304 and body == b""
    response, body, conn = get(front.url, "/big.bin", conn=conn,
                               headers={"Range": "bytes=100-199"})
    assert response.status == 206 and len(body) == 100
    assert response.getheader("Content-Range") == f"bytes 100-199/{BIG}"
    old = formatdate(0, usegmt=True)  # long before the file: the whole file again
    response, body, conn = get(front.url, "/small.txt", conn=conn,
                               headers={"If-Modified-Since": old})
    assert response.status == 200 and body == b"hello from nginx\n"
    conn.close()


def test_chunked_gzip_responses_pass_through(front: Proxy) -> None:
    conn = connection(front)
    for _ in range(2):
        response, body, conn = get(front.url, "/text.txt", conn=conn,
                                   headers={"Accept-Encoding": "gzip"})
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.getheader("Content-Encoding") == "gzip"
        assert gzip.decompress(body) == TEXT
    response, body, conn = get(front.url, "/small.txt", conn=conn)
    assert body == b"hello from nginx\n"  # the connection is still in step after chunks
    conn.close()


def test_request_bodies_nginx_reads_and_discards(front: Proxy) -> None:
    conn = connection(front)
    payload = os.urandom(3 * 1024 * 1024)
    for _ in range(2):
        response, body, conn = get(front.url, "/upload", conn=conn, method="POST",
                                   body=payload)
        assert response.status == 204 and body == b""
    response, body, conn = get(front.url, "/small.txt", conn=conn)
    assert response.status == 200 and body == b"hello from nginx\n"
    conn.close()


def test_member_connections_are_reused(front: Proxy, member: tuple[Nginx, int]) -> None:
    nginx, _ = member
    before = len(nginx.requests())
    conn = connection(front)
    for _ in range(200):
        response, body, conn = get(front.url, "/small.txt?reuse", conn=conn)
        assert response.status == 200 and body == b"hello from nginx\n"
    conn.close()
    wait_until(lambda: len(nginx.requests()) >= before + 200, 5,
               message="nginx to log the requests")
    ours = [r for r in nginx.requests()[before:] if r[2] == "/small.txt?reuse"]
    assert len(ours) == 200
    connections = {r[0] for r in ours}
    assert len(connections) <= 2, f"200 sequential requests came on {len(connections)}"
    assert all(r[5] == '"127.0.0.1"' for r in ours)  # X-Forwarded-For: the client


def test_nginx_in_front_of_hbfork(front: Proxy, member: tuple[Nginx, int],
                                  tmp_path: Path) -> None:
    nginx_member, _ = member
    port = free_port(FRONT_IP)
    server = f"""\
        upstream hbfork {{ server 127.0.0.1:{front.port}; keepalive 8; }}
        server {{
            listen {FRONT_IP}:{port};
            location / {{
                proxy_pass http://hbfork;
                proxy_bind {EDGE_SOURCE};
                proxy_http_version 1.1;
                proxy_set_header Connection "";
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_buffering off;
                client_max_body_size 16m;
            }}
        }}
        """
    edge = Nginx(tmp_path / "edge", "edge", server)
    try:
        wait_listening(edge, FRONT_IP, port)
        before = len(nginx_member.requests())
        accepted_before = front.status()["totals"]["accepted"]
        url = f"http://{FRONT_IP}:{port}"
        conn = http.client.HTTPConnection(FRONT_IP, port, timeout=10,
                                          source_address=(CLIENT_IP, 0))
        expected = (nginx_member.directory / "html" / "big.bin").read_bytes()
        for number in range(60):
            path = "/big.bin" if number % 20 == 0 else f"/small.txt?edge={number}"
            response, body, conn = get(url, path, conn=conn)
            assert response.status == 200, (response.status, body[:200])
            if path == "/big.bin":
                assert body == expected
            else:
                assert body == b"hello from nginx\n"
        response, body, conn = get(url, "/upload", conn=conn, method="POST",
                                   body=os.urandom(1024 * 1024))
        assert response.status == 204
        conn.close()
        # hbfork saw nginx's pooled connections: few accepted for the 61 requests
        accepted = front.status()["totals"]["accepted"] - accepted_before
        assert accepted <= 8, f"{accepted} connections from nginx's keepalive pool of 8"
        wait_until(lambda: len(nginx_member.requests()) >= before + 61, 5,
                   message="the member to log the requests")
        seen = [r for r in nginx_member.requests()[before:] if "edge=" in r[2]]
        assert len(seen) == 57
        # each hop appends: the client, then the edge nginx (as hbfork's client)
        assert all(r[5] == f'"{CLIENT_IP}, {EDGE_SOURCE}"' for r in seen), seen[:3]
    finally:
        edge.stop()


def test_a_member_that_closes_after_its_request_limit(front: Proxy,
                                                      tmp_path: Path) -> None:
    """nginx closes a keep-alive connection after keepalive_requests, saying so with
    `Connection: close` on the last answer: hbfork must not send on that connection again
    (which would cost a retry, or a 502 for a POST, which is never replayed)."""
    ip = "127.0.0.63"
    port = free_port(ip)
    server = f"""\
        server {{
            listen {ip}:{port};
            keepalive_requests 3;
            location / {{ return 200 "limited\\n"; }}
        }}
        """
    limited = Nginx(tmp_path / "limited", "limited", server)
    home = tmp_path / "proxy"
    home.mkdir()
    proxy = Proxy(home, [{"address": f"{ip}:{port}"}], proxy={"workers": 1},
                  http=front.config["http"])
    beacon = Beacon(("127.0.0.1", proxy.heartbeat_port), port=port, source=ip, interval=0.2)
    beacon.start(lambda: (10, 0))
    try:
        wait_listening(limited, ip, port)
        proxy.wait_ready()
        proxy.wait_eligible(f"{ip}:{port}")
        conn = None
        for number in range(30):
            method = "POST" if number % 2 else "GET"   # a POST is never replayed
            response, body, conn = get(proxy.url, "/", conn=conn, method=method,
                                       body=b"x" if method == "POST" else None)
            assert response.status == 200 and body == b"limited\n"
        conn.close()
        wait_until(lambda: len(limited.requests()) >= 30, 5, message="nginx's log")
        # 3 requests per connection at most (nginx closes after them; it may also close one
        # after a POST it answered before the body arrived, which hbfork sees while the
        # connection idles in its pool): never a request sent on a connection nginx closed
        per_connection = Counter(r[0] for r in limited.requests())
        assert sum(per_connection.values()) == 30
        assert max(per_connection.values()) == 3 and len(per_connection) >= 10, per_connection
        totals = proxy.status()["totals"]
        assert totals["retries"] == 0 and totals["connect_failures"] == 0, totals
    finally:
        beacon.stop()
        proxy.stop()
        limited.stop()
