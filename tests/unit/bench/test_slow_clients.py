"""bench-slow-clients' queue timeline (--trace): what a reader of the report sees."""

from __future__ import annotations

from loadtest.bench.scenarios.slow_clients import queue_timeline


def sample(t: float, queued: int, head_ms: float, inflight: tuple[int, int]) -> tuple:
    row = (0, 16 + queued, queued, head_ms, 0, ((inflight[0], 0), (inflight[1], 0)), 0)
    return (t, [row], [10, 10], [(10, 0), (10, 0)])


def test_the_timeline_shows_when_requests_waited_and_how_long() -> None:
    samples = [sample(100.0, 0, 0, (8, 8)), sample(100.1, 99, 480, (10, 10)),
               sample(100.3, 90, 680, (10, 10)), sample(100.7, 50, 1080, (10, 10)),
               sample(101.5, 0, 0, (9, 7))]
    text = queue_timeline(samples, 2.5)
    lines = text.splitlines()
    assert lines[0] == "  queue (normal clients from +2.5 s): last waiter seen +0.7 s"
    # a line per half second while anything waited: +0.1 s and +0.7 s, not +0.3 s
    assert len(lines) == 3
    assert "+ 0.1 s:   99 waiting, oldest     480 ms, in flight [10, 10]" in lines[1]
    assert "+ 0.7 s:   50 waiting" in lines[2]


def test_a_quiet_queue_and_no_samples_say_so() -> None:
    assert queue_timeline([sample(5.0, 0, 0, (1, 1)), sample(5.1, 0, 0, (1, 1))], 1.0) \
        .endswith("nothing waited")
    assert queue_timeline([], 1.0) == "  queue: no samples"
