"""What a client is answered when no member answers it (hbfork.core.failures), by table."""

from __future__ import annotations

import pytest

from hbfork.core.failures import (
    NO_MEMBER,
    RETRIES_SPENT,
    SESSION_DOWN,
    TRIED_ALL,
    gateway_status,
    retry_after,
    unavailable_answer,
)
from hbfork.core.retry import EMPTY, MALFORMED, RESET, TIMEOUT

LAST = (504, "the member did not answer in time")

# (reason, the last failure of the tries, (status, detail))
UNAVAILABLE = [
    (NO_MEMBER, None, (503, "no member is available")),
    (SESSION_DOWN, None, (503, "the member of this session is unavailable")),
    (SESSION_DOWN, LAST, (503, "the member of this session is unavailable")),
    (TRIED_ALL, None, (502, "no member accepted the connection")),
    (TRIED_ALL, LAST, LAST),  # the failure of the last try, as it deserved
    (RETRIES_SPENT, LAST, (502, "no member accepted the connection")),
]


@pytest.mark.parametrize(("reason", "last", "answer"), UNAVAILABLE)
def test_unavailable_answer(reason: str, last: tuple[int, str] | None,
                            answer: tuple[int, str]) -> None:
    assert unavailable_answer(reason, last) == answer


@pytest.mark.parametrize(("kind", "status"),
                         [(RESET, 502), (EMPTY, 502), (MALFORMED, 502), (TIMEOUT, 504)])
def test_gateway_status(kind: str, status: int) -> None:
    assert gateway_status(kind) == status


@pytest.mark.parametrize(("status", "come_back"), [(503, True), (502, False), (504, False)])
def test_retry_after(status: int, come_back: bool) -> None:
    assert retry_after(status) is come_back
