"""A worker's no-answer watch: every SCAN_EVERY seconds (a loop timer, not per request) it
reads, for each member of the pools this worker serves, what the whole front has in flight
to it and whether it has finished an answer since the last look; hbfork.core.hang judges
which members are silent while their pool answers. Only then are the worker's sessions
looked at: a request waiting there without a byte of answer for the member's limit is this
worker's evidence (it asks the master to eject the member, cause "no answer") and is handed
on as a response timeout would be (hbfork.proxy.http.stalled.give_up), with every other
request waiting there for a first byte, however young. Requests this worker still holds on a
member another worker had ejected, silent as long, are handed on too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from hbfork.core.balancer import EJECTED
from hbfork.core.config import Config
from hbfork.core.hang import SCAN_EVERY, AnswerClock, Reports, Seen, judge, limit_for
from hbfork.core.outlier import CAUSE_NO_ANSWER, OutlierSettings
from hbfork.proxy.http.stalled import give_up, waiting
from hbfork.proxy.loop import Loop
from hbfork.proxy.targets import Target
from hbfork.proxy.upstreams import Upstreams
from hbfork.system.logs import log
from hbfork.table.layout import MC_INFLIGHT, MC_STATUS_CLASS, MC_UID, MEMBER_COUNTERS, WK_MEMBERS

Waiting = Callable[[object], "tuple[Target, float] | None"]
ANSWER_CLASSES = 5  # the 1xx..5xx counters of a member in a worker record


class NoAnswerWatch:
    __slots__ = ("clock", "eject", "give_up", "loop", "reports", "sessions", "settings",
                 "timer", "upstreams", "waiting")

    def __init__(self, loop: Loop, upstreams: Upstreams, settings: OutlierSettings,
                 sessions: Callable[[], Iterable[object]], waiting: Waiting,
                 give_up: Callable[[object], bool],
                 eject: Callable[[Target, int], None]) -> None:
        self.loop, self.upstreams, self.settings = loop, upstreams, settings
        self.sessions, self.waiting, self.give_up, self.eject = sessions, waiting, give_up, eject
        self.clock = AnswerClock()
        self.reports = Reports()
        self.timer = loop.timer(self._on_timer)

    def start(self) -> None:
        self.loop.set_timer(self.timer, self.loop.now + SCAN_EVERY)

    def _on_timer(self, now: float) -> None:
        self.loop.set_timer(self.timer, now + SCAN_EVERY)  # first: a bug must not stop it
        try:
            self.look(now)
        except Exception:
            log.exception("internal error in the no-answer watch")

    # --- one look

    def answers(self, slot: int, uid: int) -> int:
        """The answers the whole front has had from the member in `slot` (every status)."""
        up = self.upstreams
        words = up.words_view
        total = 0
        for base in up.records:
            at = base + WK_MEMBERS + slot * MEMBER_COUNTERS
            if words[at + MC_UID] == uid:
                start = at + MC_STATUS_CLASS
                total += sum(words[start:start + ANSWER_CLASSES])
        return total

    def silent_members(self, now: float) -> dict[int, float]:
        """Slot -> limit of each member judged silent now (see hbfork.core.hang)."""
        up = self.upstreams
        up.refresh()
        found: dict[int, float] = {}
        looked: set[int] = set()
        times = up.times.seconds
        for pool in up.pools.values():
            slots = pool.candidates.slots
            if len(slots) < 2:
                continue
            members = []
            for slot in slots:
                uid = up.uids[slot]
                members.append(Seen(slot, up.in_flight(slot),
                                    self.clock.silent(slot, uid, self.answers(slot, uid), now),
                                    times.get(slot, 0.0)))
                looked.add(slot)
            for slot, limit in judge(members, self.settings).items():
                found[slot] = min(limit, found.get(slot, limit))
        # Out already (another worker's report, or this one's) while this worker still waits
        # there: once out, too few requests may be left on it for judge()'s minimum, and
        # those must not wait for response_timeout.
        record = up.record
        for slot, target in up.targets.items():
            if slot in found or slot >= len(up.words) or not up.words[slot] & EJECTED or \
                    target.uid != up.uids[slot] or \
                    not record[target.counters + MC_INFLIGHT]:
                continue
            looked.add(slot)
            limit = limit_for(times.get(slot, 0.0), 0.0, self.settings)
            if self.clock.silent(slot, target.uid, self.answers(slot, target.uid), now) >= limit:
                found[slot] = limit
        self.clock.keep(looked)
        return found

    def look(self, now: float) -> None:
        found = self.silent_members(now)
        if not found:
            return
        waiting: dict[int, list[object]] = {}
        evidence: dict[int, Target] = {}
        for session in list(self.sessions()):
            waits = self.waiting(session)
            if waits is None:
                continue
            target, since = waits
            limit = found.get(target.slot)
            if limit is None or target.uid != self.upstreams.uids[target.slot]:
                continue
            waiting.setdefault(target.slot, []).append(session)
            if now - since >= limit:
                evidence[target.slot] = target
        words = self.upstreams.words
        for slot, target in evidence.items():
            if not words[slot] & EJECTED and self.reports.due(slot, target.uid, now):
                self.eject(target, CAUSE_NO_ANSWER)
        # Every request waiting on a member shown silent goes on, however young: it was sent
        # to a member that answers nothing (one that is out already needs no more evidence).
        for slot, sessions in waiting.items():
            if slot in evidence or words[slot] & EJECTED:
                for session in sessions:
                    self._hand_on(session)

    def _hand_on(self, session: object) -> None:
        try:
            self.give_up(session)
        except Exception:  # a bug costs that connection, not the watch
            log.exception("internal error handing on a request from a silent member")
            close = getattr(session, "close", None)
            if callable(close):
                close()


def no_answer_watch(loop: Loop, upstreams: Upstreams, config: Config,
                    sessions: Iterable[object],
                    eject: Callable[[Target, int], None]) -> NoAnswerWatch | None:
    """The worker's watch, or None when the rule is off (or in TCP mode: a TCP member may
    rightly say nothing until the client speaks)."""
    settings = config.outlier
    if not settings.enabled or not settings.no_answer_after or config.proxy.mode != "http":
        return None
    return NoAnswerWatch(loop, upstreams, settings, lambda: sessions, waiting, give_up, eject)
