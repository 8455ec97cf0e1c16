"""The real client address: who the client is when proxies stand between it and hbfork. Pure.

Two sources, as Apache's mod_remoteip and HAProxy have them:

- A PROXY protocol header (hbfork.core.proxy_protocol) from a balancer in front: it sets the
  connection's address (its `Origin`) for everything on that connection, both modes.
- A request header (`client_ip_header`, X-Forwarded-For by default), HTTP mode, read only when
  the connection's address is one of `trusted_proxies`. The list is walked from the right (the
  entry the nearest proxy added) to the left: each entry that is itself a trusted proxy is
  passed, and the first that is not is the client. If every entry is trusted, the leftmost is
  the client; an entry that is not an IP address stops the walk and the last trusted address
  reached stands. So a client that is not behind a trusted proxy cannot choose its address by
  sending the header, and one behind a trusted proxy can only add entries to the left of what
  that proxy wrote, which are never read.

What every consumer reads: the connection's client (the peer, or the PROXY header's source)
is the `client_ip` a session is made with (`ClientConnection.ip` in HTTP mode,
`TcpSession.client_ip` in TCP mode): per-connection limits read that. A request's client (the
access log, per-request limits) is `ClientAddressRule.client_of(connection ip, header values)`,
which the HTTP session stores as its exchange's `client_ip` as soon as the head is parsed.
The X-Forwarded-For sent on keeps the chain as received and appends the connection's address,
as mod_proxy does.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from hbfork.core.addresses import IPAddress, IPNetwork, parse_ip

Address = tuple[str, int]
MAX_ENTRIES = 64   # entries of the header walked at most; the rest (further left) are ignored


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a client connection comes from and what it connected to: the socket's own peer and
    local addresses, or those a PROXY header gave."""

    source: Address
    destination: Address
    proxied: bool = False   # the addresses came from a PROXY header


def trusted(ip: str, networks: tuple[IPNetwork, ...]) -> bool:
    """True when `ip` (text, as the socket or a PROXY header gives it) is in one of `networks`;
    never for an empty list (trust is never implied)."""
    if not networks:
        return False
    address = _ip(ip)
    return address is not None and _within(address, networks)


def _within(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def _ip(text: str) -> IPAddress | None:
    try:
        return parse_ip(text)
    except ValueError:
        return None


def parse_entry(entry: bytes) -> IPAddress | None:
    """One list entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or
    `[2001:db8::1]:443` (ports, which some proxies add, are dropped); None if it is none."""
    text = entry.strip(b" \t")
    try:
        value = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (end + 1 < len(value) and not _is_port(value[end + 1:])):
            return None
        value = value[1:end]
    elif value.count(":") == 1:
        value, port = value.split(":")
        if not _is_port(":" + port):
            return None
    return _ip(value) if value else None


def _is_port(text: str) -> bool:
    return text[:1] == ":" and text[1:].isascii() and text[1:].isdigit() and len(text) <= 6


@dataclass(frozen=True, slots=True)
class ClientAddressRule:
    """`trusted_proxies` and `client_ip_header` as one listener has them."""

    proxies: tuple[IPNetwork, ...] = ()
    header: bytes = b"x-forwarded-for"   # lower-case field name

    @property
    def lean_safe(self) -> bool:
        """The fast path may serve a trusted proxy's requests: its header is one the lean parser
        sends to the general path whenever it is present (every X-Forwarded-* is)."""
        return self.header.startswith(b"x-forwarded-")

    def trusts(self, ip: str) -> bool:
        return trusted(ip, self.proxies)

    def client_of(self, peer: str, values: list[bytes]) -> str:
        """The client of a request that came from `peer` carrying `values` (the header's field
        values, in order; several fields are one list). `peer` itself when it is not trusted
        or the header says nothing usable."""
        if not values or not self.trusts(peer):
            return peer
        entries = b",".join(values).split(b",")[-MAX_ENTRIES:]
        client = peer
        for entry in reversed(entries):
            address = parse_entry(entry)
            if address is None:
                break           # garbage: the last trusted hop's address stands
            client = str(address)
            if not _within(address, self.proxies):
                break           # the first untrusted entry from the right: the client
        return client


@lru_cache(maxsize=64)
def _rule(proxies: tuple[IPNetwork, ...], header: str) -> ClientAddressRule:
    return ClientAddressRule(proxies, header.lower().encode("ascii"))


def address_rule(peer: str, proxies: tuple[IPNetwork, ...] | None,
                 header: str) -> ClientAddressRule | None:
    """The rule a connection from `peer` applies to its requests: None when `peer` is not one
    of `proxies` (then its requests' client is `peer`, whatever they carry)."""
    if not proxies or not trusted(peer, proxies):
        return None
    return _rule(proxies, header)
