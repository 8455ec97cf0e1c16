"""Header rules and request IDs in a session (hbfork.proxy.http.headers), on both HTTP paths:
what the member and the client receive, in the order the levels apply, the `always` rules on
the proxy's own answers, and IDs made, passed through from trusted clients and replaced from
others. Each test runs with the fast path on and off; with it on, the second request of each
test is the fast path's (counted)."""

from __future__ import annotations

import re
import socket

import pytest

from hbfork.proxy.http.session import HttpSession
from tests.unit.proxy.fakes import FakeContext, Reader, member
from tests.unit.proxy.test_fast_path import Member, exchange

pytestmark = pytest.mark.usefixtures("both_http_paths")

GET = b"GET /app/x HTTP/1.1\r\nHost: front.example\r\nX-Drop: 1\r\n\r\n"
OK = (b"HTTP/1.1 200 OK\r\nServer: member/1\r\nCache-Control: private\r\nContent-Length: 5"
      b"\r\n\r\nhello")
NO_IDS = "\n[request_id]\nheader = ''\n"  # (extra text starts inside [http])
RULES = """
request_headers = ['set X-Level http', 'unset X-Drop']
response_headers = ['unset Server', 'always set X-Frame-Options DENY']
[[pool]]
name = 'app'
members = ['{member}']
request_headers = ['set X-Level pool', 'add X-Pool app']
response_headers = ['append Cache-Control no-store']
[[route]]
path = '/app'
pool = 'app'
request_headers = ['append X-Level route']
response_headers = ['set X-Route app', 'edit Cache-Control ^private public']
[[route]]
path = '/closed'
pass = false
""".replace("'", '"')


def ctx_with(extra: str) -> FakeContext:
    m = member(1)
    return FakeContext([m], extra.replace("{member}", m.target.address))


def open_session(ctx: FakeContext, ip: str) -> tuple[HttpSession, socket.socket, Reader]:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    return HttpSession(ctx, ours, ip), client, Reader(client)


def two_requests(ctx: FakeContext, request: bytes, answer: bytes, ip: str = "198.51.100.7"
                 ) -> tuple[Member, list[bytes]]:
    """The same request twice on one connection (the second may take the fast path)."""
    _, client, reply = open_session(ctx, ip)
    serve = Member(ctx, 1, answer, answer)
    answers = [exchange(ctx, client, reply, serve, request, b"hello") for _ in range(2)]
    return serve, answers


def fields(head: bytes) -> list[tuple[str, str]]:
    lines = head.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    return [(n.decode(), v.strip().decode()) for n, _, v in (x.partition(b":") for x in lines)]


def test_request_and_response_rules_apply_in_level_order(both_http_paths: bool) -> None:
    ctx = ctx_with(RULES + NO_IDS)
    serve, answers = two_requests(ctx, GET, OK)
    if both_http_paths:
        assert ctx.counts["fast_path"] == 1  # rules keep the second request on the fast path
    for got in serve.got:
        sent = fields(got)
        assert ("X-Drop", "1") not in sent
        # [http] set, the pool's set overrides it, the route's append has the last word
        assert [v for n, v in sent if n == "X-Level"] == ["pool, route"]
        assert ("X-Pool", "app") in sent
        assert ("X-Forwarded-For", "198.51.100.7") in sent  # hbfork's own, after the rules
    for answer in answers:
        got = fields(answer)
        assert "Server" not in dict(got)
        assert ("X-Frame-Options", "DENY") in got
        assert ("Cache-Control", "public, no-store") in got  # pool's append, route's edit
        assert ("X-Route", "app") in got
        assert answer.endswith(b"\r\n\r\nhello")
    assert serve.got[0] == serve.got[1] and answers[0] == answers[1]


def test_always_rules_reach_the_proxys_own_answers_and_the_others_do_not(
        both_http_paths: bool) -> None:
    ctx = ctx_with(RULES + NO_IDS)
    session, client, reply = open_session(ctx, "198.51.100.7")
    client.sendall(b"GET /closed HTTP/1.1\r\nHost: front.example\r\n\r\n")
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll())
    got = fields(reply.data)
    assert reply.data.startswith(b"HTTP/1.1 404")
    assert ("X-Frame-Options", "DENY") in got  # always
    assert "X-Route" not in dict(got) and "Cache-Control" in dict(got)  # not always: untouched
    assert not session.closed


IDS = "\n[request_id]\nenabled = true\ntrusted = ['10.0.0.0/8']\n".replace("'", '"')
PLAIN = (b"GET /x HTTP/1.1\r\nHost: front.example\r\n"
         b"traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n")
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def ids_of(heads: list[bytes], name: str = "X-Request-ID") -> list[str]:
    return [v for head in heads for n, v in fields(head) if n == name]


def test_an_id_is_made_for_each_request_and_sent_back(both_http_paths: bool) -> None:
    ctx = ctx_with(IDS)
    serve, answers = two_requests(ctx, PLAIN, ANSWER)
    sent = ids_of(serve.got)
    assert len(sent) == 2 and sent[0] != sent[1]
    assert all(re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", value) for value in sent)
    assert ids_of(answers) == sent
    # traceparent goes on unchanged
    assert ids_of(serve.got, "traceparent") == [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"] * 2
    if both_http_paths:
        assert ctx.counts["fast_path"] == 1
    assert ctx.request_ids == [v.encode() for v in sent]


OFFERED = b"GET /x HTTP/1.1\r\nHost: front.example\r\nX-Request-ID: abc-123\r\n\r\n"


@pytest.mark.parametrize(("ip", "kept"), [("10.1.2.3", True), ("198.51.100.7", False)])
def test_a_clients_id_is_kept_only_from_a_trusted_address(both_http_paths: bool, ip: str,
                                                          kept: bool) -> None:
    ctx = ctx_with(IDS)
    serve, answers = two_requests(ctx, OFFERED, ANSWER, ip)
    sent = ids_of(serve.got)
    assert len(sent) == 2  # one field, never the client's and ours
    assert (sent == ["abc-123"] * 2) is kept
    assert ids_of(answers) == sent


def test_ids_switched_off_add_nothing(both_http_paths: bool) -> None:
    ctx = ctx_with(NO_IDS)
    serve, answers = two_requests(ctx, OFFERED, ANSWER, "198.51.100.7")
    assert ids_of(serve.got) == ["abc-123"] * 2  # an ordinary field: passed on
    assert ids_of(answers) == []


def test_both_paths_send_the_same_bytes_with_rules_and_ids(monkeypatch: pytest.MonkeyPatch,
                                                           both_http_paths: bool) -> None:
    """The same exchanges through a session with the fast path on and one with it off: with
    rules and IDs the member and the client get the same bytes (the IDs masked)."""
    request = (b"GET /app/x?y=1 HTTP/1.1\r\nHost: front.example\r\nX-Drop: 1\r\n"
               b"Accept: */*\r\nX-Request-ID: client-chosen\r\n\r\n")
    answer = (b"HTTP/1.1 200 OK\r\nServer: member/1\r\nCache-Control: private\r\n"
              b"Connection: keep-alive\r\nContent-Length: 5\r\n\r\nhello")
    seen = {}
    for fast in (True, False):
        monkeypatch.setattr(FakeContext, "defaults", {"fast_path": fast})
        ctx = ctx_with(RULES + IDS)
        serve, answers = two_requests(ctx, request, answer, "10.9.9.9")
        if fast:
            assert ctx.counts["fast_path"] == 1
        mask = re.compile(rb"X-Request-ID: [^\r]+")
        seen[fast] = [mask.sub(b"X-Request-ID: *", data) for data in [*serve.got, *answers]]
    assert seen[True] == seen[False]
    assert b"X-Request-ID: *" in seen[True][1] and b"X-Drop" not in seen[True][1]


def test_a_redirect_to_https_meets_the_always_rules_and_carries_the_id() -> None:
    from hbfork.core.tls_settings import ListenSettings
    ctx = ctx_with(RULES + IDS)
    ours, client = socket.socketpair()
    ours.setblocking(False)
    HttpSession(ctx, ours, "198.51.100.7", ListenSettings(redirect_https=True))
    reply = Reader(client)
    client.sendall(b"GET /app/x HTTP/1.1\r\nHost: front.example\r\n\r\n")
    ctx.run_until(lambda: b"\r\n\r\n" in reply.poll())
    got = dict(fields(reply.data))
    assert reply.data.startswith(b"HTTP/1.1 301")
    assert got["Location"] == "https://front.example/app/x"
    assert got["X-Frame-Options"] == "DENY" and "X-Route" not in got
    assert re.fullmatch(r"[0-9a-f]{12}-1", got["X-Request-ID"])
