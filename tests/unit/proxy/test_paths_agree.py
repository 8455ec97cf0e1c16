"""Both HTTP paths, byte for byte: a corpus of requests and member responses goes through a
session with the fast path on and through one with it off, and the bytes the member and the
client receive must be the same. (The fast path forwards header names and the blanks around
values as received, where the general path normalises them: the corpus is spelled the way
both write, so any other difference is a bug.)

One difference is by design (hbfork.core.lean): a `Connection: keep-alive` on a connection that
stays open is passed on by the fast path (it is our own option too, and forwarding the head as
received is what makes the path fast), where the general path drops it. The cases that show it
say so, and the test checks that this line is the only difference.
"""

from __future__ import annotations

import socket

import pytest

from hbfork.proxy.http.session import HttpSession
from tests.unit.proxy.fakes import FakeContext, Reader, member

WARM = (b"GET /warm HTTP/1.1\r\nHost: front.example\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwarm")
BIG = b"y" * 300_000

KEEP_ALIVE = b"Connection: keep-alive\r\n"
# (name, request, member's answer, whether the fast path takes the exchange; a name ending in
#  "keep-alive" marks the one difference by design)
CORPUS = [
    ("plain get", b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", True),
    ("member keep-alive", b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello", True),
    ("query and fields", b"GET /a/b?c=d&e=%20 HTTP/1.1\r\nHost: front.example\r\n"
     b"User-Agent: corpus/1\r\nAccept: */*\r\nCookie: a=b\r\n\r\n",
     b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
     b"Set-Cookie: x=y\r\n\r\nnop", True),
    ("empty reason", b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok", True),
    ("keep-alive field", b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", True),
    ("member closes", b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True),
    ("client closes", b"GET /x HTTP/1.1\r\nHost: front.example\r\nConnection: close\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    ("client keep-alive", b"GET /x HTTP/1.1\r\nHost: front.example\r\n"
     b"Connection: keep-alive\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
    ("server error", b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops", True),
    ("large body", b"GET /big HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BIG) + BIG, True),
    ("head", b"HEAD /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", False),
    ("no content", b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 204 No Content\r\n\r\n", False),
    ("chunked", b"GET /x HTTP/1.1\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", False),
    ("post", b"POST /form HTTP/1.1\r\nHost: front.example\r\nContent-Length: 3\r\n\r\nabc",
     b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", False),
    ("http/1.0", b"GET /x HTTP/1.0\r\nHost: front.example\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    ("client's forwarded-for", b"GET /x HTTP/1.1\r\nHost: front.example\r\n"
     b"X-Forwarded-For: 203.0.113.9\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
]


class Recorder:
    """The member: keeps every byte it receives, answers each request head with the next
    answer (bodies are in the corpus's Content-Length requests only, and small)."""

    def __init__(self, ctx: FakeContext, *answers: bytes) -> None:
        self.ctx, self.answers = ctx, list(answers)
        self.got = b""
        self.heads = 0
        self.out = b""
        self.readers: dict[int, Reader] = {}

    def __call__(self) -> None:
        peers = self.ctx.members[1].peers
        for peer in peers:
            reader = self.readers.setdefault(id(peer), Reader(peer))
            self.got += reader.poll()
            reader.data = b""
        while self.got.count(b"\r\n\r\n") > self.heads and self.answers:
            self.heads += 1
            self.out += self.answers.pop(0)
        if self.out and peers:
            try:
                self.out = self.out[peers[-1].send(self.out):]
            except (BlockingIOError, OSError):
                pass


def run(fast: bool, request: bytes, answer: bytes) -> tuple[bytes, bytes, int]:
    """(what the member received, what the client received, exchanges on the fast path)."""
    ctx = FakeContext([member(1)], fast_path=fast)
    ours, client = socket.socketpair()
    ours.setblocking(False)
    HttpSession(ctx, ours, "198.51.100.7")
    reply = Reader(client)
    serve = Recorder(ctx, WARM[1], answer)
    client.sendall(WARM[0])
    ctx.run_until(lambda: reply.poll().endswith(b"warm"), serve=serve)
    mark, got = len(reply.data), len(serve.got)
    client.sendall(request)
    body = answer.partition(b"\r\n\r\n")[2]
    expected = len(answer) if not request.startswith(b"HEAD") else len(answer) - len(body)
    ctx.run_until(lambda: len(reply.poll()) - mark >= expected - 64 and
                  reply.data.endswith(body), serve=serve)
    for _ in range(3):  # anything more that would come
        ctx.loop.run_once(0.01)
        serve()
    received = reply.poll()[mark:]
    client.close()
    return serve.got[got:], received, ctx.counts.get("fast_path", 0)


@pytest.mark.parametrize(("name", "request_bytes", "answer", "fast"), CORPUS,
                         ids=[case[0] for case in CORPUS])
def test_both_paths_send_the_same_bytes(name: str, request_bytes: bytes, answer: bytes,
                                        fast: bool) -> None:
    member_fast, client_fast, taken = run(True, request_bytes, answer)
    member_general, client_general, _ = run(False, request_bytes, answer)
    assert taken == int(fast), "the corpus says which exchanges the fast path takes"
    if name.endswith("keep-alive"):  # the fast path passes the line on; nothing else differs
        assert KEEP_ALIVE in request_bytes + answer
        member_fast = member_fast.replace(KEEP_ALIVE, b"", 1)
        client_fast = client_fast.replace(KEEP_ALIVE, b"", 1)
    assert member_fast == member_general
    assert client_fast == client_general
