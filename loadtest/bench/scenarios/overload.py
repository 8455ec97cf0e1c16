"""Overload: what the fronts do when the members are all busy (issue 18's scenario).

    scripts/bench-overload [--rounds 3] [--seconds 8] [--quick]
    scripts/bench-overload --report-only bench/results/overload-....json
    scripts/bench-overload --factors '' --contenders hbfork,haproxy-queue --trace \
        --source /tmp/q-before --rounds 5     # closed loop only, hbfork from another tree

Root only: a network-namespace lab with member hosts, each running `hbfork backend --workers
8` that multicasts its true idle/busy workers every second. Fronts on the lab's front host,
over the same members in the same run: hbfork with its defaults (in-flight-corrected
weights, capacity from the heartbeats, the front queue with queue_timeout 5 s), HAProxy
(leastconn, `maxconn 8` per server, `timeout queue 5s`), Apache httpd lbmethod=heartbeat, and
as the reference of what issue 18 started from, hbfork with Apache's rule (`weighting =
"reported"`, `queue_timeout = 0`: 503 whenever no member has room).

Three loads, interleaved in rounds (contender order rotated every round):
  closed   issue 18's run: members of 8 workers at 80 ms and 2 ms per request, 24 concurrent
           keep-alive clients, wrk -t2 -c24 for --seconds
  1.5x     open loop (loadtest/bench/clients/openloop.py), Poisson arrivals at 1.5x the total
           capacity
  3x       the same at 3x
The open-loop runs use a second pair of members, 8 workers at 80 ms and at 20 ms (not 2 ms):
over capacity every waiting request holds a client connection, and with the 2 ms member 3x
would be ~9,000 new requests/s and ~40,000 connections, which a Python client on two shared
cores cannot produce on time (measured: its sending lag reached seconds, so it, not the
fronts, was measured). "Total capacity" is measured at the start of the run by driving each
member directly with 8 connections (its workers) for 3 s (on this machine the 2 ms member is
CPU-bound well below its nominal 4,000 requests/s). An open-loop burst of T seconds at rate r
over capacity c is absorbable by a 5 s queue when its backlog drains in time: (r - c) T / c
<= 5 s, i.e. T <= 10 s at 1.5x (the whole run) and T <= 2.5 s at 3x; the report counts the
errors among the arrivals inside that window apart.
Results: JSON in bench/results/ and a section of BENCHMARKS.md.

--trace samples hbfork's table every 2 ms during each hbfork run (loadtest/bench/probes/
queue_trace.py: per worker its connections, waiters, oldest waiter's age, places taken and
freed per member; per member in flight against capacity); the run's result gets the summary,
the samples go to bench/results/overload-trace-*.json. --source DIR runs the hbfork of the
git tree DIR (its HEAD, exported; e.g. a worktree of an older commit) with this harness.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.bench import tools
from loadtest.bench.lab import netns
from loadtest.bench.lab.inlab import exit_on_term, lab_unavailable, log, run_in_lab
from loadtest.bench.machine import commit, export_head, loadavg, machine
from loadtest.bench.markdown import update_section
from loadtest.bench.paths import ROOT
from loadtest.bench.probes.queue_trace import QueueTrace, summary
from loadtest.bench.programs import servers as launch
from loadtest.bench.programs.fronts import MemberSpec, start_member
from loadtest.bench.programs.fronts import start_front as start_lab_front
from loadtest.bench.report.overload import every_round, section
from loadtest.bench.scenarios import runs
from loadtest.bench.stats import fmt_ms

CONTENDERS = ("hbfork", "haproxy-queue", "apache", "hbfork-apache")
QUEUE_TIMEOUT = 5.0
WORKERS = 8
CLIENTS = 24
SETTLE = 3.0
TAG = "bench-overload"
MAX_CONNECTIONS = 18_000   # the open-loop client's connections (the hard RLIMIT_NOFILE here)


def members() -> dict[str, list[Any]]:
    """The members of the closed-loop run (issue 18's) and of the open-loop runs."""
    return {"closed": [MemberSpec("slow-80ms", WORKERS, 80), MemberSpec("fast-2ms", WORKERS, 2)],
            "open": [MemberSpec("slow-80ms", WORKERS, 80), MemberSpec("fast-20ms", WORKERS, 20)]}


def member_hosts() -> int:
    return sum(len(pair) for pair in members().values())


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench-overload",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--factors", default="1.5,3", help="open-loop loads, x capacity")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--quick", action="store_true", help="1 round")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--report-only", type=Path, metavar="JSON")
    parser.add_argument("--trace", action="store_true",
                        help="sample hbfork's front queue from its table during its runs")
    parser.add_argument("--trace-interval", type=float, default=0.002)
    parser.add_argument("--source", type=Path, metavar="DIR",
                        help="run the hbfork committed at HEAD of the git tree DIR")
    parser.add_argument("--workers", default="auto",
                        help="hbfork's workers (default auto: one per core)")
    parser.add_argument("--section", default="bench-overload",
                        help="the BENCHMARKS.md section to write")
    parser.add_argument("--in-lab", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 1
    args.factors = [float(x) for x in args.factors.split(",") if x]
    args.contenders = [c for c in args.contenders.split(",") if c]
    return args


def start_front(kind: str, directory: Path, addresses: list[str],
                workers: int | str = "auto") -> Any:
    if kind == "haproxy-queue":
        return start_lab_front(kind, directory, addresses, maxconn=WORKERS,
                               queue_timeout=QUEUE_TIMEOUT)
    if kind == "hbfork-apache":
        return start_lab_front(kind, directory, addresses,
                               balance='weighting = "reported"\nqueue_timeout = 0\n')
    if kind in ("hbfork", "hbfork-1worker"):
        return start_lab_front(kind, directory, addresses,
                                   balance=f"queue_timeout = {QUEUE_TIMEOUT:g}\n",
                               workers=1 if kind == "hbfork-1worker" else workers)
    return start_lab_front(kind, directory, addresses)


def _workers(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def measure_capacity(servers: dict[str, Any], seconds: float = 3) -> dict[str, float]:
    """Each member driven directly with WORKERS connections: what it completes per second."""
    out = {}
    for name, server in servers.items():
        result = runs.wrk_run(server.url, WORKERS, seconds)
        out[name] = result.get("goodput", 0.0)
        log(TAG, f"capacity of {name}: {out[name]:.0f} req/s (direct, {WORKERS} connections)")
    return out


def one_run(server: Any, load: str, rate: float, seconds: float, seed: int,
            workdir: Path, trace: dict[str, Any] | None = None) -> dict[str, Any]:
    time.sleep(SETTLE)
    probe = None
    if trace is not None and server.name.startswith("hbfork") and load == "closed":
        probe = QueueTrace(server.proc.pid, interval=trace["interval"]).start()
    try:
        result = _load(server, load, rate, seconds, seed, workdir)
    finally:
        if probe is not None:
            samples = probe.stop()
            labels = [probe.labels[slot] for slot in probe.slots]
            trace.setdefault("runs", []).append({"load": load, "seed": seed,
                                                 "labels": labels, "samples": samples})
    if probe is not None:
        result["trace"] = summary(samples, labels)
        result["trace_run"] = len(trace["runs"]) - 1
    return result


def _load(server: Any, load: str, rate: float, seconds: float, seed: int,
          workdir: Path) -> dict[str, Any]:
    if load == "closed":
        result = runs.wrk_run(server.url, CLIENTS, seconds)
        result.update(p99=result.get("p99", float("nan")), errors=result.get("errors_total", 0))
        return result
    out = workdir / f"run-{server.name}-{load}-{seed}-{time.monotonic_ns()}.json"
    raw = runs.openloop(server.url, rate, seconds, seed, out,
                        timeout=QUEUE_TIMEOUT + 5, max_connections=MAX_CONNECTIONS)
    result = runs.figures(raw)
    result["rate"] = rate
    return result


def run_inside(args: argparse.Namespace, argv: list[str]) -> int:
    started = time.monotonic()
    args.results.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hbovl-"))
    os.chmod(workdir, 0o755)
    if args.source is None:
        launch.HBFORK_HOME = export_head(workdir / "hbfork-head")
    else:   # its hbfork, our harness
        launch.HBFORK_HOME = export_head(workdir / "hbfork-head", ("loadtest",))
        export_head(workdir / "hbfork-head", ("hbfork",), root=args.source)
    trace = {"interval": args.trace_interval} if args.trace else None
    pairs = members()
    lab = netns.Lab(prefix=args.in_lab, backends=member_hosts())   # already up
    hosts = iter(lab.backends)
    servers: dict[str, dict[str, Any]] = {}
    fronts: dict[tuple[str, str], Any] = {}
    results: dict[str, Any] = {"argv": [a for i, a in enumerate(argv) if a != "--in-lab" and
                                        (i == 0 or argv[i - 1] != "--in-lab")],
                               "machine": machine(), "seconds": args.seconds,
                               "rounds": args.rounds, "factors": args.factors,
                               "queue_timeout": QUEUE_TIMEOUT, "clients": CLIENTS,
                               "workers": args.workers,
                               "members": {pair: [s.__dict__ | {"nominal_rps": s.capacity_rps}
                                                  for s in specs]
                                           for pair, specs in pairs.items()},
                               "capacity": {}, "capacity_rps": {}, "runs": [],
                               "source": None if args.source is None else
                               {"dir": str(args.source), "commit": commit(args.source)}}
    try:
        for pair, specs in pairs.items():
            if pair == "open" and not args.factors:
                continue   # closed loop only
            servers[pair] = {}
            for i, spec in enumerate(specs):
                servers[pair][spec.name] = start_member(lab, next(hosts), spec,
                                                        workdir / pair, seed=200 + i)
            results["capacity"][pair] = measure_capacity(servers[pair])
            results["capacity_rps"][pair] = sum(results["capacity"][pair].values())
            addresses = [f"{s.host}:{s.port}" for s in servers[pair].values()]
            for kind in args.contenders:
                fronts[pair, kind] = start_front(kind, workdir / pair / kind, addresses,
                                                 _workers(args.workers))
                log(TAG, f"{kind} over the {pair}-loop members serving on "
                         f"{fronts[pair, kind].url}")
        for front in fronts.values():   # warm-up
            runs.wrk_run(front.url, 4, 1)
        capacity = results["capacity_rps"].get("open", 0.0)
        loads = ["closed", *(f"{f:g}x" for f in args.factors)]
        names = list(args.contenders)
        for round_number in range(args.rounds):
            k = round_number % len(names)
            order = names[k:] + names[:k]
            for load in loads:
                factor = float(load[:-1]) if load != "closed" else 0.0
                seed = 100 * round_number + int(factor * 10)
                pair = "closed" if load == "closed" else "open"
                for kind in order:
                    result = one_run(fronts[pair, kind], load, capacity * factor,
                                     args.seconds, seed, workdir, trace)
                    result.update(contender=kind, load=load, factor=factor,
                                  round=round_number, loadavg=loadavg())
                    results["runs"].append(result)
                    show(result, f"round {round_number + 1}/{args.rounds}")
    finally:
        for server in [*fronts.values(), *(s for p in servers.values() for s in p.values())]:
            server.stop()
        keep = args.results / f"overload-logs-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copytree(workdir, keep, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("hbfork-head", "htdocs", "run-*.json",
                                                      "*.pid", "*.ctl", "__pycache__"))
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_seconds"] = time.monotonic() - started
    stamp = time.strftime('%Y%m%d-%H%M%S')
    raw = args.results / f"overload-{stamp}.json"
    if trace is not None:
        results["trace_file"] = str(args.results / f"overload-trace-{stamp}.json")
        Path(results["trace_file"]).write_text(json.dumps(trace))
    raw.write_text(json.dumps(results, indent=1))
    update_section(args.output, args.section, section(results, raw), after="simulate")
    print("\n".join(every_round(results)), flush=True)   # issue 28's per-run table
    log(TAG, f"done in {results['elapsed_seconds']:.0f} s: {raw}, {args.output}")
    return 0


def show(r: dict[str, Any], where: str) -> None:
    if "failed" in r:
        log(TAG, f"{where} {r['contender']:14} {r['load']:6} FAILED: {str(r['failed'])[:200]}")
        return
    log(TAG, f"{where} {r['contender']:14} {r['load']:6}: goodput {r.get('goodput', 0):7.0f}/s "
             f"p99 {fmt_ms(r.get('p99', float('nan')))} ms errors {r.get('errors', 0)} "
             f"{r.get('error_kinds', '')} lag p99 {r.get('lag_p99', 0):.1f} ms "
             f"load {r['loadavg']}")
    trace = r.get("trace")
    if trace:
        workers = " | ".join(
            f"w{i}: conns {w['conns']} depth {w['depth_mean']:.1f} head p99 "
            f"{w['head_age_p99_ms']:.0f} max {w['head_age_max_ms']:.0f} ms deq {w['dequeued']} "
            f"handed over {w.get('handed_over', 0)}"
            for i, w in trace["workers"].items())
        members = " | ".join(f"{name}: in flight {m['in_flight_mean']:.1f}/{m['capacity']} "
                             f"idle-while-waiting {m['idle_while_waiting']:.0%} "
                             f"(idle spans >= 10 ms: {m.get('long_idle_spans', 0)}, "
                             f"{m.get('long_idle_frozen', 0)} with the waiting workers frozen, "
                             f"{m.get('long_idle_share', 0):.1%} of the run, longest "
                             f"{m.get('idle_span_max_ms', 0):.0f} ms)"
                             for name, m in trace["members"].items())
        log(TAG, f"    trace {workers} || {members}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    tools.require("scripts/bench-overload", "wrk", "haproxy")
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        update_section(args.output, args.section, section(results, args.report_only),
                       after="simulate")
        print(f"{args.output}: section bench-overload rewritten from {args.report_only}")
        return 0
    if args.in_lab:
        return run_inside(args, argv)
    reason = lab_unavailable()
    if reason:
        print(f"scripts/bench-overload: needs the network-namespace lab: {reason}",
              file=sys.stderr)
        return 2
    return run_in_lab(__spec__.name, argv, member_hosts(), "hbovl")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, exit_on_term)   # every `finally` stops what it started
    sys.exit(main())
