"""Simulate heartbeat balancing at a scale the lab cannot run: 1,000 members, 20 and 100
fronts sharing one heartbeat group, hbfork's own pick code (loadtest/bench/sim/model.py).

    scripts/simulate [--members 1000] [--fronts 20,100] [--loads 0.7,0.9] [--seconds 15]
                     [--methods apache,reported,corrected,p2c] [--seed 1] [--jobs 2] [--quick]
    scripts/simulate --report-only bench/results/simulate-....json

Pure Python, no sockets, seeded and reproducible (the same seed gives the same figures).
Prints a summary table and writes the raw figures (bench/results/simulate-*.json), a plot
(docs/simulation.png, needs matplotlib: the bench extra) and a section of BENCHMARKS.md.
Compared: queueing delay (from a request's arrival at the front until a worker starts it:
front queue plus the member's backlog), overload events (requests that arrive at a member
whose workers are all busy) and 503s. --quick: 200 members, 5 s, fronts 4 and 20.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from loadtest.bench.machine import commit
from loadtest.bench.markdown import update_section
from loadtest.bench.paths import ROOT
from loadtest.bench.sim.model import Spec, simulate

METHODS = ("apache", "reported", "corrected", "p2c")
LABELS = {"apache": "Apache lbmethod_heartbeat (no cap, no queue)",
          "reported": 'hbfork weighting = "reported"', "corrected": "hbfork corrected (default)",
          "p2c": 'hbfork pick = "p2c"'}
COLORS = {"apache": "#999999", "reported": "#e08b2c", "corrected": "#2c7be0", "p2c": "#3aa655"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--fronts", default="20,100")
    parser.add_argument("--loads", default="0.7,0.9", help="offered / total capacity")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seconds", type=float, default=15, help="measured simulated seconds")
    parser.add_argument("--warmup", type=float, default=5, help="simulated seconds not counted")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1, help="processes (runs are independent)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "simulation.png")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-report", action="store_true", help="print only")
    parser.add_argument("--report-only", type=Path, metavar="JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.seconds, args.warmup = 200, 5, 2
        args.fronts = "4,20"
    args.fronts = [int(x) for x in args.fronts.split(",")]
    args.loads = [float(x) for x in args.loads.split(",")]
    args.methods = [m for m in args.methods.split(",") if m]
    return args


def run_one(spec_fields: dict[str, Any]) -> dict[str, Any]:
    started = time.process_time()
    result = simulate(Spec(**spec_fields))
    result["cpu_seconds"] = time.process_time() - started
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| fronts | load | method | queueing delay mean / p99 / p99.9 ms | waited | "
             "overload events | 503 | response p99 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['fronts']} | {r['load']:.0%} | {LABELS.get(r['method'], r['method'])} | "
            f"{r['wait_mean_ms']:.1f} / {r['wait_p99_ms']:.0f} / {r['wait_p999_ms']:.0f} | "
            f"{r['waited_fraction']:.2%} | {r['overload_events']:,} ({r['overload_fraction']:.2%}) "
            f"| {r['rejected']:,} ({r['rejected_fraction']:.2%}) | {r['response_p99_ms']:.0f} |")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r["method"] for r in results))
    groups = list(dict.fromkeys((r["fronts"], r["load"]) for r in results))
    by = {(r["fronts"], r["load"], r["method"]): r for r in results}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=80)
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        xs = [g + k * width for g in range(len(groups))]
        axes[0].bar(xs, [max(0.01, by[(f, ld, method)]["wait_p99_ms"]) if (f, ld, method) in by
                         else 0 for f, ld in groups], width, color=COLORS.get(method),
                    label=LABELS.get(method, method))
        axes[1].bar(xs, [100 * by[(f, ld, method)]["overload_fraction"]
                         + 100 * by[(f, ld, method)]["rejected_fraction"]
                         if (f, ld, method) in by else 0 for f, ld in groups], width,
                    color=COLORS.get(method))
    ticks = [g + 0.4 - width / 2 for g in range(len(groups))]
    names = [f"{f} fronts\n{ld:.0%}" for f, ld in groups]
    axes[0].set_yscale("log")
    axes[0].set_title("p99 queueing delay (ms, log)")
    axes[1].set_title("overload events + 503s (% of requests)")
    for ax in axes[:2]:
        ax.set_xticks(ticks, names, fontsize=8)
    fronts, load = max(f for f, _ in groups), max(ld for _, ld in groups)
    for method in methods:
        r = by.get((fronts, load, method))
        if r and r["wait_cdf"]:
            xs = [ms for ms, _ in r["wait_cdf"]]
            axes[2].plot(xs, [1 - frac for _, frac in r["wait_cdf"]], color=COLORS.get(method),
                         label=LABELS.get(method, method))
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_ylim(1e-5, 1)
    axes[2].set_xlim(0.1, 1e5)
    axes[2].set_title(f"P(queueing delay > x), {fronts} fronts, {load:.0%}")
    axes[2].set_xlabel("ms")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"scripts/simulate: {results[0]['members']} members, heartbeats every 1 s, "
                 f"seed {results[0]['seed']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def section(data: dict[str, Any], raw: Path, plot_path: Path) -> str:
    results = data["results"]
    try:
        plot_ref = plot_path.resolve().relative_to(ROOT)
        raw_ref = raw.resolve().relative_to(ROOT)
    except ValueError:
        plot_ref, raw_ref = plot_path, raw
    first = results[0]
    return f"""### Simulation: 1,000 members, many fronts (`scripts/simulate`)

`{' '.join(['scripts/simulate', *data['argv']])}` on {data['date']}, commit {data['commit']};
pure Python, no sockets, every pick by hbfork's own `hbfork.core.balancing.choose` over a
`Members` built as a worker builds it (loadtest/bench/sim/model.py). Seeded: the same command
gives the same figures (machine load does not enter). {first['members']} members with 2-16 workers
(25/35/25/15 %) and mean service times of 0.3, 0.6 or 1.5 s (60/25/15 %), exponential; total
capacity {first['capacity_rps']:,.0f} req/s. Every member multicasts its true idle/busy workers
once a second at its own phase; every front hears it at once and, like hbfork's master,
publishes a mere change of ready within 20 ms (at once when ready goes to or from 0). Poisson
arrivals, each to a uniformly drawn front; {first['warmup']:g} s of warm-up, then
{first['seconds']:g} s measured. Queueing delay = from arrival at the front until a worker
starts the request (front queue + the member's backlog); an overload event = a request that
arrives at a member whose workers are all busy. "Apache" is P ∝ reported ready with no
capacity cap and no queue (503 when every member last reported 0).

![simulation: p99 queueing delay, overload events, delay distribution]({plot_ref})

{table(results)}

Raw figures: `{raw_ref}` (not committed); {data['cpu_seconds']:.0f} s of CPU in all.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report_only:
        data = json.loads(args.report_only.read_text())
        plot(data["results"], args.plot)
        update_section(args.output, "simulate", section(data, args.report_only, args.plot),
                       after="bench-balance")
        print(f"{args.output}: section simulate rewritten; {args.plot}")
        return 0
    specs = [dict(members=args.members, fronts=f, load=ld, method=m, seconds=args.seconds,
                  warmup=args.warmup, seed=args.seed)
             for f in args.fronts for ld in args.loads for m in args.methods]
    started = time.monotonic()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_one, specs))
    else:
        results = []
        for spec in specs:
            results.append(run_one(spec))
            r = results[-1]
            print(f"[simulate] fronts {r['fronts']:3} load {r['load']:.0%} {r['method']:9} "
                  f"wait p99 {r['wait_p99_ms']:8.1f} ms  overload {r['overload_fraction']:6.2%}"
                  f"  503 {r['rejected_fraction']:6.2%}  ({r['cpu_seconds']:.0f} s CPU)",
                  flush=True)
    print(table(results))
    if args.no_report:
        return 0
    data = {"argv": argv, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "commit": commit(),
            "elapsed_seconds": time.monotonic() - started,
            "cpu_seconds": sum(r["cpu_seconds"] for r in results), "results": results}
    args.results.mkdir(parents=True, exist_ok=True)
    raw = args.results / f"simulate-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    raw.write_text(json.dumps(data))
    try:
        plot(results, args.plot)
    except ImportError:
        print("scripts/simulate: matplotlib is not installed (pip install -e '.[bench]'); "
              "no plot", file=sys.stderr)
    update_section(args.output, "simulate", section(data, raw, args.plot),
                   after="bench-balance")
    print(f"written: {raw}, {args.plot}, {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
