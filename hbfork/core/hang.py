"""The no-answer rule: a member that takes requests and finishes none while the rest of its
pool answers is out well before `response_timeout`. Pure: the caller passes `now`
(monotonic seconds) and what the table says.

A member whose application hangs (it reads each request and never answers) while its
heartbeat still says "idle" fails no request quickly: each one only fails at
`response_timeout`, so the consecutive-failure rules of hbfork.core.outlier see it seconds
late, and meanwhile every request sent there waits. Its silence is visible at once, though:
it holds requests and finishes none, while its peers keep answering. Each worker looks a few
times a second (not per request) at, per member of each pool it serves:

    pending   requests the whole front has in flight to it (the table's in-flight words)
    silent    seconds since it last finished answering a request to any worker (the table's
              per-worker answer counters stopped moving then: AnswerClock)
    usual     its recent response time as this worker measured it (the corrected pick's
              moving average), 0 when unknown: a member that has not answered this worker
              yet is not judged (a cold application's first answers may take seconds; a
              member that hangs from its start is left to response_timeout)

and calls it silent when all of these hold (judge):

    pending >= no_answer_min_pending, and
    silent  >= limit = max(no_answer_after, no_answer_factor x max(usual, the pool's median)),
    while another member of the same pool works: it finished an answer less than `limit`
    ago and at least limit/2 after this one's last, or it holds nothing and answered at
    least as recently as this one (closed-loop clients all stuck on the silent member leave
    the others idle, not failing).

A member that is merely slow still finishes answers, so it is never silent (the pick gives it
fewer requests instead: hbfork.core.balancing.ServiceTimes); one slow request among quick
ones is not silence either (its other requests finish), and a lone slow request on a quiet
member is not enough (`no_answer_min_pending`). When every member is silent (the database
behind them all is down, say), none is judged: no pool is emptied by this rule, and the
ejection cap and the panic rule hold as for the others.

The worker that judges a member silent asks the master to eject it (only if one of its own
requests has waited `limit` without a byte of answer: its own evidence), and every request it
holds there without a byte of answer is handled as a response timeout (hbfork.core.retry:
another member if idempotent, without a body and nothing was sent to the client; the others
keep waiting for their answer or their response_timeout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hbfork.core.outlier import OutlierSettings

SCAN_EVERY = 0.1  # seconds between two looks of a worker (a few table words per member)


@dataclass(frozen=True, slots=True)
class Seen:
    """One member of a pool at one look."""
    slot: int
    pending: int
    silent: float
    usual: float = 0.0


def limit_for(usual: float, median: float, settings: OutlierSettings) -> float:
    """How long a member must stay silent (and a request wait for a first byte) to count."""
    return max(settings.no_answer_after, settings.no_answer_factor * max(usual, median))


def median_usual(members: Sequence[Seen]) -> float:
    """The pool's median of known usual response times (the upper one for an even count)."""
    known = sorted(m.usual for m in members if m.usual > 0)
    return known[len(known) // 2] if known else 0.0


def judge(members: Sequence[Seen], settings: OutlierSettings) -> dict[int, float]:
    """The silent members of one pool, each with its limit (seconds), by slot."""
    if not settings.enabled or not settings.no_answer_after or len(members) < 2:
        return {}
    median = median_usual(members)
    found: dict[int, float] = {}
    for m in members:
        if m.pending < settings.no_answer_min_pending or m.usual <= 0:
            continue
        limit = limit_for(m.usual, median, settings)
        if m.silent >= limit and any(o.slot != m.slot and works(o, m, limit) for o in members):
            found[m.slot] = limit
    return found


def works(other: Seen, silent: Seen, limit: float) -> bool:
    """Does `other` show that the pool can answer while `silent` does not? It answered within
    `limit`, and at least half a limit after `silent` last did: members whose application
    hung at one moment (a shared database gone) fell silent milliseconds apart, and the last
    to go quiet must not count as the pool still answering."""
    answered_since = other.silent <= silent.silent - limit / 2
    return (other.silent < limit and answered_since) or \
        (other.pending == 0 and other.silent <= silent.silent)


class AnswerClock:
    """When each member last finished an answer for any worker: the front-wide count of its
    answers is read at every look; silent() is the time since it last moved. A member seen
    for the first time (or a slot with a new member) counts as having just answered."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[int, tuple[int, int, float]] = {}  # slot -> (uid, answers, since)

    def silent(self, slot: int, uid: int, answers: int, now: float) -> float:
        known = self.seen.get(slot)
        if known is None or known[0] != uid or known[1] != answers:
            self.seen[slot] = (uid, answers, now)
            return 0.0
        return now - known[2]

    def keep(self, slots: set[int]) -> None:
        """Forget the slots not in `slots` (members no pool has any more)."""
        for slot in [s for s in self.seen if s not in slots]:
            del self.seen[slot]


class Reports:
    """Asks to eject a member at most once per `quiet` seconds (several looks in a row find
    it silent until the master's ejection reaches the table)."""

    __slots__ = ("last", "quiet")

    def __init__(self, quiet: float = 1.0) -> None:
        self.quiet = quiet
        self.last: dict[tuple[int, int], float] = {}

    def due(self, slot: int, uid: int, now: float) -> bool:
        key = (slot, uid)
        last = self.last.get(key)
        if last is not None and now - last < self.quiet:
            return False
        if len(self.last) > 1024:
            self.last = {k: t for k, t in self.last.items() if now - t < self.quiet}
        self.last[key] = now
        return True
