"""Protocol upgrades pass only by allow-list, and h2c never: a tunnel would carry requests past
the routes. Real `hbfork run` and `hbfork backend` processes; the backend switches to whatever
protocol a request offers (h2c included), as a careless h2c-capable member would."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from tests.integration.harness import HBFORK
from tests.integration.test_http import client, request
from tests.integration.test_pools import addresses, start

H2C = ("Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
       "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")


@pytest.fixture(params=["fast path", "general path"])
def guarded(request, cluster):
    """/admin kept out by a pass = false route; everything else to the pool "app"."""
    cluster.http_defaults["fast_path"] = request.param == "fast path"
    a, = addresses("127.0.0.2")
    pools = [{"name": "app", "members": [f"{a[0]}:{a[1]}"]}]
    routes = [{"path": "/admin", "pass": False, "status": 403},
              {"path": "/", "pool": "app"}]
    proxy, _ = start(cluster, pools, routes, {"a": a})
    return proxy


def test_h2c_upgrade_is_dropped_and_the_request_served_plainly(guarded):
    with client(guarded) as c:
        c.send(request("GET", "/?headers=1", *H2C))
        response = c.read_response()
        assert response.status == 200  # not 101: no tunnel was opened
        head = json.loads(response.body)["head"].lower()
        assert "upgrade" not in head and "http2-settings" not in head
        # The connection is still HTTP: a request for the guarded path is refused.
        c.send(request("GET", "/admin"))
        assert c.read_response().status == 403


def test_no_tunnel_reaches_a_pass_false_route(guarded):
    """h2csmuggler's move: upgrade on an allowed path, then ask for /admin inside."""
    with client(guarded) as c:
        c.send(request("GET", "/", *H2C))
        assert c.read_response().status == 200
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # the HTTP/2 preface is not HTTP/1.1
        assert c.read_response().status in (400, 505)


def test_websocket_upgrade_still_tunnels(guarded):
    with client(guarded) as c:
        c.send(request("GET", "/chat", "Connection: Upgrade", "Upgrade: websocket",
                       "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZQ=="))
        response = c.read_response()
        assert response.status == 101 and response.header("Upgrade") == "websocket"
        message = os.urandom(50_000)
        c.send(message)
        assert c.read_exactly(len(message)) == message


def test_an_upgrade_outside_the_allow_list_goes_on_plainly(guarded):
    with client(guarded) as c:
        c.send(request("GET", "/?headers=1", "Connection: Upgrade", "Upgrade: echo"))
        response = c.read_response()
        assert response.status == 200
        assert "upgrade" not in json.loads(response.body)["head"].lower()


def test_a_101_to_a_protocol_not_asked_for_is_502(guarded):
    with client(guarded) as c:
        c.send(request("GET", "/?switch_to=h2c", "Connection: Upgrade", "Upgrade: websocket"))
        response = c.read_response()
        assert response.status == 502 and b"not asked for" in response.body


def test_a_route_may_allow_any_protocol_but_h2c(cluster):
    a, = addresses("127.0.0.2")
    pools = [{"name": "app", "members": [f"{a[0]}:{a[1]}"], "upgrade": []}]
    routes = [{"path": "/any", "pool": "app", "upgrade": ["*"]}, {"path": "/", "pool": "app"}]
    proxy, _ = start(cluster, pools, routes, {"a": a})
    with client(proxy) as c:  # the pool allows none
        c.send(request("GET", "/chat", "Connection: Upgrade", "Upgrade: websocket"))
        assert c.read_response().status == 200
    with client(proxy) as c:
        c.send(request("GET", "/any/chat", "Connection: Upgrade", "Upgrade: echo"))
        assert c.read_response().status == 101
        c.send(b"ping")
        assert c.read_exactly(4) == b"ping"
    with client(proxy) as c:
        c.send(request("GET", "/any/x", *H2C))
        assert c.read_response().status == 200


def test_h2c_in_the_config_is_refused(cluster, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[pool]]\nname = "app"\nmembers = ["127.0.0.2:80"]\nupgrade = ["h2c"]\n')
    result = subprocess.run([*HBFORK, "check", "-c", str(path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert "upgrade" in result.stderr and "h2c" in result.stderr and str(path) in result.stderr


def test_http2_preface_on_a_plain_connection_is_refused(guarded):
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert s.recv(200).split(b" ")[1] in (b"400", b"505")
