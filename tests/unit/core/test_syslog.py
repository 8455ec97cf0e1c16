"""hbfork.core.syslog: log destinations and RFC 5424 framing."""

from __future__ import annotations

import re
import time

import pytest

from hbfork.core.syslog import (
    FACILITIES,
    MAX_MESSAGE,
    Framer,
    is_syslog,
    log_destination,
    parse_destination,
    parse_message,
    timestamp,
)

# RFC 5424's HEADER: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD
RFC5424 = re.compile(rb"<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d) "
                     rb"([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) - (.*)",
                     re.DOTALL)


@pytest.mark.parametrize(("text", "shown"), [
    ("syslog:udp://127.0.0.1:5514", "syslog:udp://127.0.0.1:5514"),
    ("syslog:udp://127.0.0.1", "syslog:udp://127.0.0.1:514"),
    ("syslog:udp://[::1]:600", "syslog:udp://[::1]:600"),
    ("syslog:udp://::1", "syslog:udp://[::1]:514"),
    ("syslog:unix:/dev/log", "syslog:unix:/dev/log"),
])
def test_destinations(text, shown):
    assert str(parse_destination(text)) == shown
    assert is_syslog(text) and log_destination(text) == text


@pytest.mark.parametrize(("text", "problem"), [
    ("syslog:udp://localhost:514", "not an IP address"),
    ("syslog:udp://", "no address"),
    ("syslog:udp://127.0.0.1:0", "port"),
    ("syslog:tcp://127.0.0.1", "expected syslog:udp"),
    ("syslog:unix:dev/log", "absolute"),
    ("syslog:", "expected syslog:udp"),
])
def test_bad_destinations(text, problem):
    with pytest.raises(ValueError, match=problem):
        log_destination(text)


def test_files_are_not_syslog():
    assert not is_syslog("/var/log/hbfork/access.log") and not is_syslog(None)
    assert log_destination("access.log") == "access.log" and log_destination("") is None


def test_frame_is_rfc5424():
    framer = Framer(FACILITIES["local7"], "front 1", "hbfork", 4242, "access")
    data = framer.frame(6, '127.0.0.1 - - "GET / HTTP/1.1" 200 5\n', 1796630400.5)
    match = RFC5424.fullmatch(data)
    assert match, data
    assert int(match.group(1)) == 23 * 8 + 6
    assert match.group(3) == b"front1"  # no spaces in HOSTNAME
    assert match.group(4, 5, 6) == (b"hbfork", b"4242", b"access")
    assert match.group(7) == b'127.0.0.1 - - "GET / HTTP/1.1" 200 5'
    assert parse_message(data)["message"] == '127.0.0.1 - - "GET / HTTP/1.1" 200 5'


def test_timestamp_has_microseconds_and_offset(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert timestamp(1796630400.25) == "2026-12-07T09:00:00.250000+01:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_long_messages_are_cut_and_utf8():
    framer = Framer(FACILITIES["user"], "h", "hbfork", 1, "access")
    data = framer.frame(6, "é" * MAX_MESSAGE, 0.0)
    assert data.startswith(b"<14>1 ") and len(data.split(b" - ", 1)[1]) == MAX_MESSAGE
    assert "é".encode() in data


def test_parse_message_refuses_other_text():
    for data in (b"hello", b"<13>Dec  7 10:00:00 host app: legacy"):
        with pytest.raises(ValueError):
            parse_message(data)
