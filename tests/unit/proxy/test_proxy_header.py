"""hbfork.proxy.proxy_header: the PROXY header read from a real socket in a real event loop,
whole or a byte at a time, never a byte past it; refusals closed and counted; the header
written to a member."""

from __future__ import annotations

import socket
import time

import pytest

from hbfork.core.addresses import parse_network
from hbfork.core.client_address import Origin
from hbfork.core.proxy_protocol import encode_v1, encode_v2, parse
from hbfork.core.tls_settings import ListenSettings
from hbfork.proxy.loop import Loop
from hbfork.proxy.proxy_header import ProxyHeaderReader, header_for, origin_of, send_header

LOCAL = (parse_network("127.0.0.0/8"),)
LISTEN = ListenSettings(proxy_protocol=True, proxy_protocol_timeout=0.3)


class Record:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count_proxy_header(self, result: str) -> None:
        self.counts[result] = self.counts.get(result, 0) + 1


@pytest.fixture
def pair():
    """(server end, client end) of a real TCP connection on loopback."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    server.setblocking(False)
    yield server, client
    server.close()
    client.close()


def _run(loop: Loop, until, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        loop.run_once(0.05)


def _reader(pair, sources=LOCAL):
    loop, record, done = Loop(), Record(), []
    server, _ = pair
    reader = ProxyHeaderReader(loop, record, server, "127.0.0.1", LISTEN, sources, done.append)
    return loop, record, done, reader


@pytest.mark.parametrize("header", [
    encode_v1(("192.0.2.1", 1000), ("192.0.2.2", 443)),
    encode_v2(("2001:db8::1", 1000), ("2001:db8::2", 443)),
])
@pytest.mark.parametrize("piecewise", [False, True])
def test_header_read_and_the_rest_left_alone(pair, header, piecewise):
    loop, record, done, reader = _reader(pair)
    _, client = pair
    rest = b"GET / HTTP/1.1\r\n\r\n"
    if piecewise:
        for byte in header:
            client.sendall(bytes((byte,)))
            loop.run_once(0.01)
        client.sendall(rest)
    else:
        client.sendall(header + rest)
    _run(loop, lambda: done)
    assert reader.client_ip == parse(header).source[0]
    assert reader.origin == Origin(parse(header).source, parse(header).destination, True)
    assert record.counts == {"ok": 1}
    got = b""
    pair[0].setblocking(True)
    while len(got) < len(rest):
        got += pair[0].recv(100)
    assert got == rest  # not a byte of the request was taken


def test_local_keeps_the_connection_addresses(pair):
    loop, record, done, reader = _reader(pair)
    pair[1].sendall(encode_v2(None))
    _run(loop, lambda: done)
    assert reader.client_ip == "127.0.0.1" and record.counts == {"local": 1}
    assert reader.origin == origin_of(pair[0])


@pytest.mark.parametrize(("data", "result"), [
    (b"GET / HTTP/1.1\r\n\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed"),
    (encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2))[:20], "closed"),  # then EOF
    (b"", "timeout"),
])
def test_refused(pair, data, result):
    loop, record, done, reader = _reader(pair)
    server, client = pair
    if data:
        client.sendall(data)
    if result == "closed":
        client.shutdown(socket.SHUT_WR)
    _run(loop, lambda: reader.closed)
    assert record.counts == {result: 1} and not done
    assert server.fileno() == -1  # closed


def test_untrusted_source_is_closed_at_once(pair):
    _loop, record, done, reader = _reader(pair, sources=(parse_network("10.0.0.0/8"),))
    assert reader.closed and record.counts == {"untrusted": 1} and not done
    assert pair[0].fileno() == -1


def test_send_header(pair):
    server, client = pair
    origin = Origin(("192.0.2.9", 5), ("192.0.2.10", 80), True)
    assert send_header(client, "v2", origin, server)
    server.setblocking(True)
    assert parse(server.recv(100)).source == ("192.0.2.9", 5)
    assert send_header(client, "v1", None, server)  # None: the client socket's own
    line = server.recv(100)
    assert line.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 ")
    assert header_for("v1", None) == b"PROXY UNKNOWN\r\n"
    assert parse(header_for("v2", None)).source is None  # LOCAL
