"""The front-queue trace's summary (loadtest.bench.probes.queue_trace.summary), on samples
made by hand: hand-overs per worker, idle spans per member, frozen workers."""

from __future__ import annotations

from typing import Any

from loadtest.bench.probes.queue_trace import LONG_IDLE, summary


def sample(t: float, rows: list[tuple[Any, ...]], caps: tuple[int, ...] = (2,)) -> Any:
    return (t, rows, list(caps), [(0, 0)] * len(caps))


def row(index: int, queued: int, dequeued: int, in_flight: int, finished: int,
        handed: int = 0) -> tuple[Any, ...]:
    return (index, 4, queued, 1.0 if queued else 0.0, dequeued, ((in_flight, finished),),
            handed)


def test_hand_overs_are_counted_per_worker_from_the_deltas() -> None:
    samples = [sample(0.000, [row(0, 1, 0, 2, 0, handed=5), row(1, 1, 0, 0, 0)]),
               sample(0.002, [row(0, 1, 0, 2, 1, handed=7), row(1, 0, 1, 0, 0)])]
    out = summary(samples, ["m"])
    assert out["workers"]["0"]["handed_over"] == 2
    assert out["workers"]["1"]["handed_over"] == 0


def test_a_place_free_while_requests_wait_is_an_idle_span_until_taken() -> None:
    samples = [sample(0.000, [row(0, 1, 0, 2, 0)]),          # full
               sample(0.002, [row(0, 1, 0, 1, 1)])]          # one free, one waits
    samples += [sample(0.002 * n, [row(0, 1, 0, 1, n)]) for n in range(2, 10)]  # it runs
    samples += [sample(0.020, [row(0, 1, 1, 2, 10)]),        # taken
                sample(0.022, [row(0, 0, 1, 1, 11)])]        # free, but nobody waits
    member = summary(samples, ["m"])["members"]["m"]
    assert member["idle_spans"] == 1
    assert member["idle_span_max_ms"] == 18.0
    assert LONG_IDLE <= 0.018 and member["long_idle_spans"] == 1
    assert member["long_idle_frozen"] == 0    # requests finished during it


def test_a_span_across_a_gap_in_the_samples_is_not_counted() -> None:
    """The sampler itself did not run for 50 ms (a loaded machine): what the place did
    meanwhile is not known."""
    samples = [sample(0.002 * n, [row(0, 1, 0, 2, n)]) for n in range(5)]
    samples += [sample(0.010, [row(0, 1, 0, 1, 5)]),         # a place free, one waits
                sample(0.060, [row(0, 1, 1, 2, 30)])]        # 50 ms later: taken
    samples += [sample(0.060 + 0.002 * n, [row(0, 1, 1, 2, 30 + n)]) for n in range(1, 5)]
    member = summary(samples, ["m"])["members"]["m"]
    assert member["idle_spans"] == 0 and member["idle_span_max_ms"] == 0


def test_a_span_over_which_the_waiting_worker_did_nothing_is_frozen() -> None:
    samples = [sample(0.000, [row(0, 2, 0, 2, 0)]),
               sample(0.002, [row(0, 2, 0, 1, 1)])]          # freed; then nothing moves
    samples += [sample(0.002 * n, [row(0, 2, 0, 1, 1)]) for n in range(2, 15)]
    samples += [sample(0.030, [row(0, 1, 1, 2, 1)])]         # it ran again
    member = summary(samples, ["m"])["members"]["m"]
    assert member["long_idle_spans"] == 1 and member["long_idle_frozen"] == 1


def test_traces_from_before_the_hand_over_word_still_summarise() -> None:
    old = [(0.0, [(0, 4, 1, 1.0, 0, ((2, 0),))], [2]),
           (0.002, [(0, 4, 0, 0.0, 1, ((2, 1),))], [2])]
    out = summary(old, ["m"])    # type: ignore[arg-type]
    assert out["workers"]["0"]["handed_over"] == 0 and out["workers"]["0"]["dequeued"] == 1
