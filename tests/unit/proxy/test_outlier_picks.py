"""A member that fails fast, end to end without sockets: a worker's picks (Upstreams over a
real table), its detector, and the master's registry, with a fake clock.

Why this matters: the corrected pick subtracts what this front has in flight, and a member
that fails at once holds nothing in flight, so without detection it gets *more* than its
share while the healthy members hold real work."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from hbfork.core.addresses import parse_endpoint, parse_ip
from hbfork.core.heartbeat import Heartbeat
from hbfork.core.members import EJECTED, Registry, Rules
from hbfork.core.outlier import Detector, OutlierSettings
from hbfork.core.settings import MemberSettings
from hbfork.proxy.upstreams import Target, Upstreams
from hbfork.table.layout import STATE_READY
from hbfork.table.table import Table

S = 1_000_000_000
T0 = 5_000 * S
ADDRESSES = ("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
BAD = 2  # the slot of 10.0.0.3, which answers every request 500 at once


class Front:
    """One worker and its master, over a real table; `now` is the fake clock (seconds)."""

    def __init__(self, table: Table, detect: bool) -> None:
        self.table = table
        outlier = OutlierSettings(enabled=detect)
        self.registry = Registry(Rules(max_age=10 * S, forget_after=30 * S, retry=5 * S,
                                       discover=False, default_port=80, max_ready=0,
                                       require_signature=False, signature_window=10.0,
                                       capacity=4, outlier=outlier))
        self.registry.set_static([MemberSettings(address=parse_endpoint(a))
                                  for a in ADDRESSES], now=T0)
        self.now = 5_000.0
        self.beat()
        record = table.workers.record(0)
        record.claim(1, 1)
        record.set_state(STATE_READY)
        self.upstreams = Upstreams(table, record.words)
        self.upstreams.clock = lambda: self.now
        if detect:
            self.upstreams.detector = Detector(outlier)
        self.upstreams.on_eject = self.eject

    def beat(self) -> None:
        """Every member reports ready 8, busy 0 (the bad one too: its heartbeat lies)."""
        for address in ADDRESSES:
            self.registry.apply(parse_ip(address.split(":")[0]), Heartbeat(8, 0, None),
                                self.ns if hasattr(self, "now") else T0, 0.0)
        self.publish()

    def close(self) -> None:
        pass  # the table releases its records' views when it closes

    def publish(self) -> None:
        for slot, member in self.registry.take_dirty():
            self.table.write_member(slot, member)
        self.table.bump_generation()

    def eject(self, target: Target, cause: int) -> None:
        """The master's side of an "eject" report."""
        groups = [list(self.registry.members.values())]
        self.registry.eject(target.slot, target.uid, cause, self.ns, groups)
        self.publish()

    @property
    def ns(self) -> int:
        return T0 + int((self.now - 5_000.0) * S)

    def serve(self, requests: int, held: int = 0) -> Counter[int]:
        """`requests` requests, one every millisecond; healthy members keep `held` requests
        of this front in flight (slow real work), the bad one answers 500 at once."""
        picks: Counter[int] = Counter()
        in_flight: list[Target] = []
        for _ in range(requests):
            self.now += 0.001
            target = self.upstreams.choose()
            assert isinstance(target, Target)
            picks[target.slot] += 1
            if target.slot == BAD:
                self.upstreams.finished(target, 500)
                self.upstreams.observe(target, 1)  # FAILED_STATUS
                continue
            in_flight.append(target)
            while len(in_flight) > held:
                done = in_flight.pop(0)
                self.upstreams.finished(done, 200)
                self.upstreams.observe(done, 0)  # OK
        return picks


@pytest.fixture
def table():
    t = Table.create(4, 2, master_pid=940_000 + os.getpid() % 1000)
    yield t
    t.unlink()
    t.close()


@pytest.fixture
def fronts(table):
    made: list[Front] = []
    yield lambda detect: made.append(Front(table, detect)) or made[-1]
    for front in made:
        front.close()


def test_without_detection_the_failing_member_takes_more_than_its_share(fronts) -> None:
    picks = fronts(False).serve(3000, held=6)
    assert picks[BAD] / 3000 > 0.40, picks  # more than its third: the in-flight correction


def test_with_detection_its_share_falls_to_zero_within_a_few_requests(fronts) -> None:
    front = fronts(True)
    first = front.serve(100, held=6)
    assert front.registry.members[BAD].reason == EJECTED
    assert first[BAD] == OutlierSettings().consecutive_5xx  # exactly the run that trips it
    later = front.serve(3000, held=6)
    assert later[BAD] == 0, later


def test_after_the_ejection_it_ramps_back(fronts) -> None:
    front = fronts(True)
    front.serve(100)
    front.now += OutlierSettings().eject_time + 0.5  # the ejection is over
    front.beat()
    front.registry.expire(front.ns)
    front.publish()
    weights = [front.table.weight_word(slot) & 0xFFFFFFFF for slot in range(3)]
    assert 0 < weights[BAD] < weights[0], weights  # slow start: a small weight first


def test_a_member_with_a_probe_in_flight_is_passed_by_while_others_can_serve(fronts) -> None:
    """hbfork.core.reopen: the member closed a kept connection and this worker is dialling it
    again; until that probe ends, its picks go to the others (and to it when none other can)."""
    front = fronts(False)
    up = front.upstreams
    up.refresh()  # the members known (a slot that changes member forgets its marks)
    up.reopening.closed(BAD, now=front.now)
    assert up.reopening.dialled(BAD, now=front.now)
    picked = Counter()
    for _ in range(300):
        target = up.choose()
        assert isinstance(target, Target)
        picked[target.slot] += 1
        up.finished(target, 200)
    assert picked[BAD] == 0 and sum(picked.values()) == 300, picked
    only_bad = up.choose(excluded={0, 1})
    assert isinstance(only_bad, Target) and only_bad.slot == BAD  # nobody else: it after all
    up.finished(only_bad, 200)
    up.reopening.over(BAD, answered=True)
    picked.clear()
    for _ in range(300):
        target = up.choose()
        assert isinstance(target, Target)
        picked[target.slot] += 1
        up.finished(target, 200)
    assert picked[BAD] > 50, picked  # its third again, about
