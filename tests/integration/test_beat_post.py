"""Heartbeats POSTed to a client listener ([heartbeat] http_path), as Tomcat's TcpSender sends
them to Apache's `SetHandler heartbeat`: answered by hbfork itself, never forwarded, applied by
the master with the UDP path's allow-list and counters."""

from __future__ import annotations

import socket
import time

import pytest

from hbfork.core import heartbeat
from tests.integration.harness import free_port, get, wait_until

PATH = "/HeartbeatListener"


def _tcp_sender(proxy_port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=5,
                                    source_address=(source, 0))
    return sock


def _post(sock: socket.socket, body: bytes, path: str = PATH, method: str = "POST") -> bytes:
    """One request as TcpSender writes it (HTTP/1.0, keep-alive, a CRLF after the body not
    counted in Content-Length); returns the whole response."""
    sock.sendall(f"{method} {path} HTTP/1.0\r\nContent-Length: {len(body)}\r\n"
                 "User-Agent: HeartbeatListener/1.0\r\nConnection: Keep-Alive\r\n\r\n".encode()
                 + body + b"\r\n")
    return _response(sock)


def _response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        chunk = sock.recv(4096)
        assert chunk
        rest += chunk
    return head + b"\r\n\r\n" + rest


@pytest.mark.parametrize("fast_path", [True, False])
def test_tcp_sender_beats_make_a_member_eligible(cluster, fast_path):
    backend = cluster.backend("tomcat1", 8, heartbeat=None)  # beats only by HTTP
    proxy = cluster.proxy([{"address": backend.address}],
                          heartbeat={"http_path": PATH, "allow": ["127.0.0.0/29"],
                                     "startup_grace": 0},
                          http={"fast_path": fast_path})
    assert not proxy.member(backend.address)["eligible"]
    before = proxy.status()["heartbeats"].get("accepted", 0)
    with _tcp_sender(proxy.port, backend.ip) as sock:
        for ready in (5, 6, 7):  # one connection, kept alive, as TcpSender keeps it
            answer = _post(sock, heartbeat.encode(ready, 1, backend.port))
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
            assert answer.endswith(b"\r\n\r\nOK") and b"Connection: keep-alive" in answer
            assert b"X-Backend" not in answer
    proxy.wait_eligible(backend.address)
    assert proxy.member(backend.address)["ready"] == 7
    assert proxy.status()["heartbeats"]["accepted"] >= before + 3
    response, _, conn = get(proxy.url, "/app")
    conn.close()  # an idle keep-alive client holds the front's drain at teardown (2 s)
    assert response.status == 200 and response.getheader("X-Backend") == "tomcat1"


def test_other_methods_bad_bodies_and_strangers_are_answered_as_apache(cluster):
    backend = cluster.backend("tomcat1", 8, heartbeat=None)
    proxy = cluster.proxy([{"address": backend.address}],
                          heartbeat={"http_path": PATH, "allow": [f"{backend.ip}/32"]})
    response, _, conn = get(proxy.url, PATH)
    conn.close()  # an idle keep-alive client holds the front's drain at teardown (2 s)
    assert response.status == 405 and response.getheader("Allow") == "POST"
    assert response.getheader("X-Backend") is None  # answered by hbfork, not forwarded
    response, _, conn = get(proxy.url, PATH + "?x=1", method="PUT", body=b"v=1&ready=1&busy=0")
    conn.close()
    assert response.status == 405
    with _tcp_sender(proxy.port, backend.ip) as sock:
        assert _post(sock, b"v=1&ready=3").startswith(b"HTTP/1.1 400 ")
    with _tcp_sender(proxy.port, backend.ip) as sock:
        assert _post(sock, b"v=1&ready=3&busy=0&x=" + b"y" * 1000).startswith(b"HTTP/1.1 413 ")
    before = proxy.status()["heartbeats"].get("not_allowed", 0)
    with _tcp_sender(proxy.port, "127.0.0.9") as sock:  # not in [heartbeat] allow
        assert _post(sock, b"v=1&ready=3&busy=0").startswith(b"HTTP/1.1 403 ")
    wait_until(lambda: proxy.status()["heartbeats"].get("not_allowed", 0) == before + 1, 5,
               message="the refused beat to be counted")
    # A path next to the heartbeat location is routed as usual (a GET there is not a 405).
    response, _, conn = get(proxy.url, PATH + "X")
    conn.close()
    assert response.status != 405


def test_a_body_sent_in_pieces_is_waited_for(cluster):
    backend = cluster.backend("tomcat1", 8, heartbeat=None)
    proxy = cluster.proxy([{"address": backend.address}], heartbeat={"http_path": PATH})
    body = heartbeat.encode(4, 0)
    with _tcp_sender(proxy.port, backend.ip) as sock:
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body[:5])
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(100)  # nothing is answered before the body is whole
        sock.settimeout(5)
        sock.sendall(body[5:])
        assert _response(sock).startswith(b"HTTP/1.1 200 OK")
    proxy.wait_eligible(backend.address)


def test_only_the_listed_listeners_take_beats(cluster):
    backend = cluster.backend("tomcat1", 8, heartbeat=None)
    other = free_port()
    proxy = cluster.proxy([{"address": backend.address}],
                          proxy={"listen": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{other}"]},
                          heartbeat={"http_path": PATH, "http_listen": [f"127.0.0.1:{other}"],
                                     "startup_grace": 30})
    first = int(proxy.config["proxy"]["listen"][0].rsplit(":", 1)[1])
    with _tcp_sender(first, backend.ip) as sock:  # routed to the member as any POST
        answer = _post(sock, heartbeat.encode(3, 0))
        assert b"X-Backend: tomcat1" in answer
    with _tcp_sender(other, backend.ip) as sock:
        answer = _post(sock, heartbeat.encode(3, 0))
        assert answer.endswith(b"OK") and b"X-Backend" not in answer


def test_posted_beats_pass_the_rate_limit_and_signature_checks_of_datagrams(cluster, tmp_path):
    key = tmp_path / "hb.key"
    key.write_text("s3cret\n")
    key.chmod(0o600)
    backend = cluster.backend("tomcat1", 8, heartbeat=None)
    proxy = cluster.proxy([{"address": backend.address}],
                          heartbeat={"http_path": PATH, "key_file": str(key),
                                     "require_signature": True, "rate_limit": 1,
                                     "startup_grace": 0})
    with _tcp_sender(proxy.port, backend.ip) as sock:
        assert _post(sock, heartbeat.encode(5, 0)).startswith(b"HTTP/1.1 200 ")
        wait_until(lambda: proxy.status()["heartbeats"].get("unsigned", 0) == 1, 5,
                   message="the unsigned beat to be refused by the master")
        assert not proxy.member(backend.address)["eligible"]
        signed = heartbeat.sign(heartbeat.encode(5, 0), b"s3cret", time.time())
        assert _post(sock, signed).startswith(b"HTTP/1.1 200 ")
        proxy.wait_eligible(backend.address)
        for _ in range(8):  # over 1/s (burst 2): the master's per-source limiter says no
            _post(sock, heartbeat.sign(heartbeat.encode(5, 0), b"s3cret", time.time()))
    wait_until(lambda: proxy.status()["heartbeats"].get("rate_limited", 0) >= 1, 5,
               message="POSTed beats to be rate limited")
