"""Handing accepted connections between workers: the message and descriptor passing over a
real Unix socket pair, and the choice of the worker to hand to, read from a real table."""

from __future__ import annotations

import os
import socket

import pytest

from hbfork.proxy.handoff import SHARE_SLACK, least_loaded
from hbfork.system import fd_passing
from hbfork.table.layout import STATE_DRAINING, STATE_READY
from hbfork.table.table import Table


@pytest.mark.parametrize(("listener", "ip"), [(0, "127.0.0.1"), (3, "2001:db8::7"),
                                               (12, "-")])
def test_messages_round_trip(listener, ip):
    assert fd_passing.decode(fd_passing.encode(listener, ip)) == (listener, ip)


@pytest.mark.parametrize("message", [b"", b"x 1.2.3.4", b"1", b"-1 1.2.3.4", b"\xff 1"])
def test_a_message_that_is_no_hand_over_is_refused(message):
    assert fd_passing.decode(message) is None


def test_a_client_socket_passes_and_still_talks():
    (reader, sender), = fd_passing.make_pairs(1)
    left, right = socket.socketpair()
    try:
        fd_passing.send_client(sender, left, 2, "192.0.2.7")
        left.close()  # the sender's copy: the receiver holds its own
        client, listener, ip = fd_passing.receive_client(reader)
        assert (listener, ip) == (2, "192.0.2.7")
        client.sendall(b"ping")
        assert right.recv(4) == b"ping"
        client.close()
        with pytest.raises(BlockingIOError):
            fd_passing.receive_client(reader)
    finally:
        right.close()
        reader.close()
        sender.close()


def test_a_descriptorless_or_foreign_message_closes_what_came_with_it():
    (reader, sender), = fd_passing.make_pairs(1)
    try:
        sender.send(b"0 127.0.0.1")                    # no descriptor
        assert fd_passing.receive_client(reader) is None
        left, right = socket.socketpair()
        socket.send_fds(sender, [b"junk"], [left.fileno()])
        left.close()
        assert fd_passing.receive_client(reader) is None
        assert right.recv(1) == b""                    # its copy was closed: EOF
        right.close()
    finally:
        reader.close()
        sender.close()


def test_drain_closes_every_waiting_client():
    (reader, sender), = fd_passing.make_pairs(1)
    peers = []
    for n in range(3):
        left, right = socket.socketpair()
        fd_passing.send_client(sender, left, 0, f"10.0.0.{n}")
        left.close()
        peers.append(right)
    assert fd_passing.drain(reader) == 3
    assert all(peer.recv(1) == b"" for peer in peers)
    for sock in (*peers, reader, sender):
        sock.close()


@pytest.fixture
def table():
    t = Table.create(4, 4, master_pid=921_000 + os.getpid() % 1000)
    yield t
    t.unlink()
    t.close()


def _workers(table: Table, *rows: tuple[int, int, int]) -> None:
    """(state, generation, connections) per record."""
    for index, (state, generation, connections) in enumerate(rows):
        record = table.workers.record(index)
        record.claim(index + 1, generation)
        record.set_state(state)
        record.set_connections(connections)


def test_the_least_loaded_ready_peer_of_the_generation_is_chosen(table):
    _workers(table, (STATE_READY, 1, 9), (STATE_READY, 1, 5), (STATE_READY, 1, 3),
             (STATE_DRAINING, 1, 0))
    # record 3 drains, so record 2 (3 connections) is the least loaded
    assert least_loaded(table.workers, 0, 1, 9, {}) == 2
    # what was handed to it in this batch counts: now record 1 is
    assert least_loaded(table.workers, 0, 1, 9, {2: 3}) == 1


def test_no_hand_over_within_the_slack_or_across_generations(table):
    _workers(table, (STATE_READY, 1, 4), (STATE_READY, 1, 4 - SHARE_SLACK + 1),
             (STATE_READY, 2, 0))
    assert least_loaded(table.workers, 0, 1, 4, {}) is None   # within the slack
    assert least_loaded(table.workers, 0, 1, 4 + 1, {}) == 1
    assert least_loaded(table.workers, 2, 2, 10, {}) is None  # alone in its generation
