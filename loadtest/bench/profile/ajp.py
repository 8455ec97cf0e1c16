"""Where one hbfork worker's CPU goes per AJP request, against Apache mod_proxy_ajp's.

A measurement, not a test. The setting of scripts/bench-ajp (two real Tomcat 10 with AJP
connectors, Apache httpd in front of the same Tomcats as the reference), with hbfork reduced
to one worker whose cProfile is turned on and off by SIGPROF (loadtest/bench/profile/worker.py):

1. Rounds without the profiler, hbfork and Apache interleaved: requests/s and the front's CPU
   per request (every process of it).
2. cProfile, timed by the worker's CPU clock, during one more wrk run: the functions with the
   most own time, in µs per request (the profiler's own cost per call is not subtracted).

    ./scripts/profile-ajp [--seconds 6] [--rounds 2] [--connections 32] [--top 30] [--keep DIR]
                          [--body N] [--strace]
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loadtest.bench import tools, wrk
from loadtest.bench.lab import loopback as lab
from loadtest.bench.proc_stats import cpu_seconds
from loadtest.bench.procs import children, wait_children, wait_until
from loadtest.bench.profile import http as profile_http
from loadtest.bench.programs import tomcat
from loadtest.bench.scenarios import ajp as scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/profile-ajp",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="unprofiled rounds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--top", type=int, default=30, help="functions listed")
    parser.add_argument("--body", type=int, default=0, help="POST bodies of this many bytes")
    parser.add_argument("--keep", metavar="DIR", help="keep the raw profile there")
    parser.add_argument("--strace", action="store_true",
                        help="also count the worker's syscalls per request (strace -c)")
    args = parser.parse_args(argv)
    tools.require("scripts/profile-ajp", "wrk", "apache2", "java")
    reason = tomcat.unavailable_reason()
    if reason:
        print(f"scripts/profile-ajp: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="profile-ajp-") as tmp:
        os.chmod(tmp, 0o755)
        stack = lab.Stack(Path(tmp))
        try:
            run(stack, Path(tmp), args)
        finally:
            stack.stop()
            if args.keep:
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                for name in os.listdir(tmp):
                    if name.endswith(".prof"):
                        shutil.copy(Path(tmp) / name, keep / name)
    return 0


def run(stack: lab.Stack, tmp: Path, args: argparse.Namespace) -> None:
    tomcats = scenario.start_tomcats(stack)
    member_pids = [p.pid for p in stack.procs]
    hb_port, master = scenario.hbfork_front(
        stack, tomcats, 1, [sys.executable, "-m", "loadtest.bench.profile.worker", "-c"],
        {"HBFORK_PROFILE_DIR": str(tmp)})
    ap_port, apache = scenario.apache_front(stack, tomcats)
    ports = {"hbfork": hb_port, "apache": ap_port}
    for name, port in ports.items():
        wait_until(scenario._serving(port), 60, f"{name} to serve through AJP")
    worker = wait_children(master)[-1]
    pids = {"hbfork": [master, *children(master)], "apache": [apache, *children(apache)]}
    script = None
    if args.body:
        script = tmp / "post.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = string.rep("x", {args.body})\n'
                          'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    for port in list(ports.values()) * 2:
        wrk.run(f"http://127.0.0.1:{port}{scenario.PATH}", args.connections, args.warmup,
                threads=2)
    print(f"hbfork 1 worker (pid {worker}); {args.connections} connections, "
          f"{args.seconds:g}s x {args.rounds}; load {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
    for number in range(args.rounds):
        for name in (list(ports) if number % 2 == 0 else list(reversed(ports))):
            worker_cpu = cpu_seconds(worker)
            result = scenario.run_one(ports[name], pids[name], member_pids, args, script)
            worker_cpu = cpu_seconds(worker) - worker_cpu
            results[name].append(result)
            requests = result["rps"] * args.seconds
            own = f"  (worker {worker_cpu / requests * 1e6:.1f})" \
                if name == "hbfork" and requests else ""
            print(f"  round {number + 1} {name:<7}{result['rps']:>8.0f} req/s  front "
                  f"{result['front_ms']:6.1f} CPU ms/1000{own}  tomcats "
                  f"{result['tomcat_ms']:6.1f}", flush=True)
    for name, runs in results.items():
        print(f"{name:<8} median {statistics.median(r['rps'] for r in runs):8.0f} req/s, "
              f"{statistics.median(r['front_ms'] for r in runs):6.1f} front CPU ms/1000")
    if args.strace:
        requests, counts = profile_http.with_strace(
            f"http://127.0.0.1:{hb_port}{scenario.PATH}", worker, args, tmp / "strace.txt")
        print(f"\nsyscalls per request (strace -c -f, {requests} requests):")
        for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            if n / requests >= 0.01:
                print(f"  {name:<16}{n / requests:8.2f}")
    target = tmp / f"worker-{worker}.prof"
    before = cpu_seconds(worker)
    os.kill(worker, signal.SIGPROF)
    result = wrk.run(f"http://127.0.0.1:{hb_port}{scenario.PATH}", args.connections,
                     args.seconds, threads=2, script=["-s", str(script)] if script else None)
    os.kill(worker, signal.SIGPROF)
    spent = cpu_seconds(worker) - before
    requests = result.get("requests", 0) or 1
    deadline = time.monotonic() + 30
    while not target.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the worker wrote no profile")
        time.sleep(0.05)
    print(f"\ncProfile run: {result.get('rps', 0):.0f} req/s, worker "
          f"{spent / requests * 1e6:.1f} CPU µs/req (profiler included)")
    report(pstats.Stats(str(target)), requests, args.top)


def report(stats: pstats.Stats, requests: int, top: int) -> None:
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for (path, line, name), (_, calls, tottime, cumtime, _) in table.items():
        rows.append((tottime, cumtime, calls, f"{Path(path).name}:{line}({name})"))
    total = sum(r[0] for r in rows)
    print(f"total {total / requests * 1e6:.1f} µs/req (own time of every function)\n")
    print(f"{'own µs/req':>10}{'cum µs/req':>11}{'calls/req':>10}  function")
    for tottime, cumtime, calls, label in sorted(rows, reverse=True)[:top]:
        print(f"{tottime / requests * 1e6:10.2f}{cumtime / requests * 1e6:11.2f}"
              f"{calls / requests:10.2f}  {label}")


if __name__ == "__main__":
    sys.exit(main())
