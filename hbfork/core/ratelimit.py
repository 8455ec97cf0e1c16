"""Token buckets per key, and a log limiter. Pure: the caller passes the clock."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class KeyedRateLimiter:
    """Allow `rate` events per second per key, with bursts of `burst`. Keeps at most
    `max_keys` buckets (least recently used dropped), so spoofed sources cannot grow memory."""

    def __init__(self, rate: float, burst: float, max_keys: int = 65536) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> bool:
        if self.rate <= 0:
            return True
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed


class LogLimiter:
    """At most one log line per key per `interval` seconds; counts what it held back."""

    def __init__(self, interval: float = 10.0, max_keys: int = 4096) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def should_log(self, key: Hashable, now: float) -> int | None:
        """None: stay quiet. Otherwise log now; the number is how many were suppressed."""
        last, suppressed = self._last.pop(key, (None, 0))
        if last is not None and now - last < self.interval:
            self._last[key] = (last, suppressed + 1)
            return None
        self._last[key] = (now, 0)
        if len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return suppressed

    def note(self, key: Hashable, now: float) -> str | None:
        """None: stay quiet. Otherwise the text to end the log line with ("" or a count of
        the lines held back since the last one)."""
        suppressed = self.should_log(key, now)
        if suppressed is None:
            return None
        return f" ({suppressed} more since the last report)" if suppressed else ""
