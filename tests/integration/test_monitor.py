"""The master's heartbeat monitor against a real shared-memory table (no sockets)."""

from __future__ import annotations

import os

import pytest

from hbfork.core.config import loads
from hbfork.core.members import Registry
from hbfork.master.monitor import BUMP_INTERVAL, Monitor
from hbfork.table.table import Table


@pytest.fixture
def monitor():
    config = loads('[heartbeat]\ndiscover = true\nrate_limit = 0\n', "m.toml")
    table = Table.create(16, 2, master_pid=800_000 + os.getpid() % 100_000)
    registry = Registry.from_config(config)
    mon = Monitor(registry, table, (), 0)
    try:
        yield mon
    finally:
        table.unlink()
        table.close()


def test_joining_is_published_at_once_and_ready_changes_are_coalesced(monitor):
    table = monitor.table
    start = table.generation
    assert monitor.receive(b"v=1&ready=5&busy=0&port=80", "127.0.0.2") == "accepted"
    monitor.publish(now=100.0)
    assert table.generation == start + 1  # a member joined the pick: urgent
    for ready in (6, 7, 8):
        monitor.receive(b"v=1&ready=%d&busy=0&port=80" % ready, "127.0.0.2")
        monitor.publish(now=100.0 + 0.001 * ready)
    assert table.generation == start + 1  # only ready moved: waiting
    assert monitor.bump_pending
    assert table.weight_word(0) & 0xFFFFFFFF == 8  # the words are already current
    monitor.publish(now=100.0 + BUMP_INTERVAL + 0.01)
    assert table.generation == start + 2 and not monitor.bump_pending
    monitor.receive(b"v=1&ready=0&busy=8&port=80", "127.0.0.2")
    monitor.publish(now=100.0 + BUMP_INTERVAL + 0.011)
    assert table.generation == start + 3  # it left the pick: urgent again


def test_every_datagram_is_counted_once_by_result(monitor):
    datagrams = (b"v=1&ready=1&busy=0", b"garbage", b"v=1&ready=x&busy=0",
                 b"v=1&ready=1&busy=0&port=0")
    results = [monitor.receive(data, "127.0.0.3") for data in datagrams]
    assert results == ["accepted", "malformed", "bad_number", "bad_port"]
    counters = monitor.table.heartbeat_counters()
    assert {k: v for k, v in counters.items() if v} == {
        "accepted": 1, "malformed": 1, "bad_number": 1, "bad_port": 1}
