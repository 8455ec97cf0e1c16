"""Active health checks, the pure part: settings, request bytes, verdicts, the count."""

from __future__ import annotations

import random

import pytest

from hbfork.core import hcheck
from hbfork.core.hcheck import (
    R_BODY,
    R_CLOSED,
    R_MALFORMED,
    R_PASSED,
    R_STATUS,
    CheckState,
    HcheckSettings,
    ResponseReader,
    Verdict,
)
from hbfork.core.values import BadSetting, build

GET_OK = HcheckSettings(hcmethod="get", hcexpect_body="OK")
HEAD = HcheckSettings(hcmethod="head", hcuri="/health")


def judge(settings: HcheckSettings, *pieces: bytes) -> Verdict | None:
    reader = ResponseReader(settings)
    verdict = None
    for piece in pieces:
        verdict = reader.feed(piece)
        if verdict is not None:
            return verdict
    return verdict


@pytest.mark.parametrize("table, key, problem", [
    ({"hcmethod": "PUT"}, "hcmethod", "expected one of"),
    ({"hcuri": "health"}, "hcuri", "starting with /"),
    ({"hcuri": "/a b"}, "hcuri", "no spaces"),
    ({"hcinterval": 0.01}, "hcinterval", "at least 0.1"),
    ({"hcinterval": "5"}, "hcinterval", "seconds"),
    ({"hcpasses": 0}, "hcpasses", "from 1 to 1000"),
    ({"hcfails": True}, "hcfails", "integer"),
    ({"hctimeout": 0}, "hctimeout", "more than 0"),
    ({"hcexpect_status": ["2xx"]}, "hcexpect_status", "range like"),
    ({"hcexpect_body": "a\nb"}, "hcexpect_body", "one line"),
])
def test_bad_settings_name_the_key_and_the_problem(table, key, problem):
    with pytest.raises(BadSetting) as err:
        build(HcheckSettings, table)
    assert err.value.key == key and problem in err.value.problem


def test_settings_defaults_and_parsing():
    default = HcheckSettings()
    assert not default.enabled and default.hcuri == "/" and default.hcinterval == 10
    assert 200 in default.hcexpect_status and 399 in default.hcexpect_status
    assert 400 not in default.hcexpect_status
    parsed = build(HcheckSettings, {"hcmethod": "GET", "hcexpect_status": [200, "301-302"]})
    assert parsed.hcmethod == "get" and parsed.hcexpect_status == (200, 301, 302)
    assert parsed.label == "GET /" and HcheckSettings(hcmethod="tcp").label == "TCP connect"


def test_problems_across_keys():
    assert hcheck.problem(HcheckSettings(hcmethod="head", hcexpect_body="x"), False)[0] == \
        "hcexpect_body"
    assert hcheck.problem(HEAD, ajp=True)[0] == "hcmethod"  # HTTP to an AJP port
    assert hcheck.problem(HcheckSettings(hcmethod="tcp"), ajp=True) is None
    assert hcheck.problem(HcheckSettings(hcmethod="cping"), ajp=True) is None
    assert hcheck.problem(HcheckSettings(hcmethod="cping"), ajp=False)[0] == "hcmethod"
    assert hcheck.problem(GET_OK, False) is None


@pytest.mark.parametrize(("chunks", "passed", "result"), [
    ([b"AB\x00\x01\x09"], True, hcheck.R_PASSED),
    ([b"AB", b"\x00\x01", b"\x09"], True, hcheck.R_PASSED),    # in pieces
    ([b"AB\x00\x01", b""], False, hcheck.R_MALFORMED),         # closed half way
    ([b""], False, hcheck.R_CLOSED),                            # closed at once
    ([b"HTTP/1.1 400 Bad Request\r\n"], False, hcheck.R_MALFORMED),  # not AJP
    ([b"AB\x00\x02\x04\x00"], False, hcheck.R_MALFORMED),       # some other packet
])
def test_a_cping_passes_only_with_its_cpong(chunks, passed, result):
    settings = HcheckSettings(hcmethod="cping")
    assert hcheck.request(settings, "10.0.0.1:8009") == b"\x12\x34\x00\x01\x0a"
    assert settings.label == "AJP CPING"
    reader = hcheck.reader(settings)
    verdicts = [reader.feed(chunk) for chunk in chunks]
    assert all(v is None for v in verdicts[:-1])
    assert verdicts[-1] == hcheck.Verdict(passed, result)


def test_request_bytes():
    assert hcheck.request(HcheckSettings(hcmethod="tcp"), "10.0.0.1:80") == b""
    data = hcheck.request(HEAD, "10.0.0.1:8080")
    assert data.startswith(b"HEAD /health HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n")
    assert b"Connection: close\r\n" in data and data.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("settings, pieces, expected", [
    (HEAD, [b"HTTP/1.1 200 OK\r\n\r\n"], Verdict(True, R_PASSED, 200)),
    (HEAD, [b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n"], Verdict(True, R_PASSED, 302)),
    (HcheckSettings(hcmethod="head", hcexpect_status=(200,)),
     [b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n"], Verdict(False, R_STATUS, 302)),
    (HEAD, [b"HTTP/1.1 500 Oops\r\n\r\n"], Verdict(False, R_STATUS, 500)),
    (HEAD, [b"HTTP/1.0 204\r\n\r\n"], Verdict(True, R_PASSED, 204)),
    (HEAD, [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"], Verdict(True, R_PASSED, 200)),
    (HEAD, [b"HTTP/1.1 2", b"00 OK\r", b"\n\r\n"], Verdict(True, R_PASSED, 200)),
    (HEAD, [b""], Verdict(False, R_CLOSED)),
    (HEAD, [b"HTTP/1.1 200 OK\r\n", b""], Verdict(False, R_MALFORMED)),
    (HEAD, [b"SSH-2.0-OpenSSH\r\n\r\n"], Verdict(False, R_MALFORMED)),
    (HEAD, [b"x" * (hcheck.MAX_HEAD + 1)], Verdict(False, R_MALFORMED)),
    (GET_OK, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"], Verdict(True, R_PASSED, 200)),
    (GET_OK, [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", b"ab", b"OK"],
     Verdict(True, R_PASSED, 200)),
    (GET_OK, [b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nFAIL"], Verdict(False, R_BODY, 200)),
    (GET_OK, [b"HTTP/1.1 200 OK\r\n\r\nno", b""], Verdict(False, R_BODY, 200)),
    (GET_OK, [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nO\r\n1\r\nK\r\n"],
     Verdict(True, R_PASSED, 200)),
    (GET_OK, [b"HTTP/1.1 503 No\r\nContent-Length: 2\r\n\r\nOK"], Verdict(False, R_STATUS, 503)),
])
def test_verdicts(settings, pieces, expected):
    assert judge(settings, *pieces) == expected


def test_a_huge_body_without_the_text_fails_without_reading_it_all():
    reader = ResponseReader(GET_OK)
    assert reader.feed(b"HTTP/1.1 200 OK\r\n\r\n") is None
    verdict = None
    for _ in range(100):
        verdict = reader.feed(b"x" * 8192)
        if verdict:
            break
    assert verdict == Verdict(False, R_BODY, 200) and len(reader.body) <= 2 * hcheck.MAX_BODY


def test_fuzz_the_reader_never_raises_and_end_of_input_always_judges():
    rng = random.Random(23)
    pieces = [b"HTTP/1.1 ", b"200", b" OK", b"\r\n", b"\r\n\r\n", b"Content-Length: 3",
              b"Transfer-Encoding: chunked", b"OK", b"\x00\xff", b"5\r\n", b"0\r\n\r\n", b"\n"]
    for _ in range(3000):
        settings = rng.choice([HEAD, GET_OK])
        reader = ResponseReader(settings)
        for _ in range(rng.randrange(8)):
            reader.feed(rng.choice(pieces))
        assert isinstance(reader.feed(b""), Verdict)


@pytest.mark.parametrize("passes, fails, results, flips, failing", [
    # hcfails 1, hcpasses 1: one failure out, one pass back
    (1, 1, "F", [True], True),
    (1, 1, "FP", [True, True], False),
    # hcfails 3: two failures are not enough, a pass resets the run
    (1, 3, "FFPFF", [False] * 5, False),
    (1, 3, "FFF", [False, False, True], True),
    # hcpasses 2: back only after two passes in a row
    (2, 1, "FPFPP", [True, False, False, False, True], False),
    (2, 1, "FPP", [True, False, True], False),
    # passing members stay passing; starts passing
    (1, 1, "PPP", [False] * 3, False),
])
def test_the_count(passes, fails, results, flips, failing):
    settings = HcheckSettings(hcmethod="head", hcpasses=passes, hcfails=fails)
    state = CheckState()
    seen = []
    for now, r in enumerate(results, 1):
        verdict = Verdict(True, R_PASSED, 200) if r == "P" else Verdict(False, R_STATUS, 500)
        seen.append(state.record(verdict, settings, now * hcheck.NS))
    assert seen == flips and state.failing is failing
    assert state.at == len(results) * hcheck.NS


def test_summary_shows_the_failing_check_else_the_latest():
    a, b = CheckState(passes=3, at=5), CheckState(fails=2, failing=True, at=1, result=R_STATUS,
                                                   status=500)
    assert hcheck.summarize([]) == hcheck.NO_SUMMARY
    summary = hcheck.summarize([a, b])
    assert summary.failing and summary.status == 500 and summary.fails == 2
    summary = hcheck.summarize([a, CheckState(passes=1, at=2)])
    assert summary.state == hcheck.CHECK_PASSING and summary.passes == 3


def test_first_checks_are_spread_but_soon():
    dues = {hcheck.first_due(0, 10.0, f"10.0.0.{i}:80") for i in range(50)}
    assert len(dues) > 10 and max(dues) <= hcheck.STAGGER * hcheck.NS
    assert hcheck.first_due(0, 0.5, "x") <= 0.5 * hcheck.NS


@pytest.mark.parametrize("result, status, words", [
    (R_PASSED, 200, "passed (200)"), (R_STATUS, 500, "answered 500"),
    (hcheck.R_TIMEOUT, 0, "timed out"), (hcheck.R_REFUSED, 0, "connect refused"),
    (R_BODY, 200, "without the expected text"),
])
def test_describe(result, status, words):
    assert words in hcheck.describe(result, status)


# --- in a config file

BASE = """
[proxy]
listen = ["127.0.0.1:8080"]
[heartbeat]
listen = "127.0.0.1:27999"
[[pool]]
name = "app"
"""


def test_pool_keys_and_a_member_override():
    from hbfork.core.config import describe, loads

    config = loads(BASE + 'hcmethod = "GET"\nhcuri = "/health"\nhcexpect_body = "OK"\n'
                   '[[pool.member]]\naddress = "127.0.0.2:80"\n'
                   '[[pool.member]]\naddress = "127.0.0.3:80"\nhcfails = 3\n', "hb.toml")
    pool = config.pools[0]
    assert pool.hcheck == HcheckSettings(hcmethod="get", hcuri="/health", hcexpect_body="OK")
    first, second = pool.members
    assert pool.check_of(first) is pool.hcheck and first.hcheck is None
    # A member's own keys are laid over the pool's.
    assert pool.check_of(second).hcfails == 3 and pool.check_of(second).hcuri == "/health"
    assert "checks GET /health every 10s" in describe(config)


def test_checks_are_off_until_configured():
    from hbfork.core.config import loads

    config = loads(BASE + 'members = ["127.0.0.2:80"]\n', "hb.toml")
    assert not config.pools[0].hcheck.enabled


@pytest.mark.parametrize("text, where, problem", [
    ('hcmetod = "get"\nmembers = ["127.0.0.2:80"]', "[[pool]] #1 hcmetod",
     "did you mean 'hcmethod'"),
    ('hcmethod = "head"\nhcexpect_body = "x"\nmembers = ["127.0.0.2:80"]',
     "[[pool]] 'app' hcexpect_body", "needs hcmethod = \"get\""),
    ('hcmethod = "cping"\nmembers = ["127.0.0.2:80"]', "[[pool]] 'app' hcmethod",
     'needs a pool with protocol = "ajp"'),
    ('[[pool.member]]\naddress = "127.0.0.2:80"\nhcpasses = 0',
     "[[pool]] 'app' member #1 hcpasses", "from 1 to 1000"),
    ('hcexpect_status = ["600"]\nmembers = ["127.0.0.2:80"]', "[[pool]] #1 hcexpect_status",
     "100 to 599"),
])
def test_config_errors_name_file_key_and_problem(text, where, problem):
    from hbfork.core.config import loads
    from hbfork.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        loads(BASE + text + "\n", "hb.toml")
    message = str(err.value)
    assert message.startswith("hb.toml: ") and where in message and problem in message
