"""hbfork.core.proxy_protocol: v1 and v2 headers by table, round trips, and the fuzz
invariant (any bytes: a header, "need more", or ProxyProtocolError, nothing else)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbfork.core.proxy_protocol import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyProtocolError,
    encode_v1,
    encode_v2,
    parse,
)


@pytest.mark.parametrize(("line", "source", "destination"), [
    (b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n", ("192.0.2.1", 56324),
     ("198.51.100.2", 443)),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", ("2001:db8::1", 1),
     ("2001:db8::2", 65535)),
])
def test_v1(line, source, destination):
    header = parse(line + b"GET / HTTP/1.1\r\n")
    assert header == ProxyHeader(1, len(line), source, destination)


def test_v1_unknown_keeps_the_peer():
    assert parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nx") == ProxyHeader(1, 35, None, None)


@pytest.mark.parametrize("partial", [b"P", b"PROXY", b"PROXY TCP4 192.0.2.1",
                                     V2_SIGNATURE[:5], V2_SIGNATURE, V2_SIGNATURE + b"\x21\x11",
                                     encode_v2(("10.0.0.1", 1), ("10.0.0.2", 2))[:20]])
def test_need_more(partial):
    assert parse(partial) is None


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", b"PROXY " + b"x" * 120,
    b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
    b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
    V2_SIGNATURE + b"\x11\x11\x00\x00",            # version 1 in a v2 header
    V2_SIGNATURE + b"\x2f\x11\x00\x00",            # unknown command
    V2_SIGNATURE + b"\x21\x11\x00\x04" + b"1234",  # shorter than its addresses
    V2_SIGNATURE + b"\x21\x11\xff\xff",            # over the size we take
])
def test_malformed_is_an_error(bad):
    with pytest.raises(ProxyProtocolError):
        parse(bad)


def test_v2_with_tlvs_and_data_after():
    head = encode_v2(("192.0.2.1", 4000), ("198.51.100.2", 443))
    tlvs = b"\x01\x00\x02h2" + b"\x04\x00\x00"
    length = struct.unpack("!H", head[14:16])[0] + len(tlvs)
    data = head[:14] + struct.pack("!H", length) + head[16:] + tlvs + b"GET"
    header = parse(data)
    assert header is not None and header.length == len(data) - 3
    assert header.source == ("192.0.2.1", 4000) and header.tlvs == ((1, b"h2"), (4, b""))


def test_v2_truncated_tlv_is_an_error():
    head = encode_v2(("192.0.2.1", 4000), ("198.51.100.2", 443))
    data = head[:14] + struct.pack("!H", 12 + 2) + head[16:] + b"\x01\x00"
    with pytest.raises(ProxyProtocolError):
        parse(data)


def test_v2_local_carries_no_client():
    assert parse(encode_v2(None) + b"x") == ProxyHeader(2, 16, None, None)


@pytest.mark.parametrize(("source", "destination"), [
    (("192.0.2.1", 1), ("198.51.100.2", 65535)), (("2001:db8::1", 80), ("::1", 8080))])
def test_round_trips(source, destination):
    for encode, version in ((encode_v1, 1), (encode_v2, 2)):
        data = encode(source, destination)
        assert parse(data + b"rest") == ProxyHeader(version, len(data), source, destination)


def test_mixed_families_say_unknown():
    assert parse(encode_v1(("192.0.2.1", 1), ("::1", 2))).source is None
    assert parse(encode_v2(("192.0.2.1", 1), ("::1", 2))).source is None


@given(st.binary(max_size=300))
def test_any_bytes(data):
    try:
        header = parse(data)
    except ProxyProtocolError:
        return
    assert header is None or 0 < header.length <= len(data)


@given(st.binary(max_size=64))
def test_any_bytes_after_a_signature(data):
    try:
        header = parse(V2_SIGNATURE + data)
    except ProxyProtocolError:
        return
    assert header is None or header.length <= len(data) + 12
