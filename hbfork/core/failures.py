"""What a client is answered when the proxy cannot give it a member's answer. Pure.

Two kinds of failure end there: no member could be given the request (the reasons
`Upstreams.acquire()` answers with), and the member given it sent no usable answer (the kinds of
hbfork.core.retry) and no other member may take it. In both the client gets a 5xx of the proxy's
own, and a 503 says when to come back.
"""

from __future__ import annotations

from hbfork.core.retry import TIMEOUT

# Why no member could be given a request.
NO_MEMBER = "no member"            # none of the pool can serve at all
TRIED_ALL = "tried all"            # those that could were tried for this request already
RETRIES_SPENT = "retries spent"    # the request was tried `retries` times over
SESSION_DOWN = "session down"      # its sticky session's member is down (nofailover)

UNAVAILABLE = {
    NO_MEMBER: (503, "no member is available"),
    SESSION_DOWN: (503, "the member of this session is unavailable"),
    RETRIES_SPENT: (502, "no member accepted the connection"),
    TRIED_ALL: (502, "no member accepted the connection"),
}


def unavailable_answer(reason: str, last_failure: tuple[int, str] | None = None
                       ) -> tuple[int, str]:
    """(status, detail) for a request no member could be given. After tries that failed, the
    last failure's own answer (a 504 stays a 504) unless the retries were spent."""
    if reason == TRIED_ALL and last_failure is not None:
        return last_failure
    return UNAVAILABLE[reason]


def gateway_status(kind: str) -> int:
    """The status for a member that gave no usable answer (`kind`: hbfork.core.retry's)."""
    return 504 if kind == TIMEOUT else 502


def retry_after(status: int) -> bool:
    """Does the answer tell the client to come back (Retry-After)? A 503: the proxy had no
    room or no member, which passes."""
    return status == 503
