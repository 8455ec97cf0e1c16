"""How much a worker reads from a member for a client (hbfork.proxy.http.slow.read_size),
against real loopback sockets: large reads for a client that keeps up, small ones for one
that is behind."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from hbfork.proxy.http.exchange import Exchange
from hbfork.proxy.http.slow import read_size

ROOM, MOST = 48 * 1024, 256 * 1024


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the proxy's side, the client's side, which reads nothing unless told)."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(listener.getsockname())
    proxy, _ = listener.accept()
    listener.close()
    proxy.setblocking(False)
    try:
        yield proxy, client
    finally:
        proxy.close()
        client.close()


def test_bytes_waiting_in_the_worker_bound_the_read(pair):
    proxy, _ = pair
    assert read_size(Exchange("c"), proxy, 1, ROOM, MOST) == ROOM


def test_a_client_with_nothing_queued_gets_large_reads(pair):
    proxy, _ = pair
    assert read_size(Exchange("c"), proxy, 0, ROOM, MOST) == MOST


def test_a_client_that_does_not_read_gets_small_reads(pair):
    proxy, _ = pair
    sent = 0
    while sent < 1 << 20:  # more than its window: the rest waits unsent in the kernel
        try:
            sent += proxy.send(b"x" * 65536)
        except BlockingIOError:
            break
    assert read_size(Exchange("c"), proxy, 0, ROOM, MOST) == ROOM


def test_a_closed_socket_gets_the_room_only():
    sock = socket.socket()
    sock.close()
    assert read_size(Exchange("c"), sock, 0, ROOM, MOST) == ROOM


def test_what_one_look_finds_free_serves_the_next_reads_without_a_look(pair):
    proxy, _ = pair
    ex = Exchange("c")
    assert read_size(ex, proxy, 0, ROOM, MOST) == MOST
    credit = ex.send_credit
    assert credit >= MOST  # loopback's send buffer takes several large reads
    proxy.close()  # a look now would fail and give ROOM: the credit answers instead
    assert read_size(ex, proxy, 0, ROOM, MOST) == MOST
    assert ex.send_credit == credit - MOST


def test_the_credit_errs_low_and_a_client_that_stops_reading_gets_small_reads(pair):
    proxy, _ = pair
    ex = Exchange("c")
    sizes = []
    for _ in range(64):  # read as told, send it all: the client reads nothing
        size = read_size(ex, proxy, 0, ROOM, MOST)
        sizes.append(size)
        try:
            sent = proxy.send(b"x" * size)
        except BlockingIOError:
            sent = 0
        assert sent == size or size == ROOM  # a large read always fitted the socket
        if sent < size:
            break
    assert sizes[0] == MOST and sizes[-1] == ROOM


def test_bytes_waiting_in_the_worker_cancel_the_credit(pair):
    proxy, _ = pair
    ex = Exchange("c")
    read_size(ex, proxy, 0, ROOM, MOST)
    assert read_size(ex, proxy, 1, ROOM, MOST) == ROOM
    assert ex.send_credit == 0
