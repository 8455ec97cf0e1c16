"""The worker's epoll loop on real pipes: dispatch, deadlines, and containment of bugs."""

from __future__ import annotations

import os

from hbfork.proxy.loop import READ, Loop


class Owner:
    def __init__(self, loop: Loop, fd: int) -> None:
        self.loop, self.fd = loop, fd
        self.closed = False
        self.timer = loop.timer(self.on_deadline)
        self.fired = 0
        loop.add(fd, READ, self.on_readable)

    def on_readable(self, mask: int) -> None:
        raise RuntimeError("a bug in one connection")

    def on_deadline(self, now: float) -> None:
        self.fired += 1

    def close(self) -> None:
        self.closed = True
        self.loop.remove(self.fd)


def test_a_failing_handler_closes_its_owner_and_the_loop_goes_on():
    loop = Loop()
    bad_r, bad_w = os.pipe()
    good_r, good_w = os.pipe()
    seen = []
    try:
        owner = Owner(loop, bad_r)
        loop.add(good_r, READ, lambda mask: seen.append(os.read(good_r, 10)))
        os.write(bad_w, b"x")
        os.write(good_w, b"y")
        loop.run_once(1.0)
        assert owner.closed
        assert seen == [b"y"]
        assert bad_r not in loop.handlers
    finally:
        for fd in (bad_r, bad_w, good_r, good_w):
            os.close(fd)
        loop.close()


def test_timers_fire_once_and_move_later_for_free():
    loop = Loop()
    r, w = os.pipe()
    try:
        owner = Owner(loop, r)
        loop.set_timer(owner.timer, loop.now + 0.01)
        loop.set_timer(owner.timer, loop.now + 0.03)  # later: no new heap entry needed
        assert len(loop._heap) == 1
        while owner.fired == 0:
            loop.run_once(0.05)
        assert owner.fired == 1 and owner.timer.when is None
        loop.run_once(0.05)
        assert owner.fired == 1
    finally:
        os.close(r)
        os.close(w)
        loop.close()


def test_heap_stays_proportional_to_live_timers():
    # A keep-alive connection moves its timer earlier on every request; closed connections
    # cancel theirs. Neither may make the heap grow with the number of requests.
    loop = Loop()
    timers = [loop.timer(lambda now: None) for _ in range(100)]
    for request in range(5_000):
        for timer in timers[:10]:
            loop.set_timer(timer, loop.now + 60 - request * 0.001)  # earlier each time
        short = loop.timer(lambda now: None)
        loop.set_timer(short, loop.now + 30)
        loop.cancel(short)  # a connection that came and went
    assert len(loop._heap) <= 2 * 10 + 256 + 1
    fired = []
    keep = loop.timer(fired.append)
    loop.set_timer(keep, loop.now)
    loop.run_once(0.01)
    assert len(fired) == 1
    loop.close()


def test_an_event_for_a_closed_fd_never_reaches_a_socket_that_reused_its_number():
    loop = Loop()
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    calls = []
    new_fds = []

    def close_b_and_reuse(mask: int) -> None:
        calls.append("a")
        loop.remove(b_r)
        os.close(b_r)
        r, w = os.pipe()  # the lowest free number: b_r's
        new_fds.extend((r, w))
        loop.add(r, READ, lambda mask: calls.append("new"))

    try:
        loop.add(a_r, READ, close_b_and_reuse)
        loop.add(b_r, READ, lambda mask: calls.append("b"))
        os.write(a_w, b"x")
        os.write(b_w, b"y")  # b's event is in the same batch as a's
        loop.run_once(1.0)
        assert new_fds[0] == b_r  # the number really was reused
        assert calls == ["a"] or calls == ["b", "a"]  # never "new" for b's old event
    finally:
        for fd in (a_r, a_w, b_w, *new_fds):
            os.close(fd)
        loop.close()


def test_after_runs_once_the_handler_returns_before_the_next_event():
    loop = Loop()
    pipes = [os.pipe(), os.pipe()]
    order: list[str] = []

    def handler(name: str, fd: int):
        def on_readable(mask: int) -> None:
            os.read(fd, 10)
            order.append(name)
            loop.after(lambda: order.append(f"after {name}"))
        return on_readable

    try:
        for n, (r, w) in enumerate(pipes):
            loop.add(r, READ, handler(str(n), r))
            os.write(w, b"x")
        loop.run_once(1.0)   # both pipes are readable: one batch of two events
        assert order in (["0", "after 0", "1", "after 1"], ["1", "after 1", "0", "after 0"])
        timer = loop.timer(lambda now: loop.after(lambda: order.append("after timer")))
        loop.set_timer(timer, 0.0)
        loop.run_once(0.0)
        assert order[-1] == "after timer"
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)
