"""A WebSocket through hbfork with real WebSocket programs on both ends: the `websockets`
package's client and server (issue 24: the upgrade allow-list and the slow-client limits must
leave WebSockets working)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.sync.client import connect
from websockets.sync.server import Server, ServerConnection, serve

from hbfork.beat.beacon import Beacon
from tests.integration.harness import free_port


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


@contextmanager
def websocket_member(cluster, **sections) -> Iterator[object]:
    ip = "127.0.0.51"
    port = free_port(ip)
    server: Server = serve(echo, ip, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = cluster.proxy([{"address": f"{ip}:{port}"}], proxy={"workers": 1}, **sections)
    beacon = Beacon(("127.0.0.1", proxy.heartbeat_port), port=port, source=ip, interval=0.2)
    beacon.start(lambda: (10, 0))
    try:
        proxy.wait_eligible(f"{ip}:{port}")
        yield proxy
    finally:
        beacon.stop()
        server.shutdown()


def test_a_websocket_works_through_hbfork(cluster):
    with websocket_member(cluster) as proxy, \
            connect(f"ws://127.0.0.1:{proxy.port}/chat", open_timeout=5) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        big = os.urandom(1_000_000)  # more than the tunnel's high-water mark, both ways
        ws.send(big)
        assert ws.recv(timeout=10) == big
        for n in range(50):
            ws.send(f"message {n}")
        assert [ws.recv(timeout=5) for _ in range(50)] == [f"message {n}" for n in range(50)]


def test_a_websocket_is_not_cut_by_the_slow_client_limits(cluster):
    """An idle WebSocket is a tunnel: the minimum rates of bodies and readers do not apply."""
    http = {"body_timeout": 0.5, "body_min_rate": 1_000_000, "send_timeout": 0.5,
            "send_min_rate": 1_000_000}
    with websocket_member(cluster, http=http) as proxy, \
            connect(f"ws://127.0.0.1:{proxy.port}/", open_timeout=5) as ws:
        ws.send("one")
        assert ws.recv(timeout=5) == "one"
        try:
            ws.recv(timeout=1.5)  # idle for three times the limits' grace
        except TimeoutError:
            pass
        ws.send("two")
        assert ws.recv(timeout=5) == "two"
    assert proxy.status()["totals"]["slow_clients"] == {
        "slow_head": 0, "slow_body": 0, "slow_reader": 0}
