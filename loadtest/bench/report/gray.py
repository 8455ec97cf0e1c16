"""scripts/bench-gray: its section of BENCHMARKS.md and its console summary, from a results
file (pure: results in, text out)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from loadtest.bench.paths import shown
from loadtest.bench.programs.gray import SCENARIOS
from loadtest.bench.stats import fmt_ms, median

REF, MINE = "haproxy", "hbfork"
LABELS = {"hbfork": "hbfork", "haproxy": "HAProxy", "nginx": "nginx"}
FAILURE_SHARE = 0.005     # hbfork's failures may exceed HAProxy's while under 0.5 % of its own
GOODPUT_RATIO = 0.8
AFTER_OUT_SHARE = 0.01    # requests reaching the ejected member: <= 1 % of the run's
DETECTION_SECONDS = 1.0


def by_cell(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        cells[r["scenario"], r["front"]].append(r)
    return cells


def ratio(runs: list[dict[str, Any]], scenario: str, front: str, key: str) -> float:
    """Median over rounds of front's figure / HAProxy's in the same round."""
    rounds: dict[int, dict[str, float]] = defaultdict(dict)
    for r in runs:
        if r["scenario"] == scenario:
            rounds[r.get("round", 0)][r["front"]] = float(r.get(key, math.nan))
    values = [v[front] / v[REF] for v in rounds.values()
              if front in v and REF in v and v[REF] > 0 and not math.isnan(v[front])]
    return median(values)


def failures_ok(mine: int, mine_requests: int, ref: int) -> bool:
    """Issue 23: no more failures than HAProxy, or at most 0.5 % of hbfork's requests."""
    return mine <= ref or mine <= FAILURE_SHARE * mine_requests


def after_out_share(r: dict[str, Any]) -> float | None:
    """Requests that reached the third member after the front took it out, as a share of
    the run's requests; None when the front never took it out (or shows nothing)."""
    if r.get("third_after_out") is None or not r.get("requests"):
        return None
    return r["third_after_out"] / r["requests"]


def _num(values: list[float], fmt: str = "{:,.0f}") -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "-"


def _out(rs: list[dict[str, Any]]) -> str:
    shown_ = []
    for r in rs:
        if r.get("out_after") is None:
            shown_.append("never" if r["front"] != "nginx" else "n/a")
        else:
            shown_.append(f"{r['out_after']:.2f} s ({r['out_state']})")
    return ", ".join(shown_)


def _after_out(rs: list[dict[str, Any]]) -> str:
    shown_ = []
    for r in rs:
        share = after_out_share(r)
        shown_.append("-" if share is None else f"{r['third_after_out']} ({100 * share:.2f} %)")
    return ", ".join(shown_)


def table(results: dict[str, Any]) -> list[str]:
    runs = results["runs"]
    cells = by_cell(runs)
    fronts = list(dict.fromkeys(r["front"] for r in runs))
    lines = ["| scenario | front | requests | failures (share) | goodput 2xx/s | goodput / "
             "HAProxy | p99 ms | taken out after the fault | requests at the member after "
             "the fault | … after it was taken out (share of the run) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for scenario in results["scenarios"]:
        for front in fronts:
            rs = cells.get((scenario, front), [])
            if not rs:
                continue
            fails = [r["failures"] for r in rs]
            reqs = [r.get("requests", 0) for r in rs]
            g = ratio(runs, scenario, front, "goodput")
            moment = scenario not in results.get("no_fault_moment", [])
            lines.append(
                f"| {scenario} | {LABELS.get(front, front)} | {_num(reqs)} | "
                f"{', '.join(f'{f} ({_pct(f, q)})' for f, q in zip(fails, reqs, strict=True))}"
                f" | {_num([r.get('goodput', 0.0) for r in rs])} | "
                f"{'-' if math.isnan(g) else f'{g:.2f}'} | "
                f"{_num([r.get('p99', math.nan) for r in rs], '{:.1f}')} | "
                + (f"{_out(rs)} | {', '.join(str(r['third_after_fault']) for r in rs)} | "
                   f"{_after_out(rs)} |" if moment else
                   f"- | {', '.join(str(r['third_after_fault']) for r in rs)} (the whole run) "
                   "| - |"))
    return lines


def held(results: dict[str, Any]) -> list[str]:
    """For a member slow from the start: its requests x its service time / the run's length
    = the requests it held on average, per front (Little's law), from the member's count."""
    lines = []
    for scenario in results.get("no_fault_moment", []):
        delay = delay_ms(scenario)
        rs = [r for r in results["runs"] if r["scenario"] == scenario]
        if not delay or not rs:
            continue
        per_front: dict[str, list[float]] = defaultdict(list)
        for r in rs:
            per_front[r["front"]].append(r["third_after_fault"] * delay / 1000
                                         / results["duration"])
        lines.append(f"* `{scenario}`: requests the {delay:g}-ms member held on average "
                     "(its requests x its service time / the run's length): " + "; ".join(
                         f"{LABELS.get(f, f)} {', '.join(f'{v:.1f}' for v in vs)}"
                         for f, vs in per_front.items())
                     + f", of the {results.get('clients', 16)} clients.")
    return lines


def delay_ms(scenario: str) -> float:
    spec = SCENARIOS.get(scenario)
    if spec is None or "--delay-ms" not in spec.args:
        return 0.0
    return float(spec.args[spec.args.index("--delay-ms") + 1])


def targets(results: dict[str, Any]) -> list[str]:
    runs = results["runs"]
    cells = by_cell(runs)
    lines = ["| scenario | target (issue 23) | measured | |", "|---|---|---|---|"]
    for scenario in results["scenarios"]:
        mine, ref = cells.get((scenario, MINE), []), cells.get((scenario, REF), [])
        pairs = list(zip(mine, ref, strict=False))
        if pairs:
            ok = all(failures_ok(a["failures"], a.get("requests", 0), b["failures"])
                     for a, b in pairs)
            text = "; ".join(f"hbfork {a['failures']} of {a.get('requests', 0)}, HAProxy "
                             f"{b['failures']}" for a, b in pairs)
            lines.append(f"| {scenario} | failures ≤ HAProxy's, or ≤ 0.5 % of hbfork's "
                         f"requests | {text} | {_met(ok)} |")
            g = ratio(runs, scenario, MINE, "goodput")
            lines.append(f"| {scenario} | goodput ≥ {GOODPUT_RATIO:g}x HAProxy's | "
                         f"{g:.2f}x | {_met(g >= GOODPUT_RATIO)} |")
        shares = [after_out_share(r) for r in mine]
        if any(s is not None for s in shares) and scenario in _ejecting(results):
            worst = max(s for s in shares if s is not None)
            lines.append(f"| {scenario} | after the ejection, requests to the member ≤ 1 % of "
                         f"the run | {100 * worst:.2f} % (worst round) | "
                         f"{_met(worst <= AFTER_OUT_SHARE)} |")
    for r in results.get("detection", []):
        if r.get("front", MINE) != MINE:
            continue
        took = r.get("ejected_after")
        shown_ = "never" if took is None else f"{took:.2f} s"
        lines.append(f"| {r['scenario']} | ejected within {DETECTION_SECONDS:g} s of the fault "
                     f"at {r['rate']:,.0f} requests/s | {shown_} | "
                     f"{_met(took is not None and took <= DETECTION_SECONDS)} |")
        share = after_out_share(r)
        if share is not None:
            lines.append(f"| {r['scenario']} | after the ejection, requests to the member ≤ 1 % "
                         f"of the run, at {r['rate']:,.0f} requests/s | {100 * share:.2f} % | "
                         f"{_met(share <= AFTER_OUT_SHARE)} |")
    return lines


def _ejecting(results: dict[str, Any]) -> set[str]:
    return {r["scenario"] for r in results.get("detection", [])} or \
        {s for s in results["scenarios"] if s.startswith(("5xx", "hang"))}


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def detection(results: dict[str, Any]) -> list[str]:
    rows = results.get("detection", [])
    if not rows:
        return []
    lines = ["", f"### Detection at {rows[0]['rate']:,.0f} requests/s (each front alone, open "
             f"loop, uniform arrivals, {results['duration']:g} s, the fault "
             f"{results['fault_at']:g} s in)", "",
             "| scenario | front | fault → taken out | requests sent | client failures | "
             "requests at the member after the fault | … after it was taken out (share of "
             "the run) | p99 ms | client lag p99 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        front = r.get("front", MINE)
        took = r.get("ejected_after") if front == MINE else r.get("out_after")
        lines.append(f"| {r['scenario']} | {LABELS.get(front, front)} | "
                     f"{'never' if took is None else f'{took:.2f} s'} | "
                     f"{r.get('requests', 0):,} | {r['failures']} | {r['third_after_fault']} | "
                     f"{_after_out([r])} | {fmt_ms(r.get('p99', math.nan))} | "
                     f"{r.get('lag_p99', math.nan):.1f} |")
    return lines


def summary(results: dict[str, Any]) -> str:
    return "\n".join([*table(results), "", *targets(results), *detection(results)])


def section(results: dict[str, Any], raw: Path) -> str:
    m = results["machine"]
    loads = sorted({r["loadavg"] for r in results["runs"] if "loadavg" in r})
    cmd = " ".join(["scripts/bench-gray", *results["argv"]])
    lines = [
        "## Gray failures",
        "",
        f"Generated by `{cmd}` on {m['date']}, commit {m['commit']} (hbfork run from an "
        f"export of it), {results['rounds']} round(s) of {results['duration']:g} s per run, "
        f"{results['elapsed_seconds'] / 60:.0f} min in all. Machine: {m['cpu']}, {m['cores']} "
        f"cores shared by wrk, the fronts, the members **and other engineers' test runs** "
        f"(load average {' '.join(m['loadavg'])} at the start, "
        f"{loads[0] if loads else '?'} … {loads[-1] if loads else '?'} during the runs). "
        f"{m['haproxy']}; {m['nginx']}.",
        "",
        "Issue 23's setup on loopback: two healthy members (`hbfork backend --workers "
        f"{results['workers']}`, honest heartbeats) and a third whose heartbeats stay healthy "
        f"(ready {results['workers']}, busy 0) while its application fails; "
        f"{results['clients']} keep-alive clients (wrk -t2 -c{results['clients']}); the fault "
        f"starts {results['fault_at']:g} s into each run. Each front is started afresh for "
        "each run, one at a time, over the same members, and the third member afresh with it. "
        "Failures are what the client saw: non-2xx answers plus socket errors. Goodput / "
        "HAProxy is the same-round ratio; the `healthy` row is each front's ceiling on this "
        "machine with no fault (wrk, a C proxy and Python members share two cores), the "
        "reference the other rows' ratios should be read against. \"Taken out\": "
        f"hbfork's /status.json (polled every {results['poll'] * 1000:.0f} ms: not eligible, "
        "and why), HAProxy's `show stat` (DOWN); nginx does not show it. Requests at the "
        "member are the member's own count of requests it read (for HAProxy they include "
        "its health checks, one a second).",
        "",
        "Scenarios (the third member):",
        "",
        *[f"* `{name}`: {what}" for name, what in results["scenarios"].items()],
        "",
        "Each front's fault handling (same timeouts, same retry budget, all retry on 5xx):",
        "",
        *results["settings"],
        "",
        "### Results",
        "",
        *table(results),
        *detection(results),
        "",
        "### Targets",
        "",
        *targets(results),
        "",
        "Notes on the method:",
        "",
        *held(results),
        "* Bounds set by the settings, not measured: a member that never answers is seen only "
        "when a request to it times out, so no passive detector (hbfork's, nginx's "
        "max_fails, HAProxy's observe) can take a hanging member out sooner than the "
        "response timeout (2 s here); HAProxy's own check (`timeout check 1s`, fall 2) needs "
        "2 failed checks 1 s apart. For `5xx-30`, hbfork's failure_rate (0.25 over 10 s) "
        "counts the member's healthy history in its window: the share 0.3 t / (h + t) after "
        "t s of the fault with h s of history reaches 0.25 at t = 5 h, i.e. 5 s here (h = "
        "1 s) and 8.3 s for a member that had been healthy for the whole 10-s window, so a "
        "quicker ejection there comes from 5 answers in a row being 502 (0.3^5 ≈ 0.24 % of "
        "requests): its detection time is a matter of chance.",
        "* The two healthy members and the machine are shared: every figure moves with the "
        "other engineers' load (see the load averages above); compare fronts by the "
        "same-round ratios, and the failure scenarios' ratios against the `healthy` row's.",
        "* wrk is closed loop: a request held by a hanging or slow member holds one of the 16 "
        "clients, so throughput falls while any front keeps sending to it; the detection "
        "runs are open loop (arrivals keep coming), where a held request does not slow the "
        "others.",
        "* Not a test: nothing here fails a build.",
        f"* Raw results: `{shown(raw)}` (not committed), configs and logs next to it.",
    ]
    return "\n".join(lines)
