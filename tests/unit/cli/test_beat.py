"""hbfork.beat_cli.parse_load: the load a probe URL or a command reports."""

from __future__ import annotations

import pytest

from hbfork.cli.beat import parse_load
from hbfork.core.heartbeat import INT32_MAX


@pytest.mark.parametrize(("text", "expected"), [
    ('{"ready": 5, "busy": 2}', (5, 2)),
    ('{"ready": 5}', (5, 0)),
    ('  {"busy": 1, "ready": 0, "extra": "ignored"}\n', (0, 1)),
    (f'{{"ready": {INT32_MAX}, "busy": {INT32_MAX}}}', (INT32_MAX, INT32_MAX)),
    ("5 2", (5, 2)),
    ("5", (5, 0)),
    (" 7\t3\n", (7, 3)),
    ("0 0", (0, 0)),
    (f"{INT32_MAX} 0", (INT32_MAX, 0)),
])
def test_accepted(text: str, expected: tuple[int, int]) -> None:
    assert parse_load(text) == expected


@pytest.mark.parametrize("text", [
    "-1 0",
    "1 -1",
    '{"ready": -1}',
    '{"ready": 1, "busy": -3}',
    '{"ready": true}',
    '{"ready": 1, "busy": false}',
    '{"ready": 1.5}',
    '{"ready": "5"}',
    '{"ready": 1, "busy": null}',
    f"{INT32_MAX + 1} 0",
    f'{{"ready": {INT32_MAX + 1}}}',
    "1 2 3",
    "1 2 3 4",
    "",
    "   ",
    "a b",
    "1.5 2",
    "{not json",
])
def test_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_load(text)


def test_json_without_ready_is_an_error() -> None:
    with pytest.raises((ValueError, KeyError)):
        parse_load('{"busy": 1}')
