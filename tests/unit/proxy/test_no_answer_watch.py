"""The no-answer watch (hbfork.proxy.no_answer) over a real table and a worker's Upstreams,
with a fake clock and fake sessions: when it ejects a silent member and hands on the requests
waiting there, and when it does not (a slow member, every member silent, too young)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hbfork.core.members import EJECTED
from hbfork.core.outlier import CAUSE_NO_ANSWER, OK, OutlierSettings
from hbfork.proxy.loop import Loop
from hbfork.proxy.no_answer import NoAnswerWatch
from hbfork.proxy.upstreams import Target
from tests.unit.proxy.test_outlier_picks import BAD, Front, table  # noqa: F401  (fixture)

TICK = 0.1


@dataclass
class Waiter:
    """A session waiting for a first byte from `target` since `since`."""
    target: Target
    since: float
    handed_on: bool = False


class Lab:
    def __init__(self, front: Front) -> None:
        self.front = front
        self.up = front.upstreams
        self.targets = [self.up._load(slot) for slot in range(3)]
        self.waiters: list[Waiter] = []
        self.reports: list[tuple[int, int]] = []
        self.loop = Loop()
        self.watch = NoAnswerWatch(self.loop, self.up, OutlierSettings(), lambda: self.waiters,
                                   self.waiting, self.give_up, self.eject)
        picked = self.up.choose()  # the worker's picks build the pool's candidates
        assert isinstance(picked, Target)
        self.up.finished(picked, 200)
        for _ in range(5):  # every member answers a few requests: usual times are known
            for target in self.targets:
                self.answer(target)

    def waiting(self, session: object) -> tuple[Target, float] | None:
        assert isinstance(session, Waiter)
        return None if session.handed_on else (session.target, session.since)

    def give_up(self, session: object) -> bool:
        assert isinstance(session, Waiter)
        session.handed_on = True
        self.up.finished(session.target, 0)  # it left the member (for another one)
        return True

    def eject(self, target: Target, cause: int) -> None:
        self.reports.append((target.slot, cause))
        self.front.eject(target, cause)

    def send(self, slot: int) -> None:
        """A request to `slot` that waits for its answer."""
        target = self.targets[slot]
        self.up.started(target)
        self.waiters.append(Waiter(target, self.front.now))

    def answer(self, target: Target) -> None:
        self.up.started(target)
        self.up.finished(target, 200)
        self.up.observe(target, OK, 0.002)

    def run(self, seconds: float, bad_answers_every: float = 0.0,
            others_answer: bool = True) -> list[float]:
        """Ticks of the watch for `seconds`; when the member in BAD was reported (seconds
        since the start)."""
        start = self.front.now
        reported: list[float] = []
        steps = round(seconds / TICK)
        for step in range(1, steps + 1):
            self.front.now = start + step * TICK
            if others_answer:
                self.answer(self.targets[0])
                self.answer(self.targets[1])
            if bad_answers_every and step % round(bad_answers_every / TICK) == 0:
                self.answer(self.targets[BAD])
            before = len(self.reports)
            self.watch.look(self.front.now)
            if len(self.reports) > before:
                reported.append(round(self.front.now - start, 3))
        return reported


@pytest.fixture
def lab(table):  # noqa: F811  (the fixture imported above)
    front = Front(table, detect=True)
    made = Lab(front)
    made.watch.look(front.now)  # the first look: every member has just answered
    yield made
    made.loop.close()


def test_a_silent_member_is_ejected_after_half_a_second_and_its_requests_handed_on(lab):
    for _ in range(4):
        lab.send(BAD)
    assert lab.run(1.0) == [0.5]
    assert lab.reports == [(BAD, CAUSE_NO_ANSWER)]
    assert lab.front.registry.members[BAD].reason == EJECTED
    assert all(w.handed_on for w in lab.waiters)
    assert lab.up.in_flight(BAD) == 0


def test_requests_younger_than_the_limit_are_not_evidence(lab):
    lab.run(0.3)  # the member has been silent (nothing sent to it) for 0.3 s
    for _ in range(4):
        lab.send(BAD)  # ... and these are new
    assert lab.run(0.4) == []
    assert not any(w.handed_on for w in lab.waiters)
    assert lab.run(0.2) == [0.1]  # 0.5 s after they were sent


def test_a_slow_member_that_still_answers_is_not_silent(lab):
    for _ in range(4):
        lab.send(BAD)
    assert lab.run(3.0, bad_answers_every=0.3) == []
    assert not any(w.handed_on for w in lab.waiters)


def test_every_member_silent_and_holding_requests_is_nobodys_fault(lab):
    for slot in (0, 1, BAD, BAD, BAD):
        lab.send(slot)
    assert lab.run(3.0, others_answer=False) == []
    assert not any(w.handed_on for w in lab.waiters)


def test_too_few_requests_in_flight(lab):
    for _ in range(2):  # no_answer_min_pending is 3
        lab.send(BAD)
    assert lab.run(2.0) == []


def test_off(lab):
    lab.watch.settings = OutlierSettings(no_answer_after=0)
    for _ in range(4):
        lab.send(BAD)
    assert lab.run(2.0) == []


def test_once_shown_silent_its_younger_requests_go_on_too(lab):
    for _ in range(3):
        lab.send(BAD)
    lab.run(0.3)
    young = Waiter(lab.targets[BAD], lab.front.now)  # sent 0.2 s before the verdict
    lab.up.started(young.target)
    lab.waiters.append(young)
    assert lab.run(0.2) == [0.2]
    assert all(w.handed_on for w in lab.waiters)


def test_a_member_ejected_by_another_worker_gets_its_waiting_requests_handed_on(lab):
    for _ in range(4):
        lab.send(BAD)
    lab.front.eject(lab.targets[BAD], CAUSE_NO_ANSWER)  # another worker's report
    assert lab.run(0.4) == []
    assert not any(w.handed_on for w in lab.waiters)  # not silent for its limit yet
    assert lab.run(0.2) == []  # no report of its own: it is out already
    assert all(w.handed_on for w in lab.waiters)
