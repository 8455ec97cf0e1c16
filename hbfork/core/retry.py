"""Which failed requests go to another member, and which answers count as a member failing.
Pure.

A request is replayed on another member only when the client cannot tell: nothing of the
member's answer has reached it, and sending the request twice cannot have had an effect
twice: an idempotent method with no body (RFC 9110 §9.2.2). A failed connect is the exception:
the member received nothing, so any request goes elsewhere (as Apache's failover does).
What else is retried is the pool's `retry_on`: kinds of failure before a response head, and
response statuses (HAProxy's `retry-on`, nginx's `proxy_next_upstream`).
"""

from __future__ import annotations

from typing import Any

# Failures before a usable response head (what `retry_on` names them).
RESET = "reset"                    # the member reset the connection before answering
EMPTY = "empty-response"           # it closed the connection without a byte of answer
MALFORMED = "malformed-response"   # what it sent is not an HTTP response
TIMEOUT = "timeout"                # no response head within response_timeout
KINDS = (RESET, EMPTY, MALFORMED, TIMEOUT)
DEFAULT_RETRY_ON = KINDS
DEFAULT_FAILONSTATUS = (500, 502, 503, 504)


def parse_statuses(value: Any) -> tuple[int, ...]:
    """A list of statuses: numbers, or "500-599" ranges."""
    items = value if isinstance(value, list) else [value]
    out: list[int] = []
    for item in items:
        out.extend(_status_range(item))
    return tuple(sorted(set(out)))


def _status_range(item: Any) -> range:
    if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
        return range(item, item + 1)
    if isinstance(item, str):
        low, sep, high = item.partition("-")
        if low.strip().isdigit() and (not sep or high.strip().isdigit()):
            first, last = int(low), int(high if sep else low)
            if 100 <= first <= last <= 599:
                return range(first, last + 1)
    raise ValueError(f"expected a status from 100 to 599 or a range like \"500-599\", "
                     f"got {item!r}")


def parse_retry_on(value: Any) -> tuple[str | int, ...]:
    """`retry_on`: kinds of failure (KINDS) and response statuses."""
    items = value if isinstance(value, list) else [value]
    out: list[str | int] = []
    for item in items:
        if isinstance(item, str) and item in KINDS:
            out.append(item)
        else:
            try:
                out.extend(_status_range(item))
            except ValueError:
                raise ValueError(f"expected one of {', '.join(KINDS)} or a status (range), "
                                 f"got {item!r}") from None
    return tuple(dict.fromkeys(out))


def replayable(method_idempotent: bool, has_body: bool) -> bool:
    """May the request be sent again to another member once it may have reached one?"""
    return method_idempotent and not has_body


def may_retry(failure: str | int, retry_on: frozenset[str | int], replay_ok: bool,
              answered_client: bool, tries: int, limit: int) -> bool:
    """Should a request whose try `tries` (1 = the first) met `failure` (a KIND, or the
    status the member answered) go to another member? Never once the client has seen part
    of an answer, never a request that is not safe to replay, at most `limit` more tries."""
    return (not answered_client and replay_ok and tries <= limit
            and failure in retry_on)


def race_goes_elsewhere(sticky: bool, others: bool, tries: int, limit: int) -> bool:
    """A reused connection the member closed before any answer, for a request that may be
    sent again (the keep-alive race): another member takes it when one can (`others`), the
    request is not bound to this member by its session and tries are left; else a fresh
    connection to the same member. Closing kept-alive connections is also how a member
    stopping gracefully starts (hbfork's backend, Apache, Tomcat): a fresh connect to it may
    then land in a backlog it no longer serves, or be accepted and reset. Not a failure of the
    member (the outlier detector does not hear of it)."""
    return not sticky and others and tries <= limit
