"""hbfork.ratelimit: per-key token buckets and the log limiter. The clock is passed in."""

from __future__ import annotations

from hbfork.core.ratelimit import KeyedRateLimiter, LogLimiter


def allowed(limiter: KeyedRateLimiter, key: str, now: float, tries: int) -> int:
    return sum(limiter.allow(key, now) for _ in range(tries))


def test_burst_then_rate() -> None:
    limiter = KeyedRateLimiter(rate=2.0, burst=4.0)
    assert allowed(limiter, "a", 0.0, 10) == 4        # a full bucket to start
    assert allowed(limiter, "a", 0.5, 10) == 1        # 0.5 s at 2/s refills one token
    assert allowed(limiter, "a", 0.75, 10) == 0       # half a token is not enough
    assert allowed(limiter, "a", 1.0, 10) == 1
    assert allowed(limiter, "a", 100.0, 10) == 4      # refill stops at the burst


def test_sustained_rate() -> None:
    limiter = KeyedRateLimiter(rate=10.0, burst=20.0)
    # 100 events per second for 10 s: the first 20 ride on the burst, then 10 per second
    passed = sum(limiter.allow("src", i / 100) for i in range(1000))
    assert 20 + 99 <= passed <= 20 + 101


def test_denied_events_cost_nothing() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1.0)
    assert limiter.allow("a", 0.0)
    assert allowed(limiter, "a", 0.1, 1000) == 0
    assert limiter.allow("a", 1.0)  # the flood did not push the next token back


def test_fractional_rate() -> None:
    limiter = KeyedRateLimiter(rate=0.5, burst=1.0)
    assert [limiter.allow("a", t) for t in (0.0, 1.0, 1.99, 2.0)] == [True, False, False, True]


def test_keys_are_independent() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=2.0)
    assert allowed(limiter, "a", 0.0, 5) == 2
    assert allowed(limiter, "b", 0.0, 5) == 2
    assert allowed(limiter, "a", 0.0, 5) == 0


def test_zero_rate_means_unlimited() -> None:
    limiter = KeyedRateLimiter(rate=0.0, burst=0.0)
    assert allowed(limiter, "a", 0.0, 10_000) == 10_000
    assert len(limiter._buckets) == 0


def test_max_keys_bounds_memory_and_drops_the_least_recent() -> None:
    limiter = KeyedRateLimiter(rate=1.0, burst=1.0, max_keys=3)
    for key in "abc":
        assert limiter.allow(key, 0.0)
    assert not limiter.allow("a", 0.0)  # a is now the most recently used
    assert limiter.allow("d", 0.0)      # evicts b, the least recently used
    assert len(limiter._buckets) == 3
    assert not limiter.allow("a", 0.0)  # a kept its empty bucket
    assert not limiter.allow("c", 0.0)
    assert limiter.allow("b", 0.0)      # b was forgotten: a fresh bucket
    for i in range(1000):
        limiter.allow(f"spoofed-{i}", 1.0)
    assert len(limiter._buckets) == 3


def test_log_limiter_counts_what_it_held_back() -> None:
    logs = LogLimiter(interval=10.0)
    assert logs.should_log("k", 0.0) == 0
    assert [logs.should_log("k", t) for t in (1.0, 5.0, 9.99)] == [None, None, None]
    assert logs.should_log("k", 10.0) == 3   # logs again, saying 3 were suppressed
    assert logs.should_log("k", 15.0) is None
    assert logs.should_log("k", 19.0) is None
    assert logs.should_log("k", 20.0) == 2
    assert logs.should_log("k", 100.0) == 0


def test_log_limiter_keys_are_independent() -> None:
    logs = LogLimiter(interval=10.0)
    assert logs.should_log("a", 0.0) == 0
    assert logs.should_log("b", 1.0) == 0
    assert logs.should_log("a", 2.0) is None
    assert logs.should_log("b", 11.0) == 0
    assert logs.should_log("a", 12.0) == 1


def test_log_limiter_max_keys() -> None:
    logs = LogLimiter(interval=10.0, max_keys=2)
    assert logs.should_log("a", 0.0) == 0
    assert logs.should_log("b", 0.0) == 0
    assert logs.should_log("c", 0.0) == 0    # evicts a
    assert len(logs._last) == 2
    assert logs.should_log("a", 1.0) == 0    # forgotten, so logged at once
    assert logs.should_log("c", 1.0) is None
