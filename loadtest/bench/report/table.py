"""scripts/bench: the runs of one benchmark grouped by (contender, kind, level), and issue 14's
must-hold table computed from them.

Every ratio is the median over rounds of the ratio of two runs of the same round, kind and
level (they ran seconds apart, so drift on a shared machine cancels); CPU per request is the
median over rounds of the front's own figure.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from loadtest.bench.kinds import KINDS

SMALL = "small"
CPU_BUDGET_US = 32.0


class Table:
    """Runs by (contender, kind, connections), each a dict of round -> run."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.by: dict[tuple[str, str, int], dict[int, dict[str, Any]]] = defaultdict(dict)
        for run in runs:
            key = (run["contender"], run.get("kind", SMALL), run["connections"])
            self.by[key][run["round"]] = run
        self.contenders = list(dict.fromkeys(run["contender"] for run in runs))
        self.kinds = list(dict.fromkeys(run.get("kind", SMALL) for run in runs))
        self.levels = sorted({run["connections"] for run in runs})

    def runs(self, name: str, kind: str, level: int) -> dict[int, dict[str, Any]]:
        return self.by.get((name, kind, level), {})

    def values(self, name: str, kind: str, level: int, key: str) -> list[float]:
        return [r[key] for r in self.runs(name, kind, level).values()
                if r.get(key) is not None]

    def median(self, name: str, kind: str, level: int, key: str) -> float | None:
        values = self.values(name, kind, level, key)
        return statistics.median(values) if values else None

    def ratio(self, name: str, reference: str, kind: str, level: int, key: str = "ok_rps"
              ) -> float | None:
        """Median over rounds of the same-round ratio."""
        mine, theirs = self.runs(name, kind, level), self.runs(reference, kind, level)
        ratios = [mine[r][key] / theirs[r][key] for r in mine
                  if r in theirs and mine[r].get(key) and theirs[r].get(key)]
        return statistics.median(ratios) if ratios else None

    def errors(self, name: str, kind: str, level: int) -> int:
        return sum(r.get("errors", 0) + r.get("non2xx", 0) + ("error" in r)
                   for r in self.runs(name, kind, level).values())

    def error_kinds(self, name: str, kind: str, level: int) -> str:
        kinds: dict[str, int] = defaultdict(int)
        for run in self.runs(name, kind, level).values():
            for what, count in (run.get("socket_errors") or {}).items():
                kinds[f"socket {what}"] += count
            kinds["non-2xx/3xx responses"] += run.get("non2xx", 0)
            kinds["wrk failed"] += "error" in run
        return ", ".join(f"{count:,} {what}" for what, count in kinds.items() if count)


@dataclass
class Check:
    """One line of the must-hold table."""

    requirement: str
    kind: str
    level: int
    figure: str          # what was measured, for the reader
    value: float | None  # what the goal is compared with (None: not measured)
    goal: float
    higher: bool         # met when value >= goal (else <= goal)

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.goal if self.higher else self.value <= self.goal

    @property
    def target(self) -> str:
        unit = " µs" if self.requirement.startswith("CPU") else "x"
        return f"{'≥' if self.higher else '≤'} {self.goal:g}{unit}"

    @property
    def verdict(self) -> str:
        return {None: "not measured", True: "met", False: "**NOT met**"}[self.met]


def _ratio(table: Table, requirement: str, name: str, reference: str, kind: str, level: int,
           goal: float, key: str = "ok_rps", higher: bool = True) -> Check:
    value = table.ratio(name, reference, kind, level, key)
    mine, theirs = table.median(name, kind, level, key), table.median(reference, kind, level, key)
    if value is None:
        figure = "-"
    elif key == "p99":
        figure = f"{value:.2f}x ({mine:.2f} vs {theirs:.2f} ms)"
    elif KINDS[kind].bulk:
        figure = (f"{value:.2f}x ({KINDS[kind].mib_s(mine):,.0f} vs "
                  f"{KINDS[kind].mib_s(theirs):,.0f} MiB/s)")
    else:
        figure = f"{value:.2f}x ({mine:,.0f} vs {theirs:,.0f} req/s)"
    return Check(requirement, kind, level, figure, value, goal, higher)


def must_hold(table: Table) -> list[Check]:
    """Issue 14's must-hold table, in its order; a row whose runs are missing (another --kinds
    or --levels) is there, "not measured"."""
    levels = table.levels or [8, 32, 128]
    checks = [_ratio(table, "hbfork HTTP / Apache, requests/s", "hbfork-http", "apache",
                     SMALL, level, 1.3) for level in levels]
    checks += [_ratio(table, "hbfork HTTP / nginx, requests/s", "hbfork-http", "nginx",
                      SMALL, level, 0.85) for level in levels]
    for level in levels:
        cpu = table.median("hbfork-http", SMALL, level, "cpu_us_per_request")
        nginx = table.median("nginx", SMALL, level, "cpu_us_per_request")
        figure = "-" if cpu is None else f"{cpu:.1f} µs" + (
            "" if nginx is None else f" (nginx {nginx:.1f})")
        checks.append(Check("CPU per request, hbfork HTTP", SMALL, level, figure, cpu,
                            CPU_BUDGET_US, higher=False))
    checks.append(_ratio(table, "hbfork HTTP / nginx, p99 latency", "hbfork-http", "nginx",
                         SMALL, 128, 1.0, key="p99", higher=False))
    checks += [_ratio(table, "hbfork TCP / HAProxy TCP, requests/s", "hbfork-tcp",
                      "haproxy-tcp", SMALL, level, 1.0) for level in levels]
    for kind, direction in (("1m-down", "download"), ("1m-up", "upload")):
        checks += [_ratio(table, f"hbfork HTTP / nginx, 1 MiB {direction} MiB/s", "hbfork-http",
                          "nginx", kind, level, 0.9) for level in levels]
    for kind, direction in (("1m-down", "download"), ("1m-up", "upload")):
        checks += [_ratio(table, f"hbfork TCP / HAProxy TCP, 1 MiB {direction} MiB/s",
                          "hbfork-tcp", "haproxy-tcp", kind, level, 0.9) for level in levels]
    return checks


def headline(results: dict[str, Any]) -> str:
    """The must-hold table as plain text, for the end of a run."""
    checks = must_hold(Table(results["runs"]))
    measured = [c for c in checks if c.met is not None]
    lines = [f"Must hold (issue 14): {sum(bool(c.met) for c in measured)} of {len(measured)} "
             f"met ({len(checks) - len(measured)} not measured); median of same-round ratios:"]
    for check in checks:
        verdict = {None: "not measured", True: "met", False: "NOT met"}[check.met]
        lines.append(f"  {check.requirement:48} {check.kind:7} c={check.level:<4} "
                     f"{check.figure:32} {check.target:8} {verdict}")
    return "\n".join(lines)
