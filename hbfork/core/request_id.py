"""Request IDs: the `[request_id]` settings, who may choose a request's ID, and the IDs a worker
makes. Pure (the worker gives the random prefix).

Off by default (`enabled`): an ID rewrites every request head and every response head, which
the fast path otherwise forwards untouched. When on, every request forwarded carries one ID
field (default X-Request-ID): the client's own when the
client connects from a trusted address (`trusted`, CIDRs: a front proxy or load balancer that
already set it) and its value is sane, otherwise a new one made here. A client outside
`trusted` cannot choose the ID a member and the logs see. W3C `traceparent`/`tracestate` are
ordinary fields: forwarded unchanged.

A new ID is the worker's random prefix (12 hex digits, drawn when the worker starts) and a
per-worker counter in hex: unique across workers and restarts without a syscall or a uuid4
per request (measured in scripts/bench-headers). The counter's hex is not formatted per
request: its low 12 bits come from a table of the 4096 spellings, its high part is formatted
once per 4096 IDs, so a new ID is one concatenation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hbfork.core.addresses import IPNetwork
from hbfork.core.values import boolean, network_list, setting, text_value

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
_SANE_ID = re.compile(rb"[\x21-\x7e]{1,200}")  # printable, no space, bounded
TRUST_CACHE = 4096  # client addresses whose trust is remembered per worker
LOW_BITS = 12
LOW_MASK = (1 << LOW_BITS) - 1
# The counter's low 12 bits in hex: as they end a count of 4096 or more (3 digits), and as a
# count below 4096 is spelled alone (no leading zeros).
_PADDED = tuple(b"%03x" % low for low in range(1 << LOW_BITS))
_ALONE = tuple(b"%x" % low for low in range(1 << LOW_BITS))


def _field_name(value: Any) -> str:
    text = text_value(value)
    if not _TOKEN.fullmatch(text):
        raise ValueError(f"expected a header name (a token) or \"\" (off), got {text!r}")
    if text.lower() in ("host", "content-length", "transfer-encoding", "connection") or \
            text.lower().startswith("x-forwarded-"):
        raise ValueError(f"{text} is a field the proxy owns")
    return text


@dataclass(frozen=True)
class RequestIdSettings:
    enabled: bool = setting(False, boolean, "give every forwarded request an ID field")
    header: str = setting("X-Request-ID", _field_name,
                          "the request-ID field (when `enabled`); \"\" = off",
                          '"X-Request-ID"')
    trusted: tuple[IPNetwork, ...] = setting((), network_list,
                                             "CIDRs of clients (front proxies) whose own ID "
                                             "is passed through; from others it is replaced",
                                             "[]")
    response: bool = setting(True, boolean, "send the ID back in the response too (ours too)")


def trusted_peer(peer_ip: str, nets: Iterable[IPNetwork]) -> bool:
    """Whether a connection from `peer_ip` comes from one of `nets` (an IPv4-mapped IPv6
    address counts as its IPv4 address)."""
    try:
        ip = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in nets)


class RequestIds:
    """One worker's request IDs: made fresh, or the client's kept when it may choose."""

    __slots__ = ("block", "count", "line_start", "lower", "lows", "name", "nets", "prefix",
                 "response", "trust")

    def __init__(self, settings: RequestIdSettings, prefix: bytes) -> None:
        self.name = settings.header.encode() if settings.enabled else b""
        self.lower = self.name.lower()  # b"": off
        self.nets = settings.trusted
        self.response = settings.response and bool(self.name)
        self.line_start = self.name + b": "  # the ID field line, but for its value and CRLF
        self.prefix = prefix + b"-"
        self.count = 0
        # IDs are `block` + lows[count's low bits]: block is the prefix and the count's high
        # part in hex (none below 4096), renewed every 4096 IDs.
        self.block = self.prefix
        self.lows = _ALONE
        self.trust: dict[str, bool] = {}

    def new(self) -> bytes:
        """The next ID: the prefix and the count in hex (prefix + b"%x" % count)."""
        count = self.count = self.count + 1
        low = count & LOW_MASK
        if not low:
            self.block = self.prefix + b"%x" % (count >> LOW_BITS)
            self.lows = _PADDED
        return self.block + self.lows[low]

    def decide(self, offered: bytes, peer_ip: str) -> bytes:
        """The ID of a request whose client sent `offered` (b"": none) from `peer_ip`."""
        if offered and self.nets and _SANE_ID.fullmatch(offered) and self.trusts(peer_ip):
            return offered
        return self.new()

    def trusts(self, peer_ip: str) -> bool:
        trusted = self.trust.get(peer_ip)
        if trusted is None:
            if len(self.trust) >= TRUST_CACHE:
                self.trust.clear()
            trusted = self.trust[peer_ip] = trusted_peer(peer_ip, self.nets)
        return trusted
