"""Arrival order of the front queue across a front's workers: the decisions, pure.

Each worker keeps its own waiters (their connections are its own) and publishes one word per
pool in the shared table: when its oldest waiter that any member may take arrived, as
CLOCK_MONOTONIC microseconds + 1 (0: none). From its own word and the others' a worker decides
what to do with a place that one of its requests just freed:

    SERVE       its own oldest waiter takes it (it is the oldest of the front, or within
                `margin` of the oldest: two waiters a millisecond apart in two workers must
                not hand the place back and forth)
    HAND_OVER   another worker's waiter came first: that worker is woken at once and takes
                the place; this worker's younger waiters let it go by
    NOBODY      nobody waits for the pool anywhere

hbfork.proxy.queue does the I/O (the table words, the eventfd wake-ups); these functions are
what it decides, table-tested in tests/unit/core/test_queue_order.py.
"""

from __future__ import annotations

SERVE, HAND_OVER, NOBODY = "serve", "hand over", "nobody"
LEFTOVER_GRACE = 1.0  # seconds past queue_timeout after which a head word is a leftover


def head_word(arrived: float) -> int:
    """The table word for a waiter that arrived at `arrived` (monotonic seconds)."""
    return int(arrived * 1e6) + 1


def head_time(word: int) -> float:
    """When the waiter of a (non-zero) head word arrived, in monotonic seconds."""
    return (word - 1) / 1e6


def is_leftover(word: int, now: float, queue_timeout: float) -> bool:
    """A head word older than any waiter can be (queue_timeout, plus a grace): left by a
    worker that stopped without clearing it, and ignored."""
    return head_time(word) < now - queue_timeout - LEFTOVER_GRACE


def yields(waiter: int, other: int, margin: float) -> bool:
    """A waiter (head word `waiter`, not pinned to one member) lets a place go to the other
    worker's oldest (head word `other`, 0: none) because that one came more than `margin`
    seconds before it."""
    return bool(other) and other + margin * 1e6 < waiter


def unanswered(owed: tuple[int, float] | None, other: int, now: float, grace: float) -> bool:
    """Places were left for the other worker's waiter of head word `other` since `owed` =
    (that head word, when the first was left), and its head has not moved for `grace` seconds:
    that worker does not take them (it is not running: a loaded machine; or the places went
    to new requests before it came). Its waiter stops holding this worker's waiters back, so
    the places this worker frees are served instead of standing idle."""
    return owed is not None and owed[0] == other and now - owed[1] > grace


def place_goes(own: int, other: int, margin: float) -> str:
    """What a place freed in a worker whose own head word is `own` goes to, when the oldest
    head word of the other workers is `other` (either 0: none)."""
    if not own:
        return HAND_OVER if other else NOBODY
    return HAND_OVER if yields(own, other, margin) else SERVE
