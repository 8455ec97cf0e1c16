"""The upgrade allow-list, by table (hbfork.core.upgrade)."""

from __future__ import annotations

import pytest

from hbfork.core.http_upgrade import allowed_upgrade, parse_allowed, protocol_names, switch_matches

WEBSOCKET = parse_allowed(("websocket",))
ANY = parse_allowed(("*",))


@pytest.mark.parametrize(("offered", "allowed", "passed"), [
    (b"websocket", WEBSOCKET, b"websocket"),
    (b"WebSocket", WEBSOCKET, b"WebSocket"),
    (b"h2c", WEBSOCKET, b""),
    (b"h2c", ANY, b""),                       # never, whatever the list says
    (b"H2C/1.0", ANY, b""),
    (b"h2c, websocket", WEBSOCKET, b"websocket"),
    (b"echo", WEBSOCKET, b""),
    (b"echo, foo/2", ANY, b"echo, foo/2"),
    (b"websocket", frozenset(), b""),
    (b" , ,", ANY, b""),
])
def test_allowed_upgrade(offered, allowed, passed):
    assert allowed_upgrade(offered, allowed) == passed


@pytest.mark.parametrize(("requested", "answered", "ok"), [
    (b"websocket", b"websocket", True),
    (b"websocket", b"WebSocket", True),
    (b"websocket, echo", b"echo", True),
    (b"websocket", b"h2c", False),
    (b"websocket", b"", False),
    (b"foo/2", b"foo", True),
])
def test_switch_matches(requested, answered, ok):
    assert switch_matches(requested, answered) is ok


def test_protocol_names():
    assert protocol_names(b"HTTP/2.0, SHTTP/1.3, IRC/6.9, RTA/x11") == [
        b"http", b"shttp", b"irc", b"rta"]
