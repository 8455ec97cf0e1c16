"""The front-queue traces of scripts/bench-overload --trace, side by side (issue 28's evidence).

    python -m loadtest.bench.report.overload_trace [--output BENCHMARKS.md] \\
        "before (280b154)=bench/results/overload-A.json" "after=bench/results/overload-B.json"

One row per traced hbfork closed-loop run: the run's p99 and goodput against HAProxy's in the
same round, then per worker (the trace's workers, in record order): connections, mean queue
depth, the oldest waiter's age (p50 / p99 / max over the samples in which it had one), the
places its requests took at each member per connection it held (a fair front gives every
connection the same), and per member the share of the samples in which a place stood free
while a request waited somewhere in the front; then the places each worker freed and left to
another worker's older waiter, and per member the longest span of samples in which a place
stood free while requests waited (at a fast member on a loaded machine such spans also join
places in transit from one request to the next; at the 80 ms member they are places nobody
took, e.g. the 1 s of a heartbeat read in a refill gap).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from loadtest.bench.markdown import update_section
from loadtest.bench.report.overload import REF


def _ref(results: dict[str, Any], run: dict[str, Any]) -> dict[str, Any] | None:
    for r in results["runs"]:
        if r["contender"] == REF and r["round"] == run["round"] and r["load"] == run["load"]:
            return r
    return None


def rows(label: str, results: dict[str, Any]) -> list[str]:
    out = []
    for run in results["runs"]:
        trace = run.get("trace")
        if run["contender"] != "hbfork" or run["load"] != "closed" or not trace:
            continue
        ref = _ref(results, run) or {}
        members = list(trace["members"])
        workers = [w for w in trace["workers"].values() if w["conns"]]
        per_conn = " / ".join(
            ", ".join(f"{w['started'][m] / max(1, w['conns']):.0f}" for m in members)
            for w in workers)
        out.append(
            f"| {label} | {run['round'] + 1} | {run['p99']:.0f} | {ref.get('p99', 0):.0f} | "
            f"{run['goodput'] / max(1.0, ref.get('goodput', 0)):.2f} | "
            f"{' / '.join(str(w['conns']) for w in workers)} | "
            f"{' / '.join(format(w['depth_mean'], '.1f') for w in workers)} | "
            + " / ".join(f"{w['head_age_p50_ms']:.0f}, {w['head_age_p99_ms']:.0f}, "
                         f"{w['head_age_max_ms']:.0f}" for w in workers)
            + f" | {per_conn} | "
            + ", ".join(f"{trace['members'][m]['in_flight_mean']:.1f}/"
                        f"{trace['members'][m]['capacity']}" for m in members)
            + " | " + ", ".join(f"{trace['members'][m]['idle_while_waiting']:.0%}"
                                for m in members)
            + " | " + " / ".join(str(w.get("handed_over", "-")) for w in workers)
            + " | " + ", ".join(_longest(trace["members"][m]) for m in members) + " |")
    return out


def _longest(member: dict[str, Any]) -> str:
    """A member's longest idle span in ms (traces before it: -)."""
    if "idle_span_max_ms" not in member:
        return "-"
    return f"{member['idle_span_max_ms']:.0f}"


def digest(label: str, results: dict[str, Any]) -> str | None:
    """One row for all of a code's traced runs: what the per-run rows say, at their worst."""
    runs = [r for r in results["runs"] if r["contender"] == "hbfork" and
            r["load"] == "closed" and r.get("trace")]
    if not runs:
        return None
    split = [r for r in runs if sum(1 for w in r["trace"]["workers"].values() if w["conns"]) > 1]
    ratios = []
    for r in runs:
        ref = _ref(results, r) or {}
        if ref.get("p99"):
            ratios.append((r["p99"] / ref["p99"], r["goodput"] / max(1.0, ref["goodput"])))
    fewest = [min((w for w in r["trace"]["workers"].values() if w["conns"]),
                  key=lambda w: w["conns"]) for r in split]
    fast = list(runs[0]["trace"]["members"])[-1]
    fairness = []
    for r in split:
        per = [w["started"][fast] / w["conns"] for w in r["trace"]["workers"].values()
               if w["conns"]]
        fairness.append(min(per) / max(per))
    idle = sorted(r["trace"]["members"][fast]["idle_while_waiting"] for r in runs)
    return (f"| {label} | {len(runs)} ({len(split)} split) | "
            f"{min(r['p99'] for r in runs):.0f}-{max(r['p99'] for r in runs):.0f} | "
            + (f"{max(p for p, _ in ratios):.2f} | {min(g for _, g in ratios):.2f} | "
               if ratios else "- | - | ")  # no HAProxy run in those rounds
            + f"{max((w['head_age_p99_ms'] for w in fewest), default=0):.0f} | "
            f"{max(w['head_age_max_ms'] for r in runs for w in r['trace']['workers'].values()):.0f}"
            f" | {min(fairness, default=1.0):.2f} | {idle[len(idle) // 2]:.0%} |")


def section(labelled: list[tuple[str, Path]]) -> str:
    lines = [
        "## Overload: the front queue traced (issue 28)",
        "",
        "`scripts/bench-overload --factors '' --contenders hbfork,haproxy-queue --trace "
        "[--source DIR]`: the closed-loop run (members of 8 workers at 80 ms and 2 ms, wrk "
        "-c24), hbfork's table sampled every 2 ms (loadtest/bench/probes/queue_trace.py). "
        "Per worker (separated by /): its client connections, its mean number of waiters, its "
        "oldest waiter's age in ms (p50, p99, max over the samples in which it had one), and "
        "the places its requests took at each member per client connection it held (slow, "
        "fast: a front fair to every client gives every connection the same). Per member "
        "(slow, fast): mean requests in flight / capacity, and the share of samples in which "
        "a place stood free while a request waited in some worker. Places handed over: per "
        "worker, the places it freed and left to another worker's older waiter (woken for "
        "it). Longest idle span: per member, the longest run of samples with a place free "
        "while requests waited (at the 2 ms member on a loaded machine it also joins places "
        "in transit between requests; at the 80 ms member it is a place nobody took).",
        "",
        "In short, per code (all its traced runs; split: runs in which more than one worker "
        "held connections): hbfork's p99 range, the worst p99 and goodput against HAProxy's "
        "in the same round, the oldest-waiter age p99 of the worker with the fewest "
        "connections (worst split run), the oldest waiter ever seen, how evenly the fast "
        "member's places went per connection across workers (fewest / most, worst split "
        "run; 1.00 is even), and the median share of samples with a free fast-member place "
        "while a request waited:",
        "",
        "| code | traced runs | hbfork p99 ms | worst p99 / HAProxy | worst goodput / HAProxy "
        "| fewest-connections worker: oldest waiter p99 ms | oldest waiter max ms | places per "
        "connection, fewest / most | free place while waiting |",
        "|---|---|---|---|---|---|---|---|---|",
        "DIGEST",
        "",
        "Every traced run:",
        "",
        "| code | round | hbfork p99 ms | HAProxy p99 ms | goodput / HAProxy | connections "
        "| waiters (mean) | oldest waiter age ms | places taken per connection | in flight "
        "/ capacity | free place while waiting | places handed over | longest idle span ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sources, digests = [], []
    for label, path in labelled:
        results = json.loads(path.read_text())
        lines += rows(label, results)
        digests.append(digest(label, results))
        src = results.get("source") or {}
        sources.append(f"{label}: `{path.name}`, hbfork at "
                       f"{src.get('commit') or results['machine']['commit']}, load average "
                       f"{min(r['loadavg'] for r in results['runs'])} … "
                       f"{max(r['loadavg'] for r in results['runs'])}")
    lines += ["", "Runs: " + "; ".join(sources) + "."]
    at = lines.index("DIGEST")
    lines[at:at + 1] = [d for d in digests if d]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LABEL=JSON")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--after", default="bench-overload",
                        help="the section it follows when it is new")
    args = parser.parse_args(argv)
    labelled = [(item.split("=", 1)[0], Path(item.split("=", 1)[1])) for item in args.runs]
    text = section(labelled)
    if args.output is None:
        print(text)
    else:
        update_section(args.output, "bench-overload-trace", text, after=args.after)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
