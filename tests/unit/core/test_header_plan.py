"""hbfork.core.header_plan and hbfork.core.request_id: the levels' order, rules on lean heads
agreeing with rules on field lists, the caches, and who may choose a request's ID."""

from __future__ import annotations

import ipaddress

import pytest

from hbfork.core.config import loads
from hbfork.core.header_plan import HeaderPlans, HeaderProgram, split_fields
from hbfork.core.header_rules import parse_rules
from hbfork.core.request_id import RequestIds, RequestIdSettings, trusted_peer
from hbfork.core.routes import compile_routes

CONFIG = """
[http]
request_headers = ["set X-L http"]
response_headers = ["set X-R http", "always set X-A http"]
[[listen]]
address = "127.0.0.1:8080"
request_headers = ["append X-L listen"]
[[pool]]
name = "default"
members = ["127.0.0.1:9"]
request_headers = ["append X-L pool"]
[[route]]
path = "/r"
pool = "default"
request_headers = ["append X-L route"]
response_headers = ["set X-R route"]
"""


def test_levels_apply_from_the_server_to_the_route() -> None:
    config = loads(CONFIG)
    plans = HeaderPlans(config)
    route = compile_routes(config.routes).routes[0]
    address = config.listens[0].address
    program = plans.program(address, route, "default")
    fields, _ = program.request_fields([])
    assert fields == [(b"X-L", b"x-l", b"http, listen, pool, route")]
    # the route's set replaces the server's field in place
    assert program.response_fields([]) == [(b"X-R", b"x-r", b"route"), (b"X-A", b"x-a", b"http")]
    assert plans.program(address, route, "default") is program  # compiled once
    other = plans.program(None, None, "default")  # [proxy] listen, no route
    assert other.request_fields([])[0][0][2] == b"http, pool"
    assert [r.value for r in other.always] == [b"http"]
    assert plans.active


def test_no_rules_and_no_ids_is_inactive() -> None:
    assert not HeaderPlans(loads('[[member]]\naddress = "127.0.0.1:9"\n')).active


HEAD = b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: abc\r\nCookie: x=1\r\nX-Old: 1\r\n"


def test_lean_heads_and_field_lists_agree_and_repeat_from_the_cache() -> None:
    program = HeaderProgram(parse_rules(["unset X-Old", "add X-New 1"], False),
                            parse_rules(["unset Server"], True), b"x-request-id")
    head, offered = program.request_head(HEAD)
    assert offered == b"abc"
    assert head == b"GET / HTTP/1.1\r\nHost: a\r\nCookie: x=1\r\nX-New: 1\r\n"
    fields, offered2 = program.request_fields(split_fields(HEAD.split(b"\r\n", 1)[1]))
    assert offered2 == offered and head.endswith(b"".join(
        n + b": " + v + b"\r\n" for n, _, v in fields))
    assert program.request_head(HEAD)[0] is head  # remembered
    response = b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 0\r\n\r\n"
    assert program.response_head(response) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_an_own_answer_meets_only_always_rules() -> None:
    program = HeaderProgram((), parse_rules(["set X-A 1", "always set X-B 2"], True))
    answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
    assert program.own_answer(answer) == (b"HTTP/1.1 503 Service Unavailable\r\n"
                                          b"Content-Length: 4\r\nX-B: 2\r\n\r\nbusy")


NETS = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))


@pytest.mark.parametrize(("ip", "trusted"), [
    ("10.1.2.3", True), ("11.0.0.1", False), ("::ffff:10.0.0.1", True), ("2001:db8::1", True),
    ("::1", False), ("not an address", False),
])
def test_trusted_peer(ip: str, trusted: bool) -> None:
    assert trusted_peer(ip, NETS) is trusted


def test_ids_are_made_unless_a_trusted_client_offers_a_sane_one() -> None:
    ids = RequestIds(RequestIdSettings(trusted=NETS), b"0123456789ab")
    assert ids.decide(b"", "10.0.0.1") == b"0123456789ab-1"
    assert ids.decide(b"given", "10.0.0.1") == b"given"
    assert ids.decide(b"given", "192.0.2.1") == b"0123456789ab-2"
    assert ids.decide(b"two words", "10.0.0.1") == b"0123456789ab-3"  # not sane: replaced
    assert ids.decide(b"x" * 201, "10.0.0.1") == b"0123456789ab-4"
    untrusting = RequestIds(RequestIdSettings(), b"p")
    assert untrusting.decide(b"given", "10.0.0.1") == b"p-1"
    assert RequestIds(RequestIdSettings(header=""), b"p").lower == b""


def test_a_clients_id_does_not_defeat_the_cache() -> None:
    program = HeaderProgram(parse_rules(["add X-New 1"], False), (), b"x-request-id")
    heads = [HEAD.replace(b"abc", b"id-%d" % n) for n in range(3)]
    answers = [program.request_head(head) for head in heads]
    assert [offered for _, offered in answers] == [b"id-0", b"id-1", b"id-2"]
    assert len({head for head, _ in answers}) == 1
    assert len(program.requests) == 1  # remembered once, without the ID
    twice = b"GET / HTTP/1.1\r\nx-request-id: a\r\nHost: a\r\nX-REQUEST-ID: b\r\n"
    assert program.request_head(twice) == (b"GET / HTTP/1.1\r\nHost: a\r\nX-New: 1\r\n", b"a")


def test_caches_are_bounded() -> None:
    program = HeaderProgram((), parse_rules(["unset Server"], True), entries=4)
    for n in range(10):
        program.client_head(b"HTTP/1.1 200 OK\r\nDate: %d\r\n\r\n" % n)
        assert 1 <= len(program.responses) <= 4


def test_the_fast_paths_client_head_is_the_rules_without_hop_fields() -> None:
    program = HeaderProgram((), parse_rules(["unset Server", "set X-A 1"], True))
    head = (b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive\r\nKeep-Alive: t=5\r\n"
            b"Content-Length: 0\r\n\r\n")
    assert program.client_head(head) == b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: 1\r\n"
    assert program.client_head(head) is program.client_head(head)  # remembered
