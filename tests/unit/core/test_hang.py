"""hbfork.core.hang: the no-answer rule, table-driven, with a fake clock."""

from __future__ import annotations

import pytest

from hbfork.core.hang import AnswerClock, Reports, Seen, judge, limit_for, median_usual
from hbfork.core.outlier import OutlierSettings

S = OutlierSettings()  # no_answer_after 0.5 s, factor 10, min pending 3
T = 1000.0


def pool(*members: tuple[int, float, float]) -> list[Seen]:
    """(pending, silent, usual) per member, slots 0, 1, 2, ..."""
    return [Seen(slot, pending, silent, usual)
            for slot, (pending, silent, usual) in enumerate(members)]


CASES = [
    # name, members (pending, silent s, usual s), silent slots -> limit
    ("hung member among answering ones",
     pool((8, 0.6, 0.002), (4, 0.01, 0.002), (4, 0.0, 0.002)), {0: 0.5}),
    ("not silent long enough yet",
     pool((8, 0.45, 0.002), (4, 0.01, 0.002), (4, 0.0, 0.002)), {}),
    ("silent but too few requests in flight (a lone slow request on a quiet member)",
     pool((2, 5.0, 0.002), (4, 0.01, 0.002)), {}),
    ("merely slow: 5x slower, still finishing answers",
     pool((8, 0.02, 0.010), (4, 0.002, 0.002), (4, 0.001, 0.002)), {}),
    ("slow pool: the limit grows with the pool's median response time",
     pool((8, 0.75, 0.080), (4, 0.1, 0.080), (4, 0.05, 0.080)), {}),
    ("slow pool, silent past 10x its median",
     pool((8, 0.81, 0.080), (4, 0.1, 0.080), (4, 0.05, 0.080)), {0: pytest.approx(0.8)}),
    ("a member slow by nature gets its own, longer limit",
     pool((8, 1.5, 0.200), (4, 0.01, 0.002), (4, 0.0, 0.002)), {}),
    ("... and is silent past it",
     pool((8, 2.1, 0.200), (4, 0.01, 0.002), (4, 0.0, 0.002)), {0: pytest.approx(2.0)}),
    ("everybody silent (the database behind them all is down): nobody is judged",
     pool((8, 3.0, 0.002), (8, 3.0, 0.002), (8, 2.9, 0.002)), {}),
    ("two of three silent: both judged (the master's cap decides how many go)",
     pool((8, 0.7, 0.002), (8, 0.9, 0.002), (4, 0.0, 0.002)), {0: 0.5, 1: 0.5}),
    ("a pool of one: nothing to compare with",
     pool((8, 9.0, 0.002)), {}),
    ("a member that never answered this worker (warming up, or hung from its start)",
     pool((8, 3.0, 0.0), (4, 0.0, 0.002)), {}),
    ("the others' times unknown: the floor",
     pool((3, 0.5, 0.001), (1, 0.1, 0.0)), {0: 0.5}),
    ("the other member answered, but longer ago than the limit, and holds requests",
     pool((8, 0.6, 0.002), (4, 0.55, 0.002)), {}),
    ("closed-loop clients all stuck on the silent member: the others idle, not failing",
     pool((8, 0.6, 0.002), (0, 0.6, 0.002), (0, 0.58, 0.002)), {0: 0.5}),
    ("an idle member that last answered before the silent one did is no evidence",
     pool((8, 0.6, 0.002), (0, 5.0, 0.002)), {}),
    ("every member holding requests and silent: none judged",
     pool((8, 0.6, 0.002), (1, 0.6, 0.002), (2, 0.6, 0.002)), {}),
]


@pytest.mark.parametrize(("name", "members", "expected"), CASES, ids=[c[0] for c in CASES])
def test_judge(name, members, expected):
    assert judge(members, S) == expected


def test_off_switches():
    hung = pool((8, 5.0, 0.002), (4, 0.0, 0.002))
    assert judge(hung, S) == {0: 0.5}
    assert judge(hung, OutlierSettings(no_answer_after=0)) == {}
    assert judge(hung, OutlierSettings(enabled=False)) == {}
    assert judge(hung, OutlierSettings(no_answer_min_pending=9)) == {}


def test_limit_and_median():
    assert limit_for(0.0, 0.0, S) == 0.5
    assert limit_for(0.1, 0.02, S) == pytest.approx(1.0)
    assert limit_for(0.01, 0.2, S) == pytest.approx(2.0)
    assert median_usual(pool((1, 0, 0.0), (1, 0, 0.3), (1, 0, 0.1), (1, 0, 0.2))) == 0.2
    assert median_usual(pool((1, 0, 0.0))) == 0.0


def test_answer_clock_measures_silence_from_the_last_change():
    clock = AnswerClock()
    assert clock.silent(3, 7, 100, T) == 0.0           # first look: just answered
    assert clock.silent(3, 7, 100, T + 0.3) == pytest.approx(0.3)
    assert clock.silent(3, 7, 101, T + 0.4) == 0.0     # it finished one
    assert clock.silent(3, 7, 101, T + 1.0) == pytest.approx(0.6)
    assert clock.silent(3, 8, 101, T + 1.1) == 0.0     # a new member in the slot
    clock.keep({4})
    assert clock.silent(3, 8, 101, T + 5.0) == 0.0     # forgotten: starts afresh


def test_reports_are_quiet_for_a_second_per_member():
    reports = Reports(quiet=1.0)
    assert reports.due(1, 5, T)
    assert not reports.due(1, 5, T + 0.5)
    assert reports.due(2, 5, T + 0.5)        # another member
    assert reports.due(1, 6, T + 0.5)        # a new member in the slot
    assert reports.due(1, 5, T + 1.0)


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("no_answer_after", -1, "seconds"),
    ("no_answer_after", "fast", "number of seconds"),
    ("no_answer_factor", 0.5, "from 1 to 1000"),
    ("no_answer_min_pending", 0, "from 1 to"),
])
def test_bad_settings_are_refused(key, value, problem):
    from hbfork.core.values import BadSetting, build
    with pytest.raises(BadSetting, match=problem):
        build(OutlierSettings, {key: value})


def test_members_that_hung_milliseconds_apart_judge_none() -> None:
    """Every application hung at one moment: the last to go quiet (5 ms after the first) is
    no sign that the pool still answers."""
    settings = OutlierSettings()
    limit = limit_for(0.01, 0.01, settings)
    members = [Seen(slot, pending=4, silent=limit - slot * 0.005, usual=0.01)
               for slot in range(3)]
    assert judge(members, settings) == {}
