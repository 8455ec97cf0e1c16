"""hbfork.core.client_limits: the [limits] settings and the token bucket (GCRA) with an
injected clock."""

from __future__ import annotations

import pytest

from hbfork.core.addresses import parse_ip
from hbfork.core.client_limits import (
    NS,
    Bucket,
    describe,
    header_needles,
    header_value,
    is_exempt,
    retry_after,
    table_slots,
    take,
)
from hbfork.core.config import loads
from hbfork.core.errors import ConfigError

BASE = "[heartbeat]\ndiscover = true\n[limits]\n"


def run(bucket: Bucket, times_ns: list[int]) -> list[bool]:
    """Whether each request at the given instants is allowed (one client)."""
    tat, out = 0, []
    for now in times_ns:
        tat, wait = take(tat, now, bucket)
        out.append(wait == 0)
    return out


def test_burst_then_rate() -> None:
    bucket = Bucket.of(10.0, 5)  # 10/s, 5 at once
    start = 1_000 * NS
    # 8 requests at the same instant: the bucket's 5, then nothing.
    assert run(bucket, [start] * 8) == [True] * 5 + [False] * 3


def test_refill_is_one_token_per_interval() -> None:
    bucket = Bucket.of(10.0, 1)
    t0 = 50 * NS
    tat, wait = take(0, t0, bucket)
    assert wait == 0
    tat, wait = take(tat, t0 + NS // 20, bucket)  # 50 ms later: 50 ms early
    assert wait == NS // 20
    tat, wait = take(tat, t0 + NS // 10, bucket)  # exactly one interval later
    assert wait == 0


def test_steady_rate_over_a_long_window() -> None:
    """A client asking 1000 times a second for 10 s gets rate x 10 + burst through."""
    bucket = Bucket.of(50.0, 20)
    times = [7 * NS + i * (NS // 1000) for i in range(10_000)]
    allowed = sum(run(bucket, times))
    assert allowed == pytest.approx(50 * 10 + 20, abs=1)


def test_idle_client_gets_its_whole_burst_back_and_no_more() -> None:
    bucket = Bucket.of(2.0, 3)
    tat = 0
    for _ in range(3):
        tat, wait = take(tat, 10 * NS, bucket)
        assert wait == 0
    later = 10 * NS + 3600 * NS
    assert run(bucket, [later] * 4) == [True, True, True, False]


def test_default_burst_is_one_seconds_worth() -> None:
    assert Bucket.of(10.0, 0) == Bucket.of(10.0, 10)
    assert Bucket.of(0.5, 0).tolerance == 0  # at least 1: one request, then one per 2 s
    assert Bucket.of(0.5, 0).interval == 2 * NS


@pytest.mark.parametrize(("wait", "seconds"), [(1, 1), (NS, 1), (NS + 1, 2), (5 * NS, 5)])
def test_retry_after_rounds_up(wait: int, seconds: int) -> None:
    assert retry_after(wait) == seconds


@pytest.mark.parametrize(("head", "value"), [
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key: k1\r\n\r\n", b"k1"),
    (b"GET / HTTP/1.1\r\nx-api-key:k2 \r\nHost: a\r\n\r\n", b"k2"),
    (b"GET / HTTP/1.1\r\nX-API-KEY:   k3\r\n\r\n", b"k3"),
    (b"GET / HTTP/1.1\r\nX-Api-Key: a\r\nX-Api-Key: b\r\n\r\n", b"a"),  # the first
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
    (b"GET / HTTP/1.1\r\nX-Api-Key:\r\n\r\n", None),                 # empty: by address
    (b"GET / HTTP/1.1\r\nX-Api-Key-Old: z\r\n\r\n", None),           # another field
])
def test_header_value(head: bytes, value: bytes | None) -> None:
    assert header_value(head, header_needles("X-Api-Key")) == value
    assert header_value(head, header_needles("x-API-key")) == value


def test_exempt_networks() -> None:
    settings = loads(BASE + 'exempt = ["10.0.0.0/8", "::1/128"]\n').limits
    assert is_exempt(parse_ip("10.1.2.3"), settings.exempt)
    assert is_exempt(parse_ip("::1"), settings.exempt)
    assert not is_exempt(parse_ip("11.0.0.1"), settings.exempt)
    assert not is_exempt(parse_ip("10.0.0.1"), ())


def test_settings_defaults_are_off() -> None:
    limits = loads(BASE).limits
    assert not limits.enabled and limits.header is None and limits.slots == 65536


def test_settings_parse() -> None:
    limits = loads(BASE + 'requests_per_second = 2.5\nburst = 4\nkey = "header:X-Api-Key"\n'
                   "connections_per_client = 3\nslots = 5000\n").limits
    assert limits.enabled
    assert limits.header == (b"\r\nX-Api-Key:", b"\r\nx-api-key:")
    assert (limits.requests_per_second, limits.burst, limits.connections_per_client) == \
        (2.5, 4, 3)
    assert table_slots(limits.slots) == 5000  # whole buckets of 8
    assert table_slots(5001) == 5008


@pytest.mark.parametrize(("line", "problem"), [
    ("requests_per_second = -1", "requests_per_second"),
    ("requests_per_second = true", "requests_per_second"),
    ("requests_per_second = 0.0001", "requests_per_second"),
    ('requests_per_second = "5"', "requests_per_second"),
    ("burst = -2", "burst"),
    ("connections_per_client = 1.5", "connections_per_client"),
    ('key = "cookie:x"', "key"),
    ('key = "header:"', "key"),
    ('key = "header:Bad Name"', "key"),
    ("slots = 10", "slots"),
    ('exempt = ["not-a-cidr"]', "exempt"),
    ('exempt = "10.0.0.0/8"', "exempt"),
    ("rate = 5", "rate"),
])
def test_bad_settings_name_file_and_key(line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        loads(BASE + line + "\n", "front.toml")
    assert "front.toml" in str(err.value) and f"[limits] {problem}" in str(err.value)


def test_check_describes_the_limits() -> None:
    assert describe(loads(BASE).limits) == "off"
    text = describe(loads(BASE + 'requests_per_second = 5\nconnections_per_client = 3\n'
                          'key = "header:X-Api-Key"\nexempt = ["10.0.0.0/8"]\n').limits)
    assert text == ("3 connections per client, 5 requests/s (burst 5) by X-Api-Key; "
                    "exempt 10.0.0.0/8; table 65536 slots, all workers")
