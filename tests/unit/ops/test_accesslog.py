"""hbfork.ops.accesslog and log_sinks: the lines each format writes for a request or a TCP
connection, written to a file by the writer thread, and bounded when the writer falls behind."""

from __future__ import annotations

import json
import re
import socket
import threading

from hbfork.core.http11 import Limits, parse_request_head, parse_response_head
from hbfork.core.lean import LeanCache
from hbfork.ops import log_sinks
from hbfork.ops.accesslog import AccessLog
from hbfork.proxy.http.exchange import Exchange
from hbfork.proxy.targets import Target

HEAD = (b"GET /a?b=1 HTTP/1.1\r\nHost: shop.example:8443\r\nUser-Agent: t/1\r\n"
        b"X-Request-ID: r-7\r\nCookie: sid=s1\r\n\r\n")
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend: m1\r\n\r\n"


def _target() -> Target:
    return Target(1, 1, socket.AF_INET, ("10.0.0.1", 8080), "m1", 0)


def _exchange(lean: bool = False) -> Exchange:
    ex = Exchange("192.0.2.9", exchange_started=100.0, member_started=100.001,
                  bytes_to_client=2, keep_alive=True)
    if lean:  # as the fast path leaves it: lean parses, the heads as received
        request, _ = LeanCache(8192).request(HEAD)  # type: ignore[misc]
        ex.request, ex.lean_head = request, HEAD
        ex.response, ex.lean_response = LeanCache(8192).response(RESPONSE, False)[0], RESPONSE  # type: ignore[index]
    else:
        ex.request = parse_request_head(HEAD, Limits())
        ex.response = parse_response_head(RESPONSE, b"GET")
    return ex


def _written(tmp_path, kind: str, fields: tuple[str, ...] = (), lean: bool = False,
             status: int = 200) -> str:
    path = tmp_path / "a.log"
    log = AccessLog(str(path), kind, fields, port=8080)
    log.request(_exchange(lean), status, _target(), 100.0125)
    log.close()
    return path.read_text()


def test_combined_plus_is_unchanged(tmp_path):
    line = _written(tmp_path, "combined+")
    assert re.fullmatch(r'192\.0\.2\.9 - - \[[^]]+\] "GET /a\?b=1 HTTP/1\.1" 200 2 "-" "t/1" '
                        r"member=10\.0\.0\.1:8080 upstream=0\.011500 total=0\.012500\n", line)


def test_logformat_on_both_paths(tmp_path):
    fmt = "%a %v %p %{X-Request-ID}i %{X-Backend}o %{sid}C %{BALANCER_WORKER_NAME}e %D %>s"
    for lean in (False, True):
        assert _written(tmp_path, fmt, lean=lean).endswith(
            "192.0.2.9 shop.example 8443 r-7 m1 s1 http://10.0.0.1:8080 12500 200\n")


def test_json_with_chosen_fields(tmp_path):
    record = json.loads(_written(tmp_path, "json", ("client", "host", "query", "member_name",
                                                     "keep_alive", "status")))
    assert record == {"client": "192.0.2.9", "host": "shop.example", "query": "b=1",
                      "member_name": "m1", "keep_alive": True, "status": 200}


def test_outcome_of_a_slow_client(tmp_path):
    """How an exchange ended (a slow-client cut-off) is a JSON field and %{outcome}e; "-" /
    null when it ended plainly."""
    path = tmp_path / "a.log"
    for kind, fields in (("json", ("status", "outcome")), ("%>s %{outcome}e", ())):
        log = AccessLog(str(path), kind, fields)
        for outcome in ("slow_reader", ""):
            ex = _exchange()
            ex.outcome = outcome
            log.request(ex, 200, _target(), 100.5)
        log.close()
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines[:2]] == [
        {"status": 200, "outcome": "slow_reader"}, {"status": 200, "outcome": None}]
    assert lines[2:] == ["200 slow_reader", "200 -"]


def test_own_answer_without_a_request_head(tmp_path):
    path = tmp_path / "a.log"
    log = AccessLog(str(path), '%h "%r" %>s %{BALANCER_WORKER_NAME}e %U')
    log.request(Exchange("192.0.2.9"), 408, None, 0.0)
    log.close()
    assert path.read_text() == '192.0.2.9 "-" 408 - -\n'


TCP = {"client": "192.0.2.9", "peer": "192.0.2.9", "member": "10.0.0.1:8080",
       "member_name": "m1", "bytes_in": 10, "bytes_out": 200, "bytes": 200,
       "total_seconds": 1.5, "outcome": "closed", "status": 0, "started": 1796630400.0}


def test_tcp_lines(tmp_path):
    path = tmp_path / "t.log"
    for kind in ("combined+", "json", "%h %I %O %{member}e %T %{outcome}e"):
        log = AccessLog(str(path), kind)
        log.connection(dict(TCP))
        log.close()
    text, record, fmt = path.read_text().splitlines()
    assert re.fullmatch(r'192\.0\.2\.9 - - \[[^]]+\] "TCP" closed member=10\.0\.0\.1:8080 '
                        r"in=10 out=200 total=1\.500000", text)
    assert json.loads(record)["outcome"] == "closed"
    assert fmt == "192.0.2.9 10 200 10.0.0.1:8080 1 closed"


class _Stuck:
    """A sink whose writes wait until released: the writer thread falls behind."""

    name = "stuck"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lines: list[str] = []

    def write(self, lines: list[str], epoch: float) -> None:
        self.release.wait(10)
        self.lines += lines

    def reopen(self) -> None: ...
    def close(self) -> None: ...


def test_a_stalled_writer_drops_batches_instead_of_growing(monkeypatch):
    monkeypatch.setattr(log_sinks, "MAX_BATCHES", 4)
    sink = _Stuck()
    writer = log_sinks.Writer(sink)
    for n in range(20):
        writer.put([f"{n}\n"])  # never blocks
    assert writer.dropped >= 20 - 4 - 1
    sink.release.set()
    writer.close()
    assert len(sink.lines) + writer.dropped == 20
