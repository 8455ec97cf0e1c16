"""hbfork.heartbeat: mod_heartbeat datagrams parsed as mod_heartmonitor does (APACHE-HEARTBEAT.md),
plus hbfork's signing extension, plus a fuzz invariant: any bytes parse or raise HeartbeatError."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hbfork.core import heartbeat
from hbfork.core.errors import HbforkError, HeartbeatError
from hbfork.core.heartbeat import (
    INT32_MAX,
    MAX_DATAGRAM,
    REJECT_REASONS,
    Heartbeat,
    encode,
    parse,
    parse_fields,
    sign,
    verify,
)

KEY = b"0123456789abcdef0123456789abcdef"
OLD_KEY = b"the key before the rotation"
TS = 1_700_000_000.25


def rejected(data: bytes, reason: str) -> HeartbeatError:
    with pytest.raises(HeartbeatError) as info:
        parse(data)
    assert info.value.reason == reason, info.value
    assert reason in REJECT_REASONS
    return info.value


# --- the plain format


def test_apache_datagram() -> None:
    hb = parse(b"v=1&ready=49&busy=1")
    assert hb == Heartbeat(ready=49, busy=1)
    assert hb.port is None and not hb.signed and hb.ts is None


def test_port() -> None:
    assert parse(b"v=1&ready=3&busy=2&port=8080").port == 8080


def test_empty_tokens_are_skipped() -> None:
    hb = parse(b"&&v=1&&&ready=5&&busy=2&&")
    assert (hb.ready, hb.busy) == (5, 2)
    assert parse_fields(b"&&&") == {}


def test_token_without_equals_means_1() -> None:
    assert parse_fields(b"v&ready=3&busy") == {b"v": b"1", b"ready": b"3", b"busy": b"1"}
    hb = parse(b"v&ready&busy")
    assert (hb.ready, hb.busy) == (1, 1)
    assert parse(b"v=1&ready=1&busy=0&port").port == 1


def test_token_splits_at_first_equals() -> None:
    assert parse_fields(b"x=a=b&y==") == {b"x": b"a=b", b"y": b"="}
    rejected(b"v=1&ready==5&busy=0", "bad_number")


def test_empty_value_is_not_1() -> None:
    assert parse_fields(b"v=&ready=") == {b"v": b"", b"ready": b""}
    assert parse(b"v=&ready=2&busy=0").ready == 2  # v present, value unchecked
    rejected(b"v=1&ready=&busy=0", "bad_number")


def test_percent_decoding_of_keys_and_values() -> None:
    hb = parse(b"%76=1&%72eady=%35%31&busy=%30&p%6Frt=%38%30")
    assert (hb.ready, hb.busy, hb.port) == (51, 0, 80)
    assert parse_fields(b"k=%4a%4A") == {b"k": b"JJ"}


def test_plus_is_not_a_space() -> None:
    assert parse_fields(b"a=b+c&d%2Be=%2B") == {b"a": b"b+c", b"d+e": b"+"}
    rejected(b"v=1&ready=+5&busy=0", "bad_number")


def test_invalid_escape_keeps_the_percent() -> None:
    assert parse_fields(b"a=%zz&b=%4&c=%&d=%%41&e=%g1") == {
        b"a": b"%zz", b"b": b"%4", b"c": b"%", b"d": b"%A", b"e": b"%g1"}
    rejected(b"v=1&ready=%&busy=0", "bad_number")


def test_decoding_is_single_pass() -> None:
    assert parse_fields(b"a=%2541") == {b"a": b"%41"}


def test_decoded_nul_truncates_the_string() -> None:
    assert parse_fields(b"a=xy%00z&ready%00junk=7") == {b"a": b"xy", b"ready": b"7"}
    assert parse(b"v=1&ready=7%00junk&busy=0").ready == 7


def test_raw_nul_truncates_the_datagram() -> None:
    hb = parse(b"v=1&ready=5&busy=2\0&ready=9&busy=xx")
    assert (hb.ready, hb.busy) == (5, 2)
    rejected(b"v=1&ready=5\0&busy=2", "malformed")
    rejected(b"\0v=1&ready=5&busy=2", "malformed")


def test_keys_are_case_insensitive() -> None:
    hb = parse(b"V=1&READY=4&Busy=2&PoRt=81")
    assert (hb.ready, hb.busy, hb.port) == (4, 2, 81)
    assert set(parse_fields(b"V=1&READY=4")) == {b"v", b"ready"}


def test_last_duplicate_wins() -> None:
    assert parse(b"v=1&ready=1&busy=0&ready=9").ready == 9
    assert parse(b"v=1&ready=1&busy=0&READY=8").ready == 8
    assert parse(b"v=1&ready=1&busy=0&port=80&port=81").port == 81
    # the last one wins even when it is the bad one
    rejected(b"v=1&ready=1&busy=0&ready=x", "bad_number")


def test_unknown_keys_are_ignored() -> None:
    hb = parse(b"v=1&ready=3&busy=1&load=0.5&%ff=%fe&x&future=a=b")
    assert (hb.ready, hb.busy, hb.port) == (3, 1, None)


@pytest.mark.parametrize("v", [b"1", b"2", b"banana", b"", b"%00", b"-1"])
def test_value_of_v_is_not_checked(v: bytes) -> None:
    assert parse(b"v=" + v + b"&ready=3&busy=1").ready == 3


def test_only_the_first_1000_bytes_count() -> None:
    head = b"v=1&ready=2&pad="
    tail = b"&busy=7"
    filler = b"x" * (MAX_DATAGRAM - len(head) - len(tail))
    exact = head + filler + tail
    assert len(exact) == MAX_DATAGRAM
    assert parse(exact).busy == 7
    # shifted right, the cut moves into busy: "busy=" (empty), "busy" (no '=': "1"), nothing
    rejected(head + b"x" + filler + tail, "bad_number")
    assert parse(head + b"xx" + filler + tail).busy == 1
    rejected(head + b"x" * 6 + filler + tail, "malformed")
    # a value cut at byte 1000 is parsed as cut
    cut = head + filler[1:] + b"&busy=7" + b"9"
    assert len(cut) == MAX_DATAGRAM
    assert parse(cut + b"99999").busy == 79


@pytest.mark.parametrize("data", [
    b"", b"&", b"v=1", b"ready=1&busy=1", b"v=1&busy=1", b"v=1&ready=1",
    b"vv=1&ready=1&busy=1", b"v=1&read=1&busy=1", b"v=1&ready%00=1&busy%=1",
    b"v =1&ready=1&busy=1",
])
def test_missing_keys_are_malformed(data: bytes) -> None:
    err = rejected(data, "malformed")
    assert "missing" in err.detail


@pytest.mark.parametrize("value", [
    b"", b"12abc", b"-1", b"-0", b" 5", b"5 ", b"1.0", b"1e3", b"0x10", b"+5", b"2147483648",
    b"4294967296", b"99999999999", b"%", "\u0663".encode(), b"\xd9\xa3", b"1_000",
])
@pytest.mark.parametrize("key", [b"ready", b"busy"])
def test_bad_numbers_are_rejected_not_coerced(key: bytes, value: bytes) -> None:
    fields = {b"v": b"1", b"ready": b"1", b"busy": b"1", key: value}
    err = rejected(b"&".join(k + b"=" + v for k, v in fields.items()), "bad_number")
    assert key.decode() in err.detail


@pytest.mark.parametrize("value", [b"0", b"1", b"007", b"2147483647"])
def test_numbers_in_range(value: bytes) -> None:
    hb = parse(b"v=1&ready=" + value + b"&busy=" + value)
    assert hb.ready == hb.busy == int(value)


@pytest.mark.parametrize("value", [b"0", b"65536", b"-80", b"http", b"", b"80a", b"99999999999"])
def test_bad_port(value: bytes) -> None:
    err = rejected(b"v=1&ready=1&busy=0&port=" + value, "bad_port")
    assert "port" in err.detail


@pytest.mark.parametrize("value", [b"1", b"65535", b"00080"])
def test_port_in_range(value: bytes) -> None:
    assert parse(b"v=1&ready=1&busy=0&port=" + value).port == int(value)


def test_error_is_part_of_the_hierarchy() -> None:
    err = rejected(b"v=1&ready=x&busy=0", "bad_number")
    assert isinstance(err, HbforkError)
    assert str(err).startswith("bad_number: ")


# --- encode, sign, verify


@pytest.mark.parametrize(("ready", "busy", "port"), [(0, 0, None), (49, 1, None),
                                                     (INT32_MAX, INT32_MAX, 65535), (5, 2, 1)])
def test_encode_round_trip(ready: int, busy: int, port: int | None) -> None:
    data = encode(ready, busy, port)
    assert parse(data) == Heartbeat(ready, busy, port)


def test_encode_is_what_mod_heartbeat_sends() -> None:
    assert encode(49, 1) == b"v=1&ready=49&busy=1"
    assert encode(49, 1, 8080) == b"v=1&ready=49&busy=1&port=8080"


def test_sign_round_trip() -> None:
    payload = encode(5, 2, 8080)
    data = sign(payload, KEY, TS)
    body, sig = data.split(b"&sig=")
    assert body == payload + b"&ts=1700000000.250000"
    assert sig == hmac.new(KEY, body, hashlib.sha256).hexdigest().encode()
    hb = parse(data)
    assert (hb.ready, hb.busy, hb.port) == (5, 2, 8080)
    assert hb.signed and hb.ts == TS and hb.signature == sig and hb.signed_part == body
    verify(hb, (KEY,), now=TS, window=10.0, last_ts=None)


def test_signed_datagram_is_readable_by_apache_rules() -> None:
    """The extension only adds fields, which mod_heartmonitor ignores."""
    fields = parse_fields(sign(encode(5, 2), KEY, TS))
    assert fields[b"ready"] == b"5" and fields[b"busy"] == b"2"
    assert set(fields) == {b"v", b"ready", b"busy", b"ts", b"sig"}


def test_key_rotation_accepts_either_key() -> None:
    old = parse(sign(encode(1, 0), OLD_KEY, TS))
    new = parse(sign(encode(1, 0), KEY, TS))
    for hb in (old, new):
        verify(hb, (KEY, OLD_KEY), now=TS, window=10.0, last_ts=None)
        verify(hb, (OLD_KEY, KEY), now=TS, window=10.0, last_ts=None)
    with pytest.raises(HeartbeatError) as info:
        verify(old, (KEY,), now=TS, window=10.0, last_ts=None)
    assert info.value.reason == "bad_signature"


def test_wrong_key() -> None:
    hb = parse(sign(encode(1, 0), b"not the key", TS))
    with pytest.raises(HeartbeatError) as info:
        verify(hb, (KEY,), now=TS, window=10.0, last_ts=None)
    assert info.value.reason == "bad_signature"


def test_tampered_field_fails_verification() -> None:
    data = sign(encode(1, 0), KEY, TS).replace(b"ready=1", b"ready=9")
    hb = parse(data)
    assert hb.ready == 9
    with pytest.raises(HeartbeatError) as info:
        verify(hb, (KEY,), now=TS, window=10.0, last_ts=None)
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize(("offset", "ok"), [(0.0, True), (10.0, True), (-10.0, True),
                                            (10.001, False), (-10.001, False), (3600.0, False)])
def test_stale_timestamp(offset: float, ok: bool) -> None:
    hb = parse(sign(encode(1, 0), KEY, TS))
    if ok:
        verify(hb, (KEY,), now=TS + offset, window=10.0, last_ts=None)
    else:
        with pytest.raises(HeartbeatError) as info:
            verify(hb, (KEY,), now=TS + offset, window=10.0, last_ts=None)
        assert info.value.reason == "stale"


@pytest.mark.parametrize(("last_ts", "ok"), [(None, True), (TS - 0.000001, True), (TS, False),
                                             (TS + 1, False)])
def test_replay_needs_a_newer_timestamp(last_ts: float | None, ok: bool) -> None:
    hb = parse(sign(encode(1, 0), KEY, TS))
    if ok:
        verify(hb, (KEY,), now=TS, window=10.0, last_ts=last_ts)
    else:
        with pytest.raises(HeartbeatError) as info:
            verify(hb, (KEY,), now=TS, window=10.0, last_ts=last_ts)
        assert info.value.reason == "replay"


def test_bad_signature_is_checked_before_time() -> None:
    """A forged datagram says bad_signature, whatever its ts: it must not poison replay state."""
    hb = parse(sign(encode(1, 0), b"forger", TS + 10_000))
    with pytest.raises(HeartbeatError) as info:
        verify(hb, (KEY,), now=TS, window=10.0, last_ts=TS + 20_000)
    assert info.value.reason == "bad_signature"


def test_verify_unsigned() -> None:
    with pytest.raises(HeartbeatError) as info:
        verify(parse(encode(1, 0)), (KEY,), now=TS, window=10.0, last_ts=None)
    assert info.value.reason == "unsigned"


def test_sig_must_be_last() -> None:
    data = sign(encode(1, 0), KEY, TS)
    rejected(data + b"&port=80", "bad_signature")
    rejected(data + b"&", "bad_signature")
    body, sig = data.split(b"&sig=")
    rejected(b"sig=" + sig + b"&" + body, "bad_signature")


@pytest.mark.parametrize("mangle", [
    lambda sig: sig.upper(),
    lambda sig: sig[:-1],
    lambda sig: sig + b"0",
    lambda sig: sig[:-1] + b"g",
    lambda sig: b"",
])
def test_sig_must_be_64_lower_case_hex(mangle) -> None:
    body, sig = sign(encode(1, 0), KEY, TS).split(b"&sig=")
    rejected(body + b"&sig=" + mangle(sig), "bad_signature")


@pytest.mark.parametrize("ts", [None, b"", b"abc", b"-1", b"1e9", b"1.", b"1234567890123",
                                b"1.1234567890"])
def test_signed_heartbeat_needs_a_plain_timestamp(ts: bytes | None) -> None:
    body = encode(1, 0) + (b"&ts=" + ts if ts is not None else b"")
    data = body + b"&sig=" + hmac.new(KEY, body, hashlib.sha256).hexdigest().encode()
    err = rejected(data, "bad_signature")
    assert "ts=" in err.detail


def test_integer_timestamp_is_fine() -> None:
    body = encode(1, 0) + b"&ts=1700000000"
    hb = parse(body + b"&sig=" + hmac.new(KEY, body, hashlib.sha256).hexdigest().encode())
    assert hb.ts == 1_700_000_000.0
    verify(hb, (KEY,), now=1_700_000_000.0, window=1.0, last_ts=None)


def test_bytes_after_nul_are_not_signed_or_parsed() -> None:
    data = sign(encode(1, 0), KEY, TS)
    hb = parse(data + b"\0&ready=9&sig=" + b"0" * 64)
    assert hb.ready == 1 and hb.signed_part == data.split(b"&sig=")[0]
    verify(hb, (KEY,), now=TS, window=10.0, last_ts=None)


def test_signature_fields_are_still_checked_for_numbers() -> None:
    rejected(sign(b"v=1&ready=x&busy=0", KEY, TS), "bad_number")
    rejected(sign(b"v=1&ready=1", KEY, TS), "malformed")


# --- fuzzing: anything parses or is rejected with a known reason, nothing else


def check_invariant(data: bytes) -> Heartbeat | None:
    try:
        hb = parse(data)
    except HeartbeatError as err:
        assert err.reason in REJECT_REASONS, err.reason
        return None
    assert isinstance(hb, Heartbeat)
    assert 0 <= hb.ready <= INT32_MAX
    assert 0 <= hb.busy <= INT32_MAX
    assert hb.port is None or 1 <= hb.port <= 65535
    if hb.signed:
        assert hb.ts is not None and len(hb.signature) == 64
        assert len(hb.signed_part) < MAX_DATAGRAM
    return hb


FUZZ = settings(derandomize=True, max_examples=600, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# Pieces that matter to the parser, so random sequences of them reach the interesting paths.
PIECES = [b"v", b"ready", b"busy", b"port", b"ts", b"sig", b"READY", b"=", b"&", b"%", b"%00",
          b"%3d", b"%26", b"%7", b"0", b"1", b"9", b"2147483647", b"2147483648", b"65535",
          b"65536", b"-", b"+", b".", b"a", b"\0", b"\xff", b" ", b"0" * 64, b"f" * 64,
          b"&sig=", b"&ts=1700000000.5", b"x" * 300]


@FUZZ
@given(st.binary(max_size=1200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    check_invariant(data)


@FUZZ
@given(st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join))
def test_fuzz_token_soup(data: bytes) -> None:
    check_invariant(data)


@st.composite
def valid_datagrams(draw) -> bytes:
    ready = draw(st.integers(0, INT32_MAX))
    busy = draw(st.integers(0, INT32_MAX))
    port = draw(st.none() | st.integers(1, 65535))
    data = encode(ready, busy, port)
    if draw(st.booleans()):
        data = sign(data, KEY, draw(st.floats(0, 1e11, allow_nan=False)))
    return data


@st.composite
def mutated_datagrams(draw) -> bytes:
    data = bytearray(draw(valid_datagrams()))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "extend"]))
        at = draw(st.integers(0, len(data)))
        if kind == "insert":
            data[at:at] = draw(st.sampled_from(PIECES) | st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "duplicate":
            data += b"&" + bytes(data[at:at + draw(st.integers(1, 20))])
        else:
            data += draw(st.binary(max_size=1100))
    return bytes(data)


@FUZZ
@given(valid_datagrams())
def test_fuzz_valid_datagrams_parse(data: bytes) -> None:
    hb = check_invariant(data)
    assert hb is not None
    fields = parse_fields(data)
    assert hb.ready == int(fields[b"ready"]) and hb.busy == int(fields[b"busy"])
    if hb.signed:
        verify(hb, (KEY,), now=hb.ts, window=0.0, last_ts=None)


@FUZZ
@given(mutated_datagrams())
def test_fuzz_mutated_datagrams(data: bytes) -> None:
    hb = check_invariant(data)
    if hb is not None and hb.signed:
        # verify never raises anything but HeartbeatError either
        try:
            verify(hb, (KEY,), now=hb.ts, window=1.0, last_ts=None)
        except HeartbeatError as err:
            assert err.reason in REJECT_REASONS


def test_reject_reasons_are_stable() -> None:
    assert heartbeat.REJECT_REASONS == ("malformed", "bad_number", "bad_port", "bad_signature",
                                        "unsigned", "stale", "replay")
