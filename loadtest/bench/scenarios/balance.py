"""Balancing quality: the same open-loop load through seven fronts over four unequal members.

    scripts/bench-balance [--rounds 3] [--seconds 20] [--loads 70,90] [--quick]
    scripts/bench-balance --report-only bench/results/balance-....json

Root only: it builds a network-namespace lab (loadtest/bench/lab/netns.py) with four member
hosts, each running `hbfork backend --workers N` that multicasts its true idle and busy workers
every second (mod_heartbeat's datagram), and puts every front on the lab's front host:

    m1-fast     16 workers, 40 ms per request (20 ms + exponential, mean 20 ms)
    m2-slow     16 workers, 200 ms per request: 5x slower
    m3-quarter   4 workers, 40 ms: a quarter of the workers
    m4-fast     16 workers, 40 ms

Fronts (loadtest/bench/programs/fronts.py): Apache httpd lbmethod=heartbeat, nginx least_conn, nginx
random two least_conn, HAProxy leastconn, hbfork weighting = "reported", hbfork (corrected,
the default) and hbfork pick = "p2c". Every run offers the same Poisson arrivals (seeded per
round and load: each contender in a round gets the identical schedule) at 70 % and 90 % of the
members' total capacity (sum of workers / mean service time) for --seconds, from
loadtest/bench/clients/openloop.py on the front host; latency is measured from when each request was
due. Contenders are interleaved in rounds, in a rotated order, and the report gives medians
and same-round ratios. Then the kill variant: at 70 %, m2-slow (the member holding the most
requests) is SIGKILLed 40 % into the run, and restarted after it. Results: JSON in
bench/results/ and a section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from loadtest.bench.lab import netns
from loadtest.bench.lab.inlab import exit_on_term, lab_unavailable, log, run_in_lab
from loadtest.bench.machine import export_head, loadavg, machine
from loadtest.bench.markdown import update_section
from loadtest.bench.paths import ROOT
from loadtest.bench.programs import servers as launch
from loadtest.bench.programs.fronts import MemberSpec, start_member, wait_all_eligible
from loadtest.bench.programs.fronts import kill as kill_member
from loadtest.bench.programs.fronts import start_front as start_lab_front
from loadtest.bench.programs.servers import status
from loadtest.bench.report.balance import section
from loadtest.bench.scenarios import runs
from loadtest.bench.stats import fmt_ms

CONTENDERS = ("apache", "nginx-lc", "nginx-r2", "haproxy-lc", "hbfork-reported", "hbfork",
              "hbfork-p2c")
VICTIM = "m2-slow"
KILL_AT = 0.4
SETTLE = 2.0       # seconds between runs: the members' queues drain, heartbeats catch up
TAG = "bench-balance"


def members() -> list[Any]:
    return [MemberSpec("m1-fast", 16, 20, 20), MemberSpec("m2-slow", 16, 100, 100),
            MemberSpec("m3-quarter", 4, 20, 20), MemberSpec("m4-fast", 16, 20, 20)]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench-balance",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--loads", default="70,90", help="percent of total capacity")
    parser.add_argument("--kill-load", type=float, default=70)
    parser.add_argument("--kill-rounds", type=int, help="rounds of the kill variant "
                        "(default: --rounds)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--quick", action="store_true", help="1 round of 8 s runs")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--report-only", type=Path, metavar="JSON",
                        help="rewrite the BENCHMARKS.md section from a results file")
    parser.add_argument("--in-lab", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 8
    args.kill_rounds = args.rounds if args.kill_rounds is None else args.kill_rounds
    args.loads = [float(x) for x in args.loads.split(",")]
    args.contenders = [c for c in args.contenders.split(",") if c]
    return args


# --- the run ------------------------------------------------------------------------------

class Session:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:

        self.args = args
        self.workdir = workdir
        self.specs = members()
        self.lab = netns.Lab(prefix=args.in_lab, backends=len(self.specs))  # already up
        self.hosts = dict(zip((s.name for s in self.specs), self.lab.backends, strict=True))
        self.servers: dict[str, Any] = {}
        self.fronts: dict[str, Any] = {}
        self.capacity = sum(s.capacity_rps for s in self.specs)

    @property
    def addresses(self) -> list[str]:
        return [f"{self.hosts[s.name].address}:80" for s in self.specs]

    def start_member(self, spec: Any, seed: int) -> None:
        self.servers[spec.name] = start_member(self.lab, self.hosts[spec.name], spec,
                                               self.workdir, seed)

    def start(self) -> None:
        for i, spec in enumerate(self.specs):
            self.start_member(spec, seed=100 + i)
        for kind in self.args.contenders:
            self.fronts[kind] = start_lab_front(kind, self.workdir / kind, self.addresses)
            log(TAG, f"{kind} serving on {self.fronts[kind].url} "
                     f"(pid {self.fronts[kind].proc.pid})")

    def stop(self) -> None:
        for server in [*self.fronts.values(), *self.servers.values()]:
            server.stop()

    def run(self, kind: str, load: float, seed: int, seconds: float,
            kill: bool = False) -> dict[str, Any]:
        server = self.fronts[kind]
        time.sleep(SETTLE)
        before = self._totals(server)
        killer = None
        if kill:
            victim = self.servers[VICTIM]
            killer = threading.Timer(KILL_AT * seconds + 0.05, kill_member, (victim,))
            killer.start()
        out = self.workdir / f"run-{kind}-{load:g}-{seed}-{int(kill)}.json"
        raw = runs.openloop(server.url, self.capacity * load / 100, seconds, seed, out)
        if killer is not None:
            killer.join()
        result = runs.figures(raw)
        after = self._totals(server)
        if before and after:
            result["hbfork_totals"] = {k: after[k] - before.get(k, 0) for k in after
                                       if isinstance(after[k], int)}
        result.update(contender=kind, load=load, seed=seed, kill=kill, loadavg=loadavg())
        if kill:
            result["victim"] = VICTIM
            self._revive()
        return result

    def _totals(self, server: Any) -> dict[str, Any]:
        if "status_url" not in server.info:
            return {}
        try:
            return status(server).get("totals", {})
        except (OSError, ValueError):
            return {}

    def _revive(self) -> None:
        """Start the killed member again and wait until the fronts can use it."""
        spec = next(s for s in self.specs if s.name == VICTIM)
        self.start_member(spec, seed=int(time.time()) % 1000)
        wait_all_eligible(self.fronts, len(self.specs))
        time.sleep(3)   # HAProxy's checks: rise 2 at 1 s


def run_inside(args: argparse.Namespace, argv: list[str]) -> int:

    started = time.monotonic()
    args.results.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hbbal-"))
    os.chmod(workdir, 0o755)
    launch.HBFORK_HOME = export_head(workdir / "hbfork-head")
    session = Session(args, workdir)
    results: dict[str, Any] = {"argv": [a for i, a in enumerate(argv) if a != "--in-lab" and
                                        (i == 0 or argv[i - 1] != "--in-lab")],
                               "machine": machine(), "seconds": args.seconds,
                               "rounds": args.rounds, "loads": args.loads,
                               "members": [s.__dict__ | {"capacity_rps": s.capacity_rps}
                                           for s in session.specs],
                               "capacity_rps": session.capacity, "runs": []}
    try:
        session.start()
        for kind in args.contenders:   # warm-up: connection pools, pages touched
            session.run(kind, 50, 999, 3)
        names = list(args.contenders)
        for round_number in range(args.rounds):
            k = round_number % len(names)
            order = names[k:] + names[:k]
            for load in args.loads:
                seed = 1000 * round_number + int(load)
                for kind in order:
                    result = session.run(kind, load, seed, args.seconds)
                    result["round"] = round_number
                    results["runs"].append(result)
                    show(result, f"round {round_number + 1}/{args.rounds}")
        for round_number in range(args.kill_rounds):
            k = round_number % len(names)
            for kind in names[k:] + names[:k]:
                seed = 5000 + round_number
                result = session.run(kind, args.kill_load, seed, args.seconds, kill=True)
                result["round"] = round_number
                results["runs"].append(result)
                show(result, f"kill round {round_number + 1}/{args.kill_rounds}")
    finally:
        session.stop()
        keep = args.results / f"balance-logs-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copytree(workdir, keep, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("hbfork-head", "htdocs", "run-*.json",
                                                      "*.pid", "*.ctl", "__pycache__"))
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_seconds"] = time.monotonic() - started
    raw = args.results / f"balance-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.write_text(json.dumps(results, indent=1))
    update_section(args.output, "bench-balance", section(results, raw))
    log(TAG, f"done in {results['elapsed_seconds']:.0f} s: {raw}, {args.output}")
    return 0


def show(r: dict[str, Any], where: str) -> None:
    if "failed" in r:
        log(TAG, f"{where} {r['contender']:16} load {r['load']:g}% FAILED: {r['failed'][:200]}")
        return
    shares = " ".join(f"{name.split('-')[0]} {share:4.0%}" for name, share in r["shares"].items())
    log(TAG, f"{where} {r['contender']:16} {r['load']:g}%{' kill' if r['kill'] else ''}: "
             f"p50 {fmt_ms(r['p50'])} p99 {fmt_ms(r['p99'])} p99.9 {fmt_ms(r['p999'])} ms, "
             f"errors {r['errors']} {r['error_kinds'] or ''} | {shares} | "
             f"lag p99 {r['lag_p99']:.1f} ms, load {r['loadavg']}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.report_only:
        results = json.loads(args.report_only.read_text())
        update_section(args.output, "bench-balance", section(results,
                                                                       args.report_only))
        print(f"{args.output}: section bench-balance rewritten from {args.report_only}")
        return 0
    if args.in_lab:
        return run_inside(args, argv)
    reason = lab_unavailable()
    if reason:
        print(f"scripts/bench-balance: needs the network-namespace lab: {reason}",
              file=sys.stderr)
        return 2
    return run_in_lab(__spec__.name, argv, len(members()), "hbbal")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, exit_on_term)   # every `finally` stops what it started
    sys.exit(main())
