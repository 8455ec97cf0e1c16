"""hbfork.core.reopen: a member that closed a kept connection is re-dialled one probe at a
time; a probe's answer ends it, a failed probe leaves the next dial a probe too."""

from __future__ import annotations

from hbfork.core.reopen import RECENT, Reopening


def test_a_dial_to_a_member_that_closed_nothing_is_no_probe() -> None:
    marks = Reopening()
    assert not marks.dialled(3, now=10.0)
    assert marks.avoid == set()


def test_after_a_close_the_next_dial_probes_and_picks_avoid_the_member_until_it_answers() -> None:
    marks = Reopening()
    marks.closed(3, now=10.0)
    assert marks.avoid == set()  # a close alone does not keep the member from picks
    assert marks.dialled(3, now=10.1)
    assert marks.avoid == {3}
    marks.over(3, answered=True)
    assert marks.avoid == set()
    assert not marks.dialled(3, now=10.2)  # it answered on a new connection: no mark left


def test_a_probe_that_got_no_answer_leaves_the_next_dial_a_probe() -> None:
    marks = Reopening()
    marks.closed(5, now=1.0)
    assert marks.dialled(5, now=1.0)
    marks.over(5, answered=False)  # reset, refused, timed out
    assert marks.avoid == set()
    assert marks.dialled(5, now=2.0)
    assert marks.avoid == {5}


def test_the_member_is_avoided_until_its_last_probe_ends() -> None:
    marks = Reopening()
    marks.closed(1, now=0.0)
    assert marks.dialled(1, now=0.0)
    assert marks.dialled(1, now=0.0)  # a second request had been picked before the first dial
    marks.over(1, answered=False)
    assert marks.avoid == {1}
    marks.over(1, answered=False)
    assert marks.avoid == set()


def test_an_old_close_makes_no_probe() -> None:
    marks = Reopening()
    marks.closed(2, now=0.0)
    assert not marks.dialled(2, now=RECENT + 0.1)
    assert not marks.dialled(2, now=RECENT + 0.2)
    assert marks.avoid == set()


def test_a_slot_given_to_another_member_is_forgotten() -> None:
    marks = Reopening()
    marks.closed(4, now=0.0)
    assert marks.dialled(4, now=0.0)
    marks.forget(4)
    assert marks.avoid == set()
    assert not marks.dialled(4, now=0.1)
    marks.over(4, answered=False)  # the old probe ending later does no harm
    assert marks.avoid == set()
