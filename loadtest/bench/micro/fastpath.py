"""Micro-benchmarks behind docs/fast-path-notes.md: what each fast-path idea saves per request.

A measurement, not a test: best of --repeat timeit runs, µs per operation, on this machine, now.
1. Parsing and rewriting heads: core.http11 (today) against micro/fastpath_proto.py (a
   lean prototype that forwards the head mostly as received), on the request wrk sends, a
   browser-like request and nginx's response; then the prototype's safety checks: every
   request-smuggling case of tests/unit/core/test_http11.py must go to the full parser, and
   random mutations the prototype accepts must mean the same to the full parser.
2. Buffers: bytearray `+=` / `bytes(buf[:end])` / `del buf[:n]` staging as the session does it,
   against taking the head from the recv_into buffer directly.
3. Writes: send(head) + send(body) vs send(head + body) vs sendmsg([head, body]), on a socket pair.
4. Loop bookkeeping: a Python method call, Loop.set_timer (moved later), Loop.set_mask (no
   change), time.monotonic().
5. The user-space work of one whole common exchange on such a fast path (no syscalls): the
   floor a fast path's Python could reach, to set against today's user CPU per request.

    ./scripts/bench-fastpath [--number 20000] [--repeat 5] [--fuzz 20000]
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import socket
import sys
import time
import timeit
from bisect import bisect_left
from types import ModuleType

from hbfork.core import http11, http_heads
from hbfork.core.errors import ProtocolError
from hbfork.proxy.loop import READ, Loop
from loadtest.bench import tools
from loadtest.bench.micro.fastpath_proto import lean_request, lean_response
from loadtest.bench.paths import ROOT

WRK = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:41234\r\n\r\n"
BROWSER = (b"GET /articles/2026/12/fast-path?ref=home HTTP/1.1\r\nHost: www.example.test\r\n"
           b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
           b"\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
           b"Accept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
           b"Referer: https://www.example.test/\r\nConnection: keep-alive\r\n"
           b"Cookie: session=8f3a9c2e1b7d4f60; theme=dark; consent=1\r\n"
           b"Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n"
           b"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\n\r\n")
NGINX = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 03 Dec 2026 09:10:00 GMT\r\n"
         b"Content-Type: text/html\r\nContent-Length: 612\r\n"
         b"Last-Modified: Thu, 03 Dec 2026 09:00:00 GMT\r\nConnection: keep-alive\r\n"
         b'ETag: "692f6f30-264"\r\nAccept-Ranges: bytes\r\n\r\n')
LIMITS = http11.Limits()


def best(stmt: str, scope: dict, number: int, repeat: int) -> float:
    """µs per run of `stmt`, best of `repeat`."""
    return min(timeit.repeat(stmt, globals=scope, number=number, repeat=repeat)) / number * 1e6


def heads(args: argparse.Namespace) -> None:
    print("1. heads, µs per call (find_head + parse + rewrite):")
    scope = {"http11": http11, "http_heads": http_heads, "LIMITS": LIMITS,
             "lean_request": lean_request,
             "lean_response": lean_response}
    for name, head in (("wrk request", WRK), ("browser request", BROWSER)):
        scope["head"] = head
        today = best("r = http11.parse_request_head(head, LIMITS); "
                     "http11.find_head(head, 0, 8192, 16384); "
                     "http_heads.request_head_for_member(r, '127.0.0.1', True)", scope,
                     **vars_(args))
        lean = best("http11.find_head(head, 0, 8192, 16384); lean_request(head, b'127.0.0.1')",
                    scope, **vars_(args))
        print(f"   {name:<18} today {today:6.2f}   lean {lean:6.2f}   saves {today - lean:5.2f}")
    scope["head"] = NGINX
    today = best("r = http11.parse_response_head(head, b'GET'); "
                 "http11.find_head(head, 0, 65536, 65536, request=False); "
                 "http_heads.response_head_for_client(r, True, False, 11)", scope, **vars_(args))
    lean = best("http11.find_head(head, 0, 65536, 65536, request=False); "
                "lean_response(head, True)", scope, **vars_(args))
    print(f"   {'nginx response':<18} today {today:6.2f}   lean {lean:6.2f}   "
          f"saves {today - lean:5.2f}")
    for stage, stmt in (("find_head (request)", "http11.find_head(head, 0, 8192, 16384)"),
                        ("parse_request_head", "http11.parse_request_head(head, LIMITS)")):
        scope["head"] = WRK
        print(f"   of which {stage:<22} {best(stmt, scope, **vars_(args)):6.2f}")
    scope["head"] = NGINX
    response = best("http11.parse_response_head(head, b'GET')", scope, **vars_(args))
    print(f"   of which {'parse_response_head':<22} {response:6.2f}")


def vars_(args: argparse.Namespace) -> dict[str, int]:
    return {"number": args.number, "repeat": args.repeat}


def equivalent(head: bytes) -> bool:
    """The lean result agrees with the full parser on `head` (or defers to it)."""
    lean = lean_request(head, b"192.0.2.1")
    if lean is None:
        return True
    try:
        full = http11.parse_request_head(head, LIMITS)
    except ProtocolError:
        return False  # the prototype accepted what the full parser refuses
    method, target, host, length, keep_alive, forward = lean
    if (method, target, host, length, keep_alive) != (
            full.method, full.target, full.host, full.content_length, full.keep_alive):
        return False
    today = http_heads.request_head_for_member(full, "192.0.2.1", True)
    fields = {(lower, value) for _, lower, value in http11.parse_request_head(
        forward, LIMITS).headers}
    return fields == {(lower, value) for _, lower, value in http11.parse_request_head(
        today, LIMITS).headers}


def _http11_tests() -> ModuleType:
    """tests/unit/core/test_http11.py, loaded from its file: the smuggling corpus lives with
    the parser's tests, and `tests` is not an installed package."""
    path = ROOT / "tests" / "unit" / "core" / "test_http11.py"
    spec = importlib.util.spec_from_file_location("_bench_test_http11", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def safety(args: argparse.Namespace) -> None:
    corpus = _http11_tests()
    SMUGGLING, with_headers = corpus.SMUGGLING, corpus.with_headers

    deferred = sum(lean_request(with_headers(b"Host: x", *lines, start=b"GET /"), b"1") is None
                   for lines in SMUGGLING.values())
    print(f"   smuggling corpus: {deferred} of {len(SMUGGLING)} cases go to the full parser")
    rng = random.Random(14)
    alphabet = b"\r\n :,\t\x00\x7fAaZz09-" + b"chunked" + b"content-length" + b"host"
    accepted = disagree = 0
    for _ in range(args.fuzz):
        head = bytearray(rng.choice((WRK, BROWSER)))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(head) - 4)
            if rng.random() < 0.5:
                head[at:at + rng.randint(0, 3)] = bytes(rng.choice(alphabet)
                                                        for _ in range(rng.randint(0, 3)))
            else:
                line = rng.choice((b"Content-Length: 5", b"Content-Length: 5, 5",
                                   b"Transfer-Encoding: chunked", b"Host: other",
                                   b"Connection: close", b"Connection: content-length",
                                   b"X-Forwarded-For: 1.2.3.4", b"Expect: 100-continue"))
                head[at:at] = b"\r\n" + line
        raw = bytes(head)
        try:
            end = http11.find_head(raw, 0, 8192, 16384)
        except ProtocolError:
            continue
        if end <= 0:
            continue
        accepted += lean_request(raw[:end], b"1") is not None
        disagree += not equivalent(raw[:end])
    print(f"   fuzz: {args.fuzz} mutated heads, {accepted} taken by the lean parser, "
          f"{disagree} where it disagrees with the full parser")


def buffers(args: argparse.Namespace) -> None:
    print("2. buffers, µs per request head (the wrk request, arriving in one read):")
    scope = {"buf": memoryview(bytearray(256 * 1024)), "n": len(WRK)}
    scope["buf"][:len(WRK)] = WRK
    staged = best("inbuf = bytearray(); inbuf += buf[:n]; end = inbuf.find(b'\\r\\n\\r\\n') + 4;"
                  " head = bytes(inbuf[:end]); del inbuf[:end]", scope, **vars_(args))
    direct = best("end = buf.obj.find(b'\\r\\n\\r\\n', 0, n) + 4; head = bytes(buf[:end])",
                  scope, **vars_(args))
    print(f"   today's staging in inbuf {staged:.2f}, head straight from the buffer {direct:.2f}")
    scope.update(data=NGINX + b"x" * 612)
    out = best("out = bytearray(); out += data; del out[:len(data)]", scope, **vars_(args))
    print(f"   queueing a response in client_out and deleting what was sent: {out:.2f} "
          "(a direct send skips it)")


def writes(args: argparse.Namespace) -> None:
    print("3. writes to a socket pair (drained between calls), µs per response:")
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    scope = {"a": a, "b": b, "head": NGINX, "body": memoryview(b"x" * 612), "sink": bytearray(
        1 << 16)}
    for name, stmt in (("send(head); send(body)", "a.send(head); a.send(body)"),
                       ("send(head + body)", "a.send(head + body)"),
                       ("sendmsg([head, body])", "a.sendmsg([head, body])"),
                       ("(the drain alone)", "a.send(b'x')")):
        # one recv_into takes everything queued: the drain costs the same in every line
        print(f"   {name:<24}{best(stmt + '; b.recv_into(sink)', scope, **vars_(args)):6.2f}")
    a.close()
    b.close()


def bookkeeping(args: argparse.Namespace) -> None:
    print("4. bookkeeping, µs per call:")

    class Obj:
        def method(self) -> None:
            pass

    loop = Loop()
    timer = loop.timer(lambda now: None)
    loop.set_timer(timer, time.monotonic() + 100)
    a, b = socket.socketpair()
    loop.add(a.fileno(), READ, lambda mask: None)
    scope = {"o": Obj(), "loop": loop, "timer": timer, "fd": a.fileno(), "READ": READ,
             "time": time}
    for name, stmt in (("a Python method call", "o.method()"),
                       ("Loop.set_timer, moved later", "loop.set_timer(timer, loop.now + 200)"),
                       ("Loop.set_mask, unchanged", "loop.set_mask(fd, READ)"),
                       ("time.monotonic()", "time.monotonic()")):
        print(f"   {name:<30}{best(stmt, scope, **vars_(args)):6.3f}")
    loop.close()
    a.close()
    b.close()


class _Exchange:
    """The state a fast-path exchange needs: a few slots, no per-request objects."""

    __slots__ = ("keep_alive", "length", "member", "status", "target")


def lean_exchange(buffer: memoryview, n: int, response: memoryview, m: int, cumulative: list,
                  counters: list, loop: Loop, timer: object, ex: _Exchange) -> tuple:
    """User-space work of one common exchange on a fast path, without the syscalls: the
    request head found in the receive buffer, parsed lean, a member picked, the response head
    found, parsed lean, head and body handed to one sendmsg, counters and one timer updated."""
    raw = buffer.obj
    end = raw.find(b"\r\n\r\n", 0, n) + 4
    request = lean_request(bytes(buffer[:end]), b"127.0.0.1")
    ex.target, ex.keep_alive = request[1], request[4]
    ex.member = bisect_left(cumulative, random.random() * cumulative[-1])
    counters[ex.member] += 1
    to_member = request[5]
    raw = response.obj
    end = raw.find(b"\r\n\r\n", 0, m) + 4
    answer = lean_response(bytes(response[:end]), ex.keep_alive)
    ex.status, ex.length = answer[0], answer[1]
    to_client = [answer[3], response[end:end + ex.length]]
    counters[2] += 1
    counters[3] += m
    loop.set_timer(timer, loop.now + 15)
    return to_member, to_client


def exchange(args: argparse.Namespace) -> None:
    print("5. one whole common exchange in user space (no syscalls), µs:")
    buffer = memoryview(bytearray(256 * 1024))
    buffer[:len(WRK)] = WRK
    response = memoryview(bytearray(256 * 1024))
    answer = NGINX + b"x" * 612
    response[:len(answer)] = answer
    loop = Loop()
    scope = {"lean_exchange": lean_exchange, "buffer": buffer, "n": len(WRK),
             "response": response, "m": len(answer), "cumulative": [100, 200],
             "counters": [0] * 8, "loop": loop, "timer": loop.timer(lambda now: None),
             "ex": _Exchange()}
    stmt = "lean_exchange(buffer, n, response, m, cumulative, counters, loop, timer, ex)"
    print(f"   lean exchange (wrk request, nginx response) {best(stmt, scope, **vars_(args)):6.2f}"
          "   (today's user CPU per request: see scripts/profile-http)")
    loop.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-fastpath",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fuzz", type=int, default=20000)
    args = parser.parse_args(argv)
    tools.require("scripts/bench-fastpath", "wrk", "nginx")
    heads(args)
    safety(args)
    buffers(args)
    writes(args)
    bookkeeping(args)
    exchange(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
