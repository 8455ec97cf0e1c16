"""Small arithmetic the reports share: percentiles, medians, ranges, millisecond formats."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile of sorted `values` (nearest rank, rounding down); 0 when empty."""
    if not values:
        return 0.0
    return float(values[min(len(values) - 1, int(len(values) * p / 100))])


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return (median(values), min(values), max(values)) if values else (float("nan"),) * 3


def fmt_ms(value: float) -> str:
    """Milliseconds for a table: "-" for NaN, seconds from 1,000 ms, no decimals from 100."""
    if value != value:  # NaN
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"
