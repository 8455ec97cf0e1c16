"""Small arithmetic the reports share: percentiles, medians, ranges, millisecond formats."""

from __future__ import annotations

import random
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


def abba_ratio(a1: float, b1: float, b2: float, a2: float) -> float:
    """A over B in one ABBA block: (A1 + A2) / (B1 + B2). The block's order cancels a drift
    that is linear over the block (a machine warming or cooling)."""
    return (a1 + a2) / (b1 + b2)


def bootstrap_median(values: Sequence[float], level: float = 0.95, draws: int = 2000,
                     seed: int = 1) -> tuple[float, float]:
    """A percentile-bootstrap interval of the median of `values` (seeded: a report that is
    run twice on the same figures says the same)."""
    if not values:
        return float("nan"), float("nan")
    rnd = random.Random(seed)
    medians = sorted(statistics.median(rnd.choices(values, k=len(values)))
                     for _ in range(draws))
    tail = (1 - level) / 2
    return medians[int(draws * tail)], medians[min(draws - 1, int(draws * (1 - tail)))]
