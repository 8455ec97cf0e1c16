"""hbfork.core.retry: which failures send a request to another member, by table."""

from __future__ import annotations

import pytest

from hbfork.core.retry import (
    DEFAULT_RETRY_ON,
    EMPTY,
    RESET,
    TIMEOUT,
    may_retry,
    parse_retry_on,
    parse_statuses,
    replayable,
)

DEFAULTS = frozenset(DEFAULT_RETRY_ON)


@pytest.mark.parametrize(("failure", "retry_on", "replay", "answered", "tries", "limit", "ok"), [
    (RESET, DEFAULTS, True, False, 1, 2, True),
    (TIMEOUT, DEFAULTS, True, False, 2, 2, True),
    (TIMEOUT, DEFAULTS, True, False, 3, 2, False),      # out of tries
    (EMPTY, DEFAULTS, False, False, 1, 2, False),       # a POST, or a body: never replayed
    (RESET, DEFAULTS, True, True, 1, 2, False),         # the client saw part of an answer
    (503, DEFAULTS, True, False, 1, 2, False),          # statuses only when listed
    (503, DEFAULTS | {503}, True, False, 1, 2, True),
    (RESET, frozenset(), True, False, 1, 2, False),
])
def test_may_retry(failure, retry_on, replay, answered, tries, limit, ok):
    assert may_retry(failure, retry_on, replay, answered, tries, limit) is ok


@pytest.mark.parametrize(("idempotent", "body", "ok"), [
    (True, False, True), (True, True, False), (False, False, False)])
def test_replayable(idempotent, body, ok):
    assert replayable(idempotent, body) is ok


def test_parse_statuses():
    assert parse_statuses([500, "502-504"]) == (500, 502, 503, 504)
    assert parse_statuses("500-501") == (500, 501)
    for bad in (99, 600, "5xx", "504-502", True, [None]):
        with pytest.raises(ValueError):
            parse_statuses(bad)


def test_parse_retry_on():
    assert parse_retry_on(["reset", 502, "503-504", "reset"]) == ("reset", 502, 503, 504)
    with pytest.raises(ValueError, match="reset, empty-response"):
        parse_retry_on(["connect"])


@pytest.mark.parametrize(("sticky", "others", "tries", "limit", "elsewhere"), [
    (False, True, 1, 1, True),     # another member can take it: at once, not the same one
    (False, False, 1, 1, False),   # a pool of one: a fresh connection to the same member
    (True, True, 1, 1, False),     # a sticky session stays with its member
    (False, True, 2, 1, False),    # no tries left: the same member, fresh
    (False, True, 1, 0, False),    # retries = 0
])
def test_race_goes_elsewhere(sticky, others, tries, limit, elsewhere):
    from hbfork.core.retry import race_goes_elsewhere
    assert race_goes_elsewhere(sticky, others, tries, limit) is elsewhere
