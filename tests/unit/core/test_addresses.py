"""hbfork.addresses: endpoints, IPs and CIDRs, parsed without DNS."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from hbfork.core.addresses import (
    Endpoint,
    ip_allowed,
    normalize_ip,
    parse_endpoint,
    parse_ip,
    parse_network,
    parse_port,
)

v4 = ipaddress.IPv4Address
v6 = ipaddress.IPv6Address
net = ipaddress.ip_network


@pytest.mark.parametrize(("text", "ip", "port"), [
    ("127.0.0.1:8080", v4("127.0.0.1"), 8080),
    (" 10.0.0.1:80 ", v4("10.0.0.1"), 80),
    ("[::1]:8080", v6("::1"), 8080),
    ("[fd00::1:2]:1", v6("fd00::1:2"), 1),
    ("[::ffff:10.1.2.3]:65535", v4("10.1.2.3"), 65535),  # mapped IPv6 folds to IPv4
])
def test_parse_endpoint(text: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                        port: int) -> None:
    endpoint = parse_endpoint(text)
    assert endpoint == Endpoint(ip, port)
    assert endpoint.ip.version == ip.version


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.1", "10.0.0.1:81"),
    ("[::1]", "[::1]:81"),
    ("::1", "[::1]:81"),
    ("fd00::1:2", "[fd00::1:2]:81"),   # several colons: a bare IPv6 literal, not host:port
    ("10.0.0.1:82", "10.0.0.1:82"),
])
def test_default_port(text: str, expected: str) -> None:
    assert str(parse_endpoint(text, 81)) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ("", "expected an address"),
    ("   ", "expected an address"),
    ("10.0.0.1", "has no port"),
    ("::1", "has no port"),
    ("localhost:80", "host names are not resolved"),
    ("10.0.0.256:80", "is not an IP address"),
    ("10.0.0.1:0", "port must be"),
    ("10.0.0.1:65536", "port must be"),
    ("10.0.0.1:+80", "port must be"),
    ("10.0.0.1: 80", "port must be"),
    ("10.0.0.1:\u0663", "port must be"),       # ARABIC-INDIC DIGIT THREE: isdigit() but not ASCII
    ("10.0.0.1:\uff18\uff10", "port must be"),  # FULLWIDTH "80"
    ("[::1", "unclosed"),
    ("[::1]:", "port must be"),
    ("[::1]80", "expected ':port'"),
])
def test_parse_endpoint_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_endpoint(text)


def test_parse_endpoint_rejects_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_endpoint(8080)  # type: ignore[arg-type]


def test_endpoint_properties() -> None:
    four, six = parse_endpoint("239.0.0.1:27999"), parse_endpoint("[ff02::1]:27999")
    assert four.family == socket.AF_INET and six.family == socket.AF_INET6
    assert four.is_multicast and six.is_multicast
    assert not parse_endpoint("127.0.0.1:1").is_multicast
    assert four.host == "239.0.0.1" and six.host == "ff02::1"
    assert four.sockaddr == ("239.0.0.1", 27999) and six.sockaddr == ("ff02::1", 27999)
    assert str(four) == "239.0.0.1:27999" and str(six) == "[ff02::1]:27999"
    # frozen and hashable: usable as a dict key
    assert {four: 1}[parse_endpoint("239.0.0.1:27999")] == 1


def test_parse_ip() -> None:
    assert parse_ip("10.0.0.1") == v4("10.0.0.1")
    assert parse_ip("[::1]") == v6("::1")
    assert parse_ip("::ffff:192.0.2.1") == v4("192.0.2.1")
    with pytest.raises(ValueError, match="host names are not resolved"):
        parse_ip("example.com")


def test_normalize_ip() -> None:
    assert normalize_ip(v6("::ffff:10.0.0.1")) == v4("10.0.0.1")
    assert normalize_ip(v6("fd00::1")) == v6("fd00::1")
    assert normalize_ip(v4("10.0.0.1")) == v4("10.0.0.1")


@pytest.mark.parametrize(("port", "ok"), [
    ("1", True), ("65535", True), ("0", False), ("65536", False), ("", False), ("-1", False),
    ("8o", False), ("\u0663", False),
])
def test_parse_port(port: str, ok: bool) -> None:
    if ok:
        assert parse_port(port) == int(port)
    else:
        with pytest.raises(ValueError, match="port must be"):
            parse_port(port)


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.0/8", "10.0.0.0/8"),
    ("10.1.2.3/8", "10.0.0.0/8"),        # host bits allowed
    ("192.168.1.7", "192.168.1.7/32"),   # a bare address is one host
    ("fd00::/8", "fd00::/8"),
    ("::ffff:10.0.0.0/104", "10.0.0.0/8"),  # mapped form means the IPv4 network
    ("::ffff:1.2.3.4", "1.2.3.4/32"),
])
def test_parse_network(text: str, expected: str) -> None:
    assert parse_network(text) == net(expected)


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.x/8", "", "fd00::/129"])
def test_parse_network_errors(text: str) -> None:
    with pytest.raises(ValueError, match="is not a CIDR"):
        parse_network(text)


def test_parse_network_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="expected a CIDR string"):
        parse_network(10)  # type: ignore[arg-type]


def test_ip_allowed() -> None:
    nets = (net("10.0.0.0/8"), net("fd00::/8"))
    assert ip_allowed(v4("10.9.9.9"), nets)
    assert ip_allowed(v6("fd00::5"), nets)
    assert not ip_allowed(v4("11.0.0.1"), nets)
    assert not ip_allowed(v6("fe80::1"), nets)
    assert ip_allowed(v4("11.0.0.1"), ())  # empty: everyone
    assert ip_allowed(v6("fe80::1"), ())
    # a source seen on a dual-stack socket is normalized before the check
    assert ip_allowed(normalize_ip(v6("::ffff:10.1.1.1")), (parse_network("::ffff:10.0.0.0/104"),))
