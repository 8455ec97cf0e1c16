"""Benchmark hbfork against Apache httpd, nginx and HAProxy in one run; write BENCHMARKS.md.

    scripts/bench [--quick] [--rounds N] [--seconds S] [--levels 8,32,128]
                  [--kinds small,16k,1m] [--loopback]

The same three backends behind every contender: hbfork HTTP mode, hbfork TCP mode, Apache
httpd (mod_proxy_balancer + lbmethod=heartbeat + mod_heartmonitor), nginx (upstream random,
keepalive), HAProxy (balance random; HTTP mode, and TCP mode) and, as the ceiling, one backend
directly. Kinds of exchange (kinds.py): a 604-byte file, a 16 KiB file, 1 MiB downloads
and 1 MiB uploads (POSTed bodies the backends read to the end and discard). As root with
network namespaces and apache2 available, everything runs in a lab (lab/netns.py): three
real Apache backends multicasting mod_heartbeat, the fronts and wrk on a front host. Otherwise
on loopback: nginx backends on 127.0.0.2-4, heartbeats sent for them, and Apache with
lbmethod=byrequests as a clearly labelled stand-in (Apache can only receive heartbeats by
multicast, which loopback runs must not send).

Contenders are interleaved in rounds (each round runs every contender at every kind and
concurrency level, contenders in a rotated order) and the report gives medians, same-round
ratios to nginx and to Apache, CPU per request, and issue 14's must-hold table (report/table.py).
Also measured: requests/s against hbfork's worker count, memory per worker, 10,000 idle
keep-alive client connections, the master's heartbeat throughput and the pick cost with 1,000
members. A full run (3 rounds, 4 kinds, 3 levels, 4 s per wrk run) takes about 21 minutes on
2 cores, --quick about 5.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.bench import machine as host
from loadtest.bench import tools
from loadtest.bench.kinds import KINDS, parse_kinds
from loadtest.bench.lab import inlab, netns
from loadtest.bench.paths import ROOT
from loadtest.bench.proc_stats import descendants
from loadtest.bench.programs import servers
from loadtest.bench.programs.servers import start_front
from loadtest.bench.report.suite import write_report
from loadtest.bench.report.table import headline
from loadtest.bench.suite.measure import check_exchange, measure
from loadtest.bench.suite.phases import (
    Watcher,
    apache_errors,
    heartbeat_throughput,
    idle_connections,
    log,
    memory,
    pick_cost,
    worker_scaling,
)
from loadtest.bench.suite.topology import Lab, Loopback
from loadtest.bench.wrk import command as wrk_command

CONTENDERS = ("hbfork-http", "hbfork-tcp", "apache", "nginx", "haproxy", "haproxy-tcp",
              "direct")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 s runs, levels 32 and 128, shorter extras (~5 min): checks "
                             "the script, measures nothing worth keeping")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 3)")
    parser.add_argument("--seconds", type=int, help="seconds per wrk run (default 4; quick 1)")
    parser.add_argument("--levels", help="wrk connection counts (default 8,32,128)")
    parser.add_argument("--kinds", default="small,16k,1m",
                        help="exchanges to measure: small (604 bytes), 16k, 1m (= 1m-down and "
                             "1m-up: 1 MiB GET and POST); default all")
    parser.add_argument("--loopback", action="store_true",
                        help="loopback topology even where the netns lab is possible")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "benchmarks.png")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results",
                        help="raw results (JSON) and every server's logs")
    parser.add_argument("--hbfork-source", choices=("head", "tree"), default="head",
                        help="measure hbfork as committed at HEAD (default; an export of it) "
                             "or as the working tree has it, uncommitted changes included")
    parser.add_argument("--in-lab", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (1 if args.quick else 4)
    levels = args.levels or ("32,128" if args.quick else "8,32,128")
    args.levels = [int(x) for x in levels.split(",")]
    try:
        args.kinds = parse_kinds(args.kinds)
    except ValueError as err:
        parser.error(str(err))
    args.idle_hold = 2.0 if args.quick else 8.0
    args.blast_seconds = 3.0 if args.quick else 6.0
    return args


# --- where the backends live ------------------------------------------------------------

# --- phases -----------------------------------------------------------------------------

def start_fronts(env: Any, workdir: Path) -> dict[str, Any]:
    fronts: dict[str, Any] = {}
    for kind in CONTENDERS:
        if kind == "direct":
            continue
        listen = env.heartbeat_listen() if kind.startswith("hbfork") else ""
        fronts[kind] = start_front(kind, workdir / kind, env.members, heartbeat_listen=listen,
                                   apache_heartbeat=env.kind == "netns")
        log(f"{kind} serving on {fronts[kind].url} (pid {fronts[kind].proc.pid})")
    return fronts


def check_kinds(targets: dict[str, Any], kinds: list[str]) -> dict[str, dict[str, str]]:
    """One exchange of every kind with every target before measuring: what went wrong, by
    contender and kind (empty when all answered as expected). A failing pair is still
    measured; the report shows the failure next to its numbers."""
    failures: dict[str, dict[str, str]] = {}
    for name, server in targets.items():
        for kind in kinds:
            spec = KINDS[kind]
            problem = check_exchange(server.host, server.port, spec.method, spec.path,
                                     spec.size)
            if problem:
                failures.setdefault(name, {})[kind] = problem
                log(f"check: {name} fails {kind}: {problem}")
    return failures


def main_rounds(targets: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every round: every kind, every level, every contender (in an order rotated per round),
    so the runs a same-round ratio compares are seconds apart."""
    names = list(targets)
    watcher = Watcher(targets["hbfork-http"])
    for kind in args.kinds:   # warm-up: pools filled, pages touched
        for name in names:
            measure(targets[name], kind, 32, 1)
    runs = []
    for round_number in range(args.rounds):
        order = names[round_number % len(names):] + names[:round_number % len(names)]
        for kind in args.kinds:
            for connections in args.levels:
                for name in order:
                    t0 = time.monotonic()
                    result = measure(targets[name], kind, connections, args.seconds)
                    result.update(contender=name, kind=kind, round=round_number,
                                  connections=connections, t0=t0, t1=time.monotonic())
                    runs.append(result)
                    log_run(result, args.rounds)
    watcher.stop()
    for run in runs:
        watcher.annotate(run)
    return runs


def log_run(result: dict[str, Any], rounds: int) -> None:
    spec = KINDS[result["kind"]]
    rate = (f"{spec.mib_s(result.get('rps', 0)):7.0f} MiB/s" if spec.bulk
            else f"{result.get('rps', 0):7.0f} req/s")
    log(f"round {result['round'] + 1}/{rounds} {result['kind']:7} c={result['connections']:<4} "
        f"{result['contender']:12} {rate}  p50 {result.get('p50', 0):6.2f} ms "
        f"p99 {result.get('p99', 0):7.2f} ms  cpu {result.get('cpu_us_per_request', 0):6.1f} "
        f"µs/req"
        + (f"  errors {result['errors'] + result['non2xx']}"
           if result["errors"] or result["non2xx"] else "")
        + (f"  FAILED: {result['error'][:80]}" if "error" in result else ""))


def machine() -> dict[str, Any]:
    """The machine, and which hbfork is measured: the export of HEAD, or the working tree
    (saying whether it has uncommitted changes)."""
    from hbfork import __version__

    info = host.machine()
    commit = info.pop("commit")
    if servers.HBFORK_HOME is None:
        dirty = host.first_line(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                 "hbfork"])
        commit += ", working tree" + (" with uncommitted changes" if dirty not in ("?", "")
                                      else "")
    else:
        commit += ", as committed: run from an export of HEAD"
    return {**info, "hbfork": f"{__version__} ({commit})"}


# --- driver -----------------------------------------------------------------------------

def run_inside(env_name: str, args: argparse.Namespace, argv: list[str]) -> int:
    started = time.monotonic()
    args.results.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="hbbench-"))
    os.chmod(workdir, 0o755)
    if args.hbfork_source == "head":
        servers.HBFORK_HOME = host.export_head(workdir / "hbfork-head")
    env: Any = Lab(args.in_lab, workdir) if env_name == "netns" else Loopback(workdir)
    fronts: dict[str, Any] = {}
    shown = [a for i, a in enumerate(argv)
             if a != "--in-lab" and (i == 0 or argv[i - 1] != "--in-lab")]
    results: dict[str, Any] = {"argv": shown, "environment": env.kind,
                               "description": env.describe(), "machine": machine(),
                               "levels": args.levels, "rounds": args.rounds,
                               "seconds": args.seconds, "kinds": args.kinds,
                               "kind_info": {k: {"path": KINDS[k].path,
                                                 "method": KINDS[k].method,
                                                 "size": KINDS[k].size} for k in args.kinds},
                               "wrk_command": " ".join(wrk_command("URL", 32, args.seconds)),
                               "phase_seconds": {}}
    phases = results["phase_seconds"]
    try:
        log(f"{env.kind}: starting backends")
        backends = env.start_backends()
        fronts = start_fronts(env, workdir)
        results["apache_lbmethod"] = fronts["apache"].info.get("lbmethod")
        results["members"] = env.members
        targets = {**fronts, "direct": backends[0]}
        apache_log = fronts["apache"].workdir / "error.log"
        skip = len(apache_log.read_text(errors="replace").splitlines())
        initial = set(descendants(fronts["apache"].proc.pid))
        phases["start"] = time.monotonic() - started
        results["kind_failures"] = check_kinds(targets, args.kinds)
        mark = time.monotonic()
        results["runs"] = main_rounds(targets, args)
        phases["rounds"] = time.monotonic() - mark
        results["apache_log"] = apache_errors(apache_log, skip, initial)
        mark = time.monotonic()
        time.sleep(2)   # the last run's connections close; workers update their titles
        results["memory"] = memory(fronts)
        results["idle"] = idle_connections(fronts, args)
        for server in fronts.values():
            server.stop()
        fronts = {}
        phases["memory_idle"] = time.monotonic() - mark
        mark = time.monotonic()
        results["workers"] = worker_scaling(env, workdir, args)
        phases["workers"] = time.monotonic() - mark
        mark = time.monotonic()
        results["heartbeats"] = heartbeat_throughput(workdir, args)
        results["pick"] = pick_cost(args)
        phases["heartbeats_pick"] = time.monotonic() - mark
    finally:
        for server in fronts.values():
            server.stop()
        env.stop()
        keep = args.results / f"logs-{time.strftime('%Y%m%d-%H%M%S')}"
        skip = shutil.ignore_patterns("htdocs", "*.pid", "*.ctl", "hbfork-head", "__pycache__")
        shutil.copytree(workdir, keep, ignore=skip, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)
    results["elapsed_seconds"] = time.monotonic() - started
    raw = args.results / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.write_text(json.dumps(results, indent=1))
    write_report(results, args.output, args.chart, raw)
    print("\n" + headline(results))
    log(f"done in {results['elapsed_seconds']:.0f} s: {args.output}, {args.chart}, {raw}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    tools.require("scripts/bench", "wrk", "nginx", "haproxy")
    if args.in_lab:
        return run_inside("netns", args, argv)
    reason = "--loopback given" if args.loopback else inlab.lab_unavailable(("apache2",))
    if reason:
        log(f"no network-namespace lab ({reason}): running on loopback")
        return run_inside("loopback", args, argv)
    prefix = netns.unique_prefix("hbb")
    with netns.Lab(prefix=prefix, backends=3) as lab:
        log(f"netns lab {prefix} up; running the benchmark on its front host")
        done = subprocess.run(lab.command("front", [sys.executable, "-m", __spec__.name,
                                                    "--in-lab", prefix, *argv]), check=False)
    log(f"netns lab {prefix} removed")
    return done.returncode


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, inlab.exit_on_term)
    sys.exit(main())
