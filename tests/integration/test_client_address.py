"""The real client address with real hbfork processes: trusted proxies' X-Forwarded-For (or a
named header) in the access log and the X-Forwarded-For sent on; PROXY protocol headers
accepted on a listener (HTTP, TCP, before TLS) and every bad one closed, counted, nothing
forwarded; PROXY headers sent to a pool's members (hbfork behind hbfork, so the member's own
access log says whom it saw)."""

from __future__ import annotations

import socket
import ssl
import struct
import urllib.request
from pathlib import Path

import pytest

from hbfork.core.proxy_protocol import V2_SIGNATURE, encode_v1, encode_v2
from tests.certs import Authority
from tests.integration.harness import free_port, wait_until

REQUEST = b"GET /?headers=1 HTTP/1.1\r\nHost: site.test\r\n%sConnection: close\r\n\r\n"


def _exchange(port: int, data: bytes, source: str = "127.0.0.1",
              wrap: ssl.SSLContext | None = None, before: bytes = b"") -> bytes:
    """Connect from `source`, send `before` raw (a PROXY header), then `data` (through TLS
    with `wrap`), and read until the server closes; b"" when it closed without answering."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10,
                                    source_address=(source, 0))
    try:
        try:
            if before:
                sock.sendall(before)
            if wrap is not None:
                sock = wrap.wrap_socket(sock, server_hostname="www.test")
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b""  # refused and closed before the rest was sent: no answer either
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return out
            if not chunk:
                return out
            out += chunk
    finally:
        sock.close()


def _request(extra: bytes = b"") -> bytes:
    return REQUEST % extra


def _member_saw(answer: bytes, name: bytes) -> bytes:
    """The value of header `name` in the request head the backend echoed (headers=1)."""
    head = answer.split(b"\r\n\r\n", 1)[1].decode("unicode_escape").encode("latin-1")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line.split(b":", 1)[1].strip()
    return b""


def _log_clients(path: Path, count: int) -> list[str]:
    """The client of each access log line, sorted: two workers flush their lines each in its
    own time, so the file's order is not the requests'."""
    lines = wait_until(lambda: path.exists() and len(path.read_text().splitlines()) >= count
                       and path.read_text().splitlines(), 5,
                       message=f"{count} access log lines")
    return sorted(line.split(" ", 1)[0] for line in lines)


def _front(cluster, tmp_path: Path, name: str = "access.log", **sections):
    log = tmp_path / name
    proxy = cluster.proxy([], heartbeat={"discover": True}, log={"access": str(log)},
                          **sections)
    backend = cluster.backend("b", 10, heartbeat=proxy.heartbeat_address)
    proxy.wait_eligible(backend.address)
    return proxy, log


def test_a_trusted_proxy_names_the_client_and_nobody_else_can(cluster, tmp_path):
    proxy, log = _front(cluster, tmp_path, proxy={"trusted_proxies": ["127.0.0.1/32"]})
    forged = b"X-Forwarded-For: 6.6.6.6, 203.0.113.9\r\n"
    answer = _exchange(proxy.port, _request(forged))  # from 127.0.0.1: trusted
    assert answer.startswith(b"HTTP/1.1 200")
    # the chain as received, and the connection's peer appended (mod_proxy's way)
    assert _member_saw(answer, b"X-Forwarded-For") == b"6.6.6.6, 203.0.113.9, 127.0.0.1"
    answer = _exchange(proxy.port, _request(forged), source="127.0.0.5")  # not trusted
    assert _member_saw(answer, b"X-Forwarded-For") == b"6.6.6.6, 203.0.113.9, 127.0.0.5"
    _exchange(proxy.port, _request(), source="127.0.0.6")  # no header: the fast path's
    assert _log_clients(log, 3) == sorted(["203.0.113.9", "127.0.0.5", "127.0.0.6"])


def test_a_named_client_header_is_read_on_both_paths(cluster, tmp_path):
    proxy, log = _front(cluster, tmp_path, proxy={"trusted_proxies": ["127.0.0.1/32"]},
                        http={"client_ip_header": "X-Real-IP"})
    real = b"X-Real-IP: 198.51.100.4\r\n"
    # A GET the fast path would take: it must hand over, or it would log the peer.
    assert _exchange(proxy.port, _request(real)).startswith(b"HTTP/1.1 200")
    _exchange(proxy.port, _request(real), source="127.0.0.5")
    _exchange(proxy.port, _request(b"X-Forwarded-For: 192.0.2.1\r\n"))  # not the header
    assert _log_clients(log, 3) == sorted(["198.51.100.4", "127.0.0.5", "127.0.0.1"])


def _proxy_listener(**options) -> dict:
    port = free_port()
    return {"address": f"127.0.0.1:{port}", "proxy_protocol": True,
            "proxy_protocol_from": ["127.0.0.1/32"], "proxy_protocol_timeout": 1, **options}


def _port(listen: dict) -> int:
    return int(listen["address"].rsplit(":", 1)[1])


def test_proxy_protocol_listener_takes_the_client_from_v1_and_v2(cluster, tmp_path):
    listen = _proxy_listener()
    proxy, log = _front(cluster, tmp_path, listen=[listen])
    port = _port(listen)
    v1 = encode_v1(("192.0.2.1", 4444), ("192.0.2.2", 80))
    answer = _exchange(port, _request(), before=v1)
    assert _member_saw(answer, b"X-Forwarded-For") == b"192.0.2.1"
    v2 = encode_v2(("2001:db8::7", 4444), ("2001:db8::8", 443))
    tlvs = b"\x01\x00\x02h2" + b"\xea\x00\x05vpc-1"  # ALPN, and AWS's VPC endpoint id
    v2 = v2[:14] + struct.pack("!H", struct.unpack("!H", v2[14:16])[0] + len(tlvs)) + \
        v2[16:] + tlvs
    assert _exchange(port, _request(), before=v2).startswith(b"HTTP/1.1 200")
    # LOCAL (a balancer's health check): the connection's own address
    assert _exchange(port, _request(), before=encode_v2(None)).startswith(b"HTTP/1.1 200")
    assert _log_clients(log, 3) == sorted(["192.0.2.1", "2001:db8::7", "127.0.0.1"])
    counts = proxy.status()["totals"]["proxy_protocol"]
    assert counts["ok"] == 2 and counts["local"] == 1


def test_bad_proxy_headers_are_closed_counted_and_never_forwarded(cluster, tmp_path):
    listen = _proxy_listener()
    proxy, log = _front(cluster, tmp_path, listen=[listen])
    port = _port(listen)
    requests_before = proxy.status()["totals"]["requests"]
    cases = {
        "malformed": [_exchange(port, _request()),  # no header at all
                      _exchange(port, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n" + _request()),
                      _exchange(port, V2_SIGNATURE + b"\x21\x11\xff\xff" + b"x" * 64)],
        "untrusted": [_exchange(port, _request(), source="127.0.0.5",
                                before=encode_v1(("192.0.2.1", 1), ("192.0.2.2", 2)))],
        "timeout": [_exchange(port, b"")],   # says nothing within proxy_protocol_timeout
    }
    # truncated: half a v2 header, then the client closes its side
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2))[:20])
    sock.shutdown(socket.SHUT_WR)
    cases["closed"] = [sock.recv(100)]
    sock.close()
    for result, answers in cases.items():
        assert answers == [b""] * len(answers), result  # closed, no answer

    def counted() -> bool:
        counts = proxy.status()["totals"]["proxy_protocol"]
        return all(counts[result] == len(answers) for result, answers in cases.items())
    wait_until(counted, 5, message="every refused header counted")
    assert proxy.status()["totals"]["requests"] == requests_before  # nothing reached a member
    assert not log.exists() or not log.read_text()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{proxy.status_port}/metrics",
                                     timeout=5).read().decode()
    assert 'hbfork_proxy_protocol_headers_total{result="malformed"} 3' in metrics
    # and the listener still serves a good one
    good = encode_v1(("192.0.2.3", 1), ("192.0.2.2", 2))
    assert _exchange(port, _request(), before=good).startswith(b"HTTP/1.1 200")
    # A refused header leaves the worker's connection set (it counts against max_connections,
    # and a graceful stop waits for the set to empty): nothing stays open.
    wait_until(lambda: proxy.status()["totals"]["connections"] == 0, 5,
               message="the refused connections to leave the workers' count")


def test_proxy_header_before_tls(cluster, tmp_path):
    ca = Authority(tmp_path / "pki")
    cert = ca.issue("www", "www.test")
    listen = _proxy_listener(tls=True)
    _proxy, log = _front(cluster, tmp_path, listen=[listen],
                        certificate=[{"cert": str(cert.cert), "key": str(cert.key)}])
    context = ssl.create_default_context(cafile=str(ca.path))
    header = encode_v2(("203.0.113.50", 5555), ("127.0.0.1", _port(listen)))
    answer = _exchange(_port(listen), _request(), wrap=context, before=header)
    assert answer.startswith(b"HTTP/1.1 200")
    assert _member_saw(answer, b"X-Forwarded-For") == b"203.0.113.50"
    assert _log_clients(log, 1) == sorted(["203.0.113.50"])


def _behind(cluster, tmp_path: Path):
    """hbfork B: HTTP mode, a PROXY listener, an access log; returns (B, its log, listener)."""
    listen = _proxy_listener(proxy_protocol_from=["127.0.0.0/8"])
    member, log = _front(cluster, tmp_path, "member.log", listen=[listen])
    return member, log, listen


@pytest.mark.parametrize("mode", ["http", "tcp"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_pool_sends_the_client_to_its_members(cluster, tmp_path, mode, version):
    member, member_log, listen = _behind(cluster, tmp_path)
    front = cluster.proxy([], proxy={"mode": mode}, heartbeat={"startup_grace": 3600},
                          pool=[{"name": "default", "members": [listen["address"]],
                                 "proxy_protocol": version}])
    # two requests on one keep-alive client connection (one member connection, kept for that
    # client), then one from another client (a connection of its own, never a shared one)
    sock = socket.create_connection(("127.0.0.1", front.port), timeout=10,
                                    source_address=("127.0.0.7", 0))
    with sock:
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: site.test\r\n\r\n")
            got = wait_until(lambda: _one_response(sock), 10, message="a response")
            assert got.startswith(b"HTTP/1.1 200"), got
    assert _exchange(front.port, _request(), source="127.0.0.8").startswith(b"HTTP/1.1 200")
    assert _log_clients(member_log, 3) == sorted(["127.0.0.7", "127.0.0.7", "127.0.0.8"])
    totals = member.status()["totals"]
    assert totals["accepted"] == 2 and totals["proxy_protocol"]["ok"] == 2, totals


def _one_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    return data


def test_tcp_mode_listener_passes_the_proxy_client_on(cluster, tmp_path):
    _member, member_log, listen = _behind(cluster, tmp_path)
    front_listen = _proxy_listener()
    front = cluster.proxy([], proxy={"mode": "tcp"}, heartbeat={"startup_grace": 3600},
                          listen=[front_listen],
                          pool=[{"name": "default", "members": [listen["address"]],
                                 "proxy_protocol": "v1"}])
    header = encode_v2(("192.0.2.99", 1234), ("192.0.2.2", 443))
    assert _exchange(_port(front_listen), _request(), before=header).startswith(
        b"HTTP/1.1 200")
    assert _log_clients(member_log, 1) == sorted(["192.0.2.99"])
    assert front.status()["totals"]["proxy_protocol"]["ok"] == 1
    # TCP mode refuses a bad header the same way
    assert _exchange(_port(front_listen), b"junk\r\n") == b""


def test_per_client_limits_count_the_client_a_proxy_header_names(cluster, tmp_path):
    """Behind a PROXY-protocol balancer every connection comes from the balancer: the
    per-client connection limit must count the clients its headers name, not the balancer."""
    listen = _proxy_listener()
    proxy, _ = _front(cluster, tmp_path, listen=[listen],
                      limits={"connections_per_client": 1})
    port = _port(listen)
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        held.sendall(encode_v1(("192.0.2.1", 1000), ("192.0.2.2", 80)))
        # the held connection is counted once hbfork has read its header
        wait_until(lambda: proxy.status()["totals"]["proxy_protocol"]["ok"] >= 1, 5,
                   message="the held connection's header to be read")
        other = _exchange(port, _request(), before=encode_v1(("192.0.2.9", 1), ("192.0.2.2", 80)))
        assert other.startswith(b"HTTP/1.1 200"), other[:200]
        same = _exchange(port, _request(), before=encode_v1(("192.0.2.1", 2), ("192.0.2.2", 80)))
        assert same.startswith(b"HTTP/1.1 429"), same[:200]
    finally:
        held.close()
    assert proxy.status()["totals"]["limited_connections"] >= 1
