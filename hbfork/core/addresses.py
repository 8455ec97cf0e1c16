"""Parsing of `host:port` endpoints and CIDR lists. Pure: no DNS, no sockets."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from socket import AF_INET, AF_INET6  # constants only: nothing here opens a socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP literal and a port. IPv4-mapped IPv6 addresses are stored as plain IPv4."""

    ip: IPAddress
    port: int

    @property
    def family(self) -> int:
        return AF_INET6 if self.ip.version == 6 else AF_INET

    @property
    def host(self) -> str:
        return str(self.ip)

    @property
    def sockaddr(self) -> tuple[str, int]:
        return (str(self.ip), self.port)

    @property
    def is_multicast(self) -> bool:
        return self.ip.is_multicast

    def __str__(self) -> str:
        if self.ip.version == 6:
            return f"[{self.ip}]:{self.port}"
        return f"{self.ip}:{self.port}"


def normalize_ip(ip: IPAddress) -> IPAddress:
    """Fold `::ffff:a.b.c.d` to `a.b.c.d`, so a member has one identity whatever socket saw it."""
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_ip(text: str) -> IPAddress:
    """An IP literal (IPv6 may be bracketed); raises ValueError with a readable message."""
    raw = text.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    try:
        return normalize_ip(ipaddress.ip_address(raw))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (host names are not resolved)") from None


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """Parse `1.2.3.4:80`, `[::1]:80`, or a bare IP when `default_port` is given."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected an address like \"127.0.0.1:8080\" or \"[::1]:8080\"")
    raw = text.strip()
    host, port_text = _split_host_port(raw)
    if port_text is None:
        if default_port is None:
            raise ValueError(f"{text!r} has no port (expected host:port)")
        port = default_port
    else:
        port = parse_port(port_text, text)
    return Endpoint(parse_ip(host), port)


def _split_host_port(raw: str) -> tuple[str, str | None]:
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            raise ValueError(f"{raw!r}: unclosed '[' in IPv6 address")
        rest = raw[end + 1 :]
        if not rest:
            return raw[1:end], None
        if not rest.startswith(":"):
            raise ValueError(f"{raw!r}: expected ':port' after ']'")
        return raw[1:end], rest[1:]
    if raw.count(":") == 1:
        host, port = raw.split(":")
        return host, port
    if raw.count(":") > 1:
        # A bare IPv6 literal: a port would be ambiguous, so it needs brackets.
        return raw, None
    return raw, None


def parse_port(text: str, whole: str | None = None) -> int:
    # isascii: str.isdigit() also accepts digits such as "\u0663", which int() would take.
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{whole or text!r}: port must be a number from 1 to 65535")
    return int(text)


def parse_network(text: str) -> IPNetwork:
    """A CIDR such as `10.0.0.0/8` or `fd00::/8`; a bare address means a single host."""
    if not isinstance(text, str):
        raise ValueError(f"expected a CIDR string, got {text!r}")
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a CIDR network (like 10.0.0.0/8)") from None
    if net.version == 6 and net.prefixlen >= 96 and net.network_address.ipv4_mapped:
        # ::ffff:10.0.0.0/104 means the same hosts as 10.0.0.0/8; sources are stored as IPv4.
        v4 = net.network_address.ipv4_mapped
        return ipaddress.ip_network(f"{v4}/{net.prefixlen - 96}", strict=False)
    return net


def ip_allowed(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    """True when `networks` is empty (allow all) or one of them contains `ip`."""
    if not networks:
        return True
    return any(ip.version == net.version and ip in net for net in networks)
