"""Percentiles, medians and the report's millisecond format."""

from __future__ import annotations

import math

from loadtest.bench.scenarios.runs import figures
from loadtest.bench.stats import fmt_ms, median, pct, spread


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
