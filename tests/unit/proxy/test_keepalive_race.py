"""The keep-alive race on both HTTP paths (hbfork.core.retry.race_goes_elsewhere): a pooled
connection the member closes after taking the request, without a byte of answer (as a member
stopping gracefully does), sends an idempotent request to another member when the pool has
one, else to the same member on a fresh connection; a sticky session's request stays with its
member. None of it is a failure of the member for the outlier detector."""

from __future__ import annotations

import socket

import pytest

from hbfork.core.outlier import GATEWAY
from hbfork.proxy.http.session import HttpSession
from tests.unit.proxy.fakes import FakeContext, Reader, member

GET = b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

pytestmark = pytest.mark.usefixtures("both_http_paths")


class Members:
    """The member side: answers each complete request on a connection, except that the
    `drop`-th request head seen (1 = the first) is read and its connection closed."""

    def __init__(self, ctx: FakeContext, drop: int = 0) -> None:
        self.ctx, self.drop = ctx, drop
        self.seen: list[tuple[int, bytes]] = []     # (slot, request head) in order
        self.readers: dict[int, Reader] = {}

    def __call__(self) -> None:
        for slot, m in self.ctx.members.items():
            for peer in m.peers:
                if peer.fileno() < 0:
                    continue
                reader = self.readers.setdefault(id(peer), Reader(peer))
                data = reader.poll()
                if b"\r\n\r\n" not in data:
                    continue
                reader.data = bytearray(data.split(b"\r\n\r\n", 1)[1])
                self.seen.append((slot, data))
                if len(self.seen) == self.drop:
                    peer.close()  # took the request, answers nothing: it is stopping
                else:
                    peer.sendall(OK)


def run(ctx: FakeContext, drop: int, requests: int, headers: bytes = b"") -> Members:
    ours, client = socket.socketpair()
    ours.setblocking(False)
    HttpSession(ctx, ours, "198.51.100.7")
    reply = Reader(client)
    members = Members(ctx, drop)
    request = GET.replace(b"\r\n\r\n", b"\r\n" + headers + b"\r\n\r\n") if headers else GET
    for n in range(1, requests + 1):
        client.sendall(request)
        ctx.run_until(lambda n=n: reply.poll().count(b"hello") == n, serve=members)
    return members


def test_the_race_sends_the_request_to_another_member() -> None:
    ctx = FakeContext([member(1), member(2)])
    members = run(ctx, drop=2, requests=2)
    # The second request took the pooled connection to 1, which closed it: 2 answered.
    assert [slot for slot, _ in members.seen] == [1, 1, 2]
    assert ctx.connects == [1, 2]
    assert ctx.done == [(200, 1), (200, 2)]
    assert ctx.upstreams.in_flight == {1: 0, 2: 0}
    assert (1, GATEWAY) not in ctx.upstreams.outcomes  # not a failure of the member


def test_with_no_other_member_it_goes_fresh_to_the_same_one() -> None:
    ctx = FakeContext([member(1)])
    members = run(ctx, drop=2, requests=2)
    assert [slot for slot, _ in members.seen] == [1, 1, 1]
    assert ctx.connects == [1, 1]
    assert ctx.done == [(200, 1), (200, 1)]


def test_with_no_retries_left_it_goes_fresh_to_the_same_one() -> None:
    ctx = FakeContext([member(1), member(2)], retries=0)
    members = run(ctx, drop=2, requests=2)
    assert ctx.connects == [1, 1] and [s for s, _ in members.seen] == [1, 1, 1]


def test_a_sticky_sessions_request_stays_with_its_member() -> None:
    extra = """
[[pool]]
name = "default"
stickysession = "JSESSIONID|jsessionid"
[[pool.member]]
address = "192.0.2.1:8080"
route = "n1"
[[pool.member]]
address = "192.0.2.2:8080"
route = "n2"
"""
    ctx = FakeContext([member(1), member(2)], extra)
    members = run(ctx, drop=2, requests=2, headers=b"Cookie: JSESSIONID=8C2A.n1")
    assert [slot for slot, _ in members.seen] == [1, 1, 1]
    assert ctx.connects == [1, 1]
