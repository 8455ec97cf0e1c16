"""The error log's line for a member that gave no usable answer (502, 504): it names the
member, what went wrong and what the client got, as Apache's proxy errors name the worker.
At most one line per member every INTERVAL seconds (the rest are counted in the next)."""

from __future__ import annotations

from hbfork.core.ratelimit import LogLimiter
from hbfork.proxy.upstreams import Target
from hbfork.system.logs import log

INTERVAL = 5.0
_limiter = LogLimiter(INTERVAL)


def gateway_failed(target: Target, status: int, detail: str, retried: bool, now: float) -> None:
    more = _limiter.note((target.slot, target.uid), now)
    if more is not None:
        outcome = "retried on another member" if retried else f"answered {status}"
        log.warning("member %s: %s (%s)%s", target.label, detail, outcome, more)
