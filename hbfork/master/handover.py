"""Planned hand-over of a front (`hbfork ctl drain-front [SECONDS]`): fail /healthz first, so
keepalived (or any checker) moves the traffic away; after `drain_delay` seconds stop accepting
and let in-flight requests finish, exactly as a graceful stop does.

The order matters: a front that closed its listeners while the virtual IP still pointed at it
would refuse the connections still arriving; one that keeps accepting until the address has
moved loses none.
"""

from __future__ import annotations

import time

from hbfork.core.settings import ProxySettings
from hbfork.table.layout import W_FRONT_DRAINING_NS
from hbfork.table.table import Table


class Handover:
    def __init__(self) -> None:
        self.close_at = 0.0  # monotonic seconds the listeners close; 0 = not handing over

    @property
    def active(self) -> bool:
        return bool(self.close_at)

    def begin(self, table: Table, delay: float, shutdown_timeout: float) -> str:
        """Start (or report) a hand-over; returns the control reply."""
        now = time.monotonic()
        if self.active:
            return f"ok already draining; listeners close in {max(0.0, self.close_at - now):.1f}s"
        self.close_at = now + delay
        table.set_header(W_FRONT_DRAINING_NS, time.monotonic_ns())
        return (f"ok draining: /healthz fails now; listeners close in {delay:g}s, then "
                f"in-flight requests finish (up to {shutdown_timeout:g}s) and the master exits")

    def request(self, words: list[str], table: Table, proxy: ProxySettings) -> str:
        """`ctl drain-front [SECONDS]`: the control reply."""
        try:
            delay = parse_delay(words, proxy.drain_delay)
        except ValueError as err:
            return f"error {err}"
        return self.begin(table, delay, proxy.shutdown_timeout)

    def due(self, now: float) -> bool:
        """True once, when the listeners should close."""
        if self.close_at > 0 and now >= self.close_at:
            self.close_at = -1.0  # stays active (and /healthz failing) until the exit
            return True
        return False

    def timeout(self, now: float, default: float) -> float:
        return min(default, max(0.0, self.close_at - now)) if self.close_at > 0 else default


def parse_delay(words: list[str], default: float) -> float:
    """The optional SECONDS of `drain-front [SECONDS]`; raises ValueError with the reason."""
    if not words:
        return default
    if len(words) > 1:
        raise ValueError("usage: drain-front [SECONDS]")
    try:
        delay = float(words[0])
    except ValueError:
        raise ValueError(f"expected seconds, got {words[0]!r}") from None
    if not 0 <= delay <= 3600:
        raise ValueError(f"seconds must be from 0 to 3600, got {words[0]}")
    return delay
