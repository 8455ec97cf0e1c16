"""`ctl drain-front [SECONDS]`: its argument, and the hand-over's timing."""

from __future__ import annotations

import re

import pytest

from hbfork.master.handover import Handover, parse_delay
from hbfork.table.layout import W_FRONT_DRAINING_NS


def test_the_delay_defaults_and_is_checked() -> None:
    assert parse_delay([], 5.0) == 5.0
    assert parse_delay(["0"], 5.0) == 0.0
    assert parse_delay(["2.5"], 5.0) == 2.5
    for words, message in ((["soon"], "expected seconds, got 'soon'"),
                           (["-1"], "seconds must be from 0 to 3600, got -1"),
                           (["1", "2"], "usage: drain-front [SECONDS]")):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_delay(words, 5.0)


class _Table:
    def __init__(self) -> None:
        self.headers: dict[int, int] = {}

    def set_header(self, index: int, value: int) -> None:
        self.headers[index] = value


def test_health_fails_first_and_the_listeners_close_once_after_the_delay() -> None:
    handover, table = Handover(), _Table()
    assert not handover.active and handover.timeout(0.0, 0.5) == 0.5
    reply = handover.begin(table, 3.0, 30.0)  # type: ignore[arg-type]
    assert reply.startswith("ok draining: /healthz fails now; listeners close in 3s")
    assert table.headers[W_FRONT_DRAINING_NS] > 0  # the flag /healthz reads is set at once
    start = handover.close_at - 3.0
    assert handover.begin(table, 9.0, 30.0).startswith("ok already draining")  # type: ignore
    assert not handover.due(start + 2.9)
    assert handover.timeout(start + 2.9, 0.5) == pytest.approx(0.1)
    assert handover.due(start + 3.0)
    assert not handover.due(start + 4.0)  # once
    assert handover.active  # health keeps failing until the master exits
