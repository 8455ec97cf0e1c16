"""Rank order of the front queue across a front's workers: the decisions, pure.

A waiter's rank is when it arrived plus its offset (HAProxy's `set-priority-offset`): 0 for a
request on a connection with a record of quick exchanges (a returning client), the pool's
`queue_fresh_offset` ([balance]; 0 by default: arrival order) for one on a connection that
has none yet (a new connection, or one whose last response lagged: hbfork.core.spool.
LagWindow.lagged). The front serves the lowest rank first: a returning client goes before
fresh connections that arrived up to the offset before it, so slow readers that open
connection after connection (each a first request, their responses spooled) cannot fill the
queue ahead of the clients that read what they are sent. With an offset of 0, or no fresh
waiter, rank is arrival: FIFO. Queue timeouts count from the real arrival.

Each worker keeps its own waiters (their connections are its own) and publishes one word per
pool in the shared table: the rank of its first waiter that any member may take, as
CLOCK_MONOTONIC microseconds + 1 (0: none). From its own word and the others' a worker decides
what to do with a place that one of its requests just freed ("oldest" below: lowest rank):

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
    """The table word for a waiter that arrived at `arrived` (monotonic seconds) and ranks by
    its arrival (offset 0)."""
    return int(arrived * 1e6) + 1


def rank_word(arrived: float, offset: float) -> int:
    """The head word of a waiter that arrived at `arrived` (monotonic seconds) with queue
    offset `offset` (queue_offset): its rank, the order in which the front serves it."""
    return head_word(arrived + offset)


def queue_offset(returning: bool, fresh_offset: float) -> float:
    """How much later than its arrival a request ranks: not at all on a connection whose last
    exchange went well (`returning`), `fresh_offset` on one with no such record."""
    return 0.0 if returning else fresh_offset


def head_time(word: int) -> float:
    """The rank of a (non-zero) head word in monotonic seconds: when its waiter arrived, plus
    its offset."""
    return (word - 1) / 1e6


def is_leftover(word: int, now: float, queue_timeout: float) -> bool:
    """A head word older than any waiter can be (queue_timeout, plus a grace; a rank is never
    before its arrival): left by a worker that stopped without clearing it, and ignored."""
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
