"""Percentiles, medians and the report's millisecond format."""

from __future__ import annotations

import math

from loadtest.bench.scenarios.runs import figures
from loadtest.bench.stats import abba_ratio, bootstrap_median, fmt_ms, median, pct, spread


def test_pct_is_nearest_rank_rounding_down() -> None:
    values = list(range(1, 101))          # 1..100
    assert pct(values, 50) == 51.0        # index int(100 * 0.5) = 50
    assert pct(values, 99) == 100.0
    assert pct(values, 99.9) == 100.0     # capped at the last one
    assert pct([], 99) == 0.0


def test_median_and_spread_of_nothing_are_nan() -> None:
    assert math.isnan(median([]))
    assert all(math.isnan(v) for v in spread([]))
    assert spread([3.0, 1.0, 2.0]) == (2.0, 1.0, 3.0)


def test_fmt_ms() -> None:
    assert fmt_ms(float("nan")) == "-"
    assert fmt_ms(0.25) == "0.2"
    assert fmt_ms(99.96) == "100.0"
    assert fmt_ms(100) == "100"
    assert fmt_ms(1234) == "1.23 s"


def test_openloop_figures_count_failures_and_non_2xx_as_errors() -> None:
    raw = {"sent": 6, "seconds": 2.0, "last_ok_s": 2.5,
           "latency_ms": [5.0, 1.0, 2.0, 3.0, 4.0, 10_000.0],
           "status": {"200": 4, "503": 1}, "errors": {"timeout": 1},
           "error_times": [(1.5, "timeout"), (0.5, "HTTP 503")],
           "backends": {"b": 1, "a": 3}, "lag_ms": {"p99": 0.5}, "client_queued": 0,
           "most_connections": 3}
    out = figures(raw)
    assert out["ok"] == 4 and out["errors"] == 2
    assert out["error_kinds"] == {"timeout": 1, "HTTP 503": 1}
    assert out["goodput"] == 4 / 2.5      # answers after the last arrival still count
    assert out["shares"] == {"a": 0.75, "b": 0.25}
    assert out["p50"] == 4.0 and out["max"] == 10_000.0
    assert out["first_error_at"] == 0.5
    assert figures({"failed": "boom"}) == {"failed": "boom"}


def test_an_abba_block_cancels_a_linear_drift() -> None:
    # A and B equal, the machine 10 % slower at each step: A1 B1 B2 A2 = 100 110 120 130.
    assert abba_ratio(100, 110, 120, 130) == 1.0
    assert abba_ratio(90, 100, 100, 90) == 0.9


def test_the_bootstrap_interval_holds_the_median_and_narrows_with_more_blocks() -> None:
    few = [0.90, 1.00, 1.10, 0.95, 1.05]
    low, high = bootstrap_median(few)
    assert low <= median(few) <= high and low >= min(few) and high <= max(few)
    many = few * 8
    many_low, many_high = bootstrap_median(many)
    assert many_high - many_low < high - low
    assert bootstrap_median(many) == (many_low, many_high)  # seeded: the same report twice
    assert all(math.isnan(x) for x in bootstrap_median([]))  # nothing to say
