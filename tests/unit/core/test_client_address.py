"""hbfork.core.client_address: the client of a request, by table (mod_remoteip's walk)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hbfork.core.addresses import parse_network
from hbfork.core.client_address import ClientAddressRule, parse_entry, trusted

CDN = ClientAddressRule(tuple(parse_network(n) for n in ("10.0.0.0/8", "2001:db8:1::/48")))


@pytest.mark.parametrize(("peer", "values", "client"), [
    # an untrusted peer's header is never read, whatever it says
    ("198.51.100.7", [b"1.2.3.4"], "198.51.100.7"),
    ("198.51.100.7", [b"10.0.0.1, 1.2.3.4"], "198.51.100.7"),
    # a trusted peer: the rightmost untrusted entry
    ("10.0.0.1", [b"203.0.113.9"], "203.0.113.9"),
    ("10.0.0.1", [b"6.6.6.6, 203.0.113.9"], "203.0.113.9"),      # forged left entry ignored
    ("10.0.0.1", [b"6.6.6.6, 203.0.113.9, 10.1.2.3"], "203.0.113.9"),  # walk past trusted
    ("10.0.0.1", [b"6.6.6.6", b"203.0.113.9, 10.1.2.3"], "203.0.113.9"),  # several fields
    ("10.0.0.1", [b"10.9.9.9, 10.1.2.3"], "10.9.9.9"),           # all trusted: the leftmost
    ("10.0.0.1", [b"junk, 10.1.2.3"], "10.1.2.3"),               # garbage stops the walk
    ("10.0.0.1", [b"203.0.113.9, junk"], "10.0.0.1"),             # garbage at once: the peer
    ("10.0.0.1", [b""], "10.0.0.1"),
    ("10.0.0.1", [], "10.0.0.1"),
    ("10.0.0.1", [b"203.0.113.9:4711"], "203.0.113.9"),           # a port is dropped
    ("10.0.0.1", [b"[2001:db8:2::5]:443"], "2001:db8:2::5"),
    ("10.0.0.1", [b"2001:db8:2::5, 2001:db8:1::1"], "2001:db8:2::5"),
    ("2001:db8:1::9", [b"203.0.113.9"], "203.0.113.9"),           # a v6 proxy, a v4 client
    ("::ffff:10.0.0.1", [b"203.0.113.9"], "203.0.113.9"),        # v4-mapped peer
    ("10.0.0.1", [b"::ffff:203.0.113.9"], "203.0.113.9"),        # v4-mapped entry folded
])
def test_client_of(peer, values, client):
    assert CDN.client_of(peer, values) == client


def test_nothing_is_trusted_by_default():
    assert ClientAddressRule().client_of("127.0.0.1", [b"1.2.3.4"]) == "127.0.0.1"
    assert not trusted("127.0.0.1", ())


@pytest.mark.parametrize(("entry", "ip"), [
    (b" 1.2.3.4 ", "1.2.3.4"), (b"1.2.3.4:80", "1.2.3.4"), (b"[::1]", "::1"),
    (b"[::1]:8080", "::1"), (b"::1", "::1"), (b"1.2.3.4:", None), (b"1.2.3.4:x", None),
    (b"[::1", None), (b"[::1]x", None), (b"unknown", None), (b"", None), (b"\xff", None),
    (b"1.2.3.4:1234567", None), (b"host.example:80", None)])
def test_parse_entry(entry, ip):
    parsed = parse_entry(entry)
    assert (str(parsed) if parsed is not None else None) == ip


def test_lean_safe():
    assert CDN.lean_safe
    assert not ClientAddressRule(CDN.proxies, b"cf-connecting-ip").lean_safe


@settings(deadline=None)  # a loaded machine must not make it flaky
@given(st.lists(st.binary(max_size=40), max_size=5))
def test_any_header_gives_the_peer_or_an_ip_from_it(values):
    client = CDN.client_of("10.0.0.1", values)
    named = {str(parse_entry(e)) for e in b",".join(values).split(b",") if parse_entry(e)}
    assert client == "10.0.0.1" or client in named
