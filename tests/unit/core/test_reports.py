"""hbfork.core.reports: worker -> master messages survive the trip, and junk is None."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hbfork.core.reports import MAX_MESSAGE, Beat, ConnectFailed, Eject, Ready, decode, encode


@pytest.mark.parametrize("report", [
    Ready(), ConnectFailed(3, 77, "ECONNREFUSED"), ConnectFailed(0, 1, "ETIMEDOUT", 2500),
    Eject(5, 9, 2), Beat("10.0.0.7", b"v=1&ready=3&busy=1&port=8009"), Beat("::1", b""),
    Beat("192.0.2.1", b"a b\x00c d")])
def test_round_trip(report):
    assert decode(encode(report)) == report


def test_a_reason_with_spaces_stays_one_field():
    assert decode(encode(ConnectFailed(1, 2, "TLS: bad cert", 10))) == \
        ConnectFailed(1, 2, "TLS:_bad_cert", 10)


@given(st.binary(max_size=64))
def test_any_bytes_decode_to_a_report_or_none(data):
    assert decode(data) is None or isinstance(decode(data), Ready | ConnectFailed | Eject | Beat)


@pytest.mark.parametrize("junk", [b"", b"eject", b"eject 1 2", b"eject a b c", b"error x 1",
                                  b"ready now", b"hello", b"beat ", b"beat  x"])
def test_junk_is_none(junk):
    assert decode(junk) is None


def test_the_longest_beat_fits_one_message():
    body = b"x" * 1000
    assert len(encode(Beat("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", body))) <= MAX_MESSAGE
