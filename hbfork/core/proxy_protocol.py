"""The PROXY protocol (HAProxy's, versions 1 and 2): the header an L4 balancer puts before a
connection's bytes to say who the client is, and the one hbfork writes for its members. Pure:
bytes in, a header (or "need more", or ProxyProtocolError) out.

Version 1 is one text line of at most 107 bytes: `PROXY TCP4 SRC DST SPORT DPORT\\r\\n` (TCP6,
or `PROXY UNKNOWN ...`). Version 2 is binary: a 12-byte signature, a version/command byte
(PROXY, or LOCAL for the balancer's own health checks, which carry no client), an address
family byte, a 16-bit length, the addresses, then type-length-value extensions (skipped
here, but checked to be well formed). Anything else is an error: a connection that was
supposed to start with a PROXY header and does not is not to be served.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from hbfork.core.errors import HbforkError

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX = 107                # the longest v1 line, CRLF included
V2_HEADER = 16              # signature, version/command, family, length
V2_MAX_PAYLOAD = 4096       # more is refused (the spec allows 65535; nobody sends that)
_V2_ADDRESSES = {0x11: (4, 12), 0x12: (4, 12), 0x21: (6, 36), 0x22: (6, 36)}  # TCP/UDP 4/6

Address = tuple[str, int]


class ProxyProtocolError(HbforkError):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int
    length: int                    # bytes the header took; the connection's data follows
    source: Address | None         # the client; None for LOCAL or UNKNOWN (use the peer)
    destination: Address | None
    tlvs: tuple[tuple[int, bytes], ...] = ()


def parse(data: bytes | bytearray) -> ProxyHeader | None:
    """The PROXY header at the start of `data`; None while more bytes are needed."""
    if not data:
        return None
    head = bytes(data[:12])
    if V2_SIGNATURE.startswith(head):  # the signature, or the start of it
        return None if len(data) < 12 else _parse_v2(data)
    if V1_PREFIX.startswith(head[:6]):
        return _parse_v1(data)
    raise ProxyProtocolError("the connection does not start with a PROXY protocol header")


def _parse_v1(data: bytes | bytearray) -> ProxyHeader | None:
    end = bytes(data[:V1_MAX]).find(b"\r\n")
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line longer than 107 bytes")
        if b"\n" in data[:V1_MAX] or b"\r" in data[:max(0, len(data) - 1)]:
            raise ProxyProtocolError("PROXY v1 line not ended by CRLF")
        return None
    parts = bytes(data[:end]).split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader(1, end + 2, None, None)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("malformed PROXY v1 line")
    family = 4 if parts[1] == b"TCP4" else 6
    source = (_ip(parts[2], family), _port(parts[4]))
    destination = (_ip(parts[3], family), _port(parts[5]))
    return ProxyHeader(1, end + 2, source, destination)


def _ip(text: bytes, family: int) -> str:
    if b"%" in text:  # ipaddress takes an IPv6 scope ("fe80::1%eth0"); the spec has none
        raise ProxyProtocolError("PROXY v1 address with a scope")
    try:
        ip = ipaddress.ip_address(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyProtocolError(f"invalid address in PROXY v1 line: {text[:40]!r}") from None
    if ip.version != family:
        raise ProxyProtocolError("PROXY v1 address of the wrong family")
    return str(ip)


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[:1] == b"0") or \
            int(text) > 65535:
        raise ProxyProtocolError(f"invalid port in PROXY v1 line: {text[:10]!r}")
    return int(text)


def _parse_v2(data: bytes | bytearray) -> ProxyHeader | None:
    if len(data) < V2_HEADER:
        return None
    version_command, family, length = data[12], data[13], struct.unpack_from("!H", data, 14)[0]
    if version_command >> 4 != 2:
        raise ProxyProtocolError("PROXY v2 header with another version")
    command = version_command & 0x0F
    if command not in (0, 1):
        raise ProxyProtocolError("PROXY v2 header with an unknown command")
    if length > V2_MAX_PAYLOAD:
        raise ProxyProtocolError(f"PROXY v2 header of {length} bytes")
    if len(data) < V2_HEADER + length:
        return None
    payload = bytes(data[V2_HEADER:V2_HEADER + length])
    total = V2_HEADER + length
    if command == 0:  # LOCAL: the balancer's own connection (a health check)
        return ProxyHeader(2, total, None, None)
    known = _V2_ADDRESSES.get(family)
    if known is None:  # UNSPEC or unix sockets: no address we can use; the peer's stands
        return ProxyHeader(2, total, None, None)
    version, size = known
    if length < size:
        raise ProxyProtocolError("PROXY v2 header shorter than its addresses")
    width = 4 if version == 4 else 16
    source_ip = str(ipaddress.ip_address(payload[:width]))
    destination_ip = str(ipaddress.ip_address(payload[width:2 * width]))
    source_port, destination_port = struct.unpack_from("!HH", payload, 2 * width)
    return ProxyHeader(2, total, (source_ip, source_port), (destination_ip, destination_port),
                       _tlvs(payload[size:]))


def _tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    out = []
    at = 0
    while at < len(data):
        if len(data) - at < 3:
            raise ProxyProtocolError("truncated PROXY v2 extension")
        kind, size = data[at], struct.unpack_from("!H", data, at + 1)[0]
        if at + 3 + size > len(data):
            raise ProxyProtocolError("PROXY v2 extension longer than the header")
        out.append((kind, data[at + 3:at + 3 + size]))
        at += 3 + size
    return tuple(out)


def encode_v1(source: Address, destination: Address) -> bytes:
    """The v1 line for a connection from `source` to `destination` (same family)."""
    family = ipaddress.ip_address(source[0]).version
    if ipaddress.ip_address(destination[0]).version != family:
        return b"PROXY UNKNOWN\r\n"
    return b"PROXY TCP%d %s %s %d %d\r\n" % (family, source[0].encode(),
                                              destination[0].encode(), source[1],
                                              destination[1])


def encode_v2(source: Address | None, destination: Address | None = None) -> bytes:
    """The v2 header for a connection from `source` to `destination`; None: LOCAL."""
    if source is None or destination is None:
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        return V2_SIGNATURE + b"\x21\x00\x00\x00"  # PROXY, UNSPEC: no usable addresses
    family = 0x11 if src.version == 4 else 0x21
    payload = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return V2_SIGNATURE + bytes((0x21, family)) + struct.pack("!H", len(payload)) + payload
