"""10,000 idle keep-alive clients on one hbfork worker: its RSS, and whether the active
clients notice them. One run, loopback only, bounded in time.

A benchmark, not a test. Two nginx members (127.0.0.2/.3) serve a 612-byte file behind one
hbfork worker in HTTP mode (keepalive_timeout 300 s, so nothing idles out during the run).
Each round measures the active load (wrk -t1 -c32, --seconds) with no idle connections and
with --idle connections open, each having made one request and then left idle (opened in
waves of 256 by this script, whose RLIMIT_NOFILE it raises to the hard limit, and closed after
the run); odd rounds measure without first, even rounds with. Reported: the worker's RSS
before the first idle connection and with them (the issue's target: < 60 MB), and the active
clients' req/s, p99 and the worker's CPU per request with the idle connections as a ratio to
without, within each round.

`--idle 0` is the control: the same rounds with nothing held, so the ratios show what the
order of the runs and the machine's noise alone do.

    ./scripts/bench-conns [--idle 10000] [--rounds 2] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from loadtest.bench import tools, wrk
from loadtest.bench.clients.idle import IdleClients
from loadtest.bench.lab import loopback as lab
from loadtest.bench.proc_stats import cpu_seconds, rss_kib
from loadtest.bench.procs import raise_nofile, wait_children, wait_http

BODY = b"x" * 612


def active(url: str, worker: int, seconds: float) -> dict[str, float]:
    cpu = cpu_seconds(worker)
    result = wrk.run(url, 32, seconds, threads=1, check=True)
    result["errors"] = wrk.error_count(result)
    result["cpu_us"] = (cpu_seconds(worker) - cpu) / result["requests"] * 1e6
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-conns",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    tools.require("scripts/bench-conns", "wrk", "nginx")
    limit = raise_nofile(lab.NOFILE)
    if limit < args.idle + 500:
        raise SystemExit(f"RLIMIT_NOFILE is {limit}: too low for {args.idle} connections")
    with tempfile.TemporaryDirectory(prefix="bench-conns-") as tmp:
        stack = lab.Stack(Path(tmp))
        try:
            run(stack, args)
        finally:
            stack.stop()
    return 0


def run(stack: lab.Stack, args: argparse.Namespace) -> None:
    members = stack.nginx_members({"index.html": BODY})
    port, master = stack.hbfork("http", members, "conns",
                                http="keepalive_timeout = 300\nclient_timeout = 300")
    url = f"http://127.0.0.1:{port}/index.html"
    wait_http("127.0.0.1", port, "/index.html")
    worker = wait_children(master)[-1]
    print(f"one hbfork worker (pid {worker}); active load wrk -t1 -c32 -d{args.seconds:g}s; "
          f"{args.idle} idle connections; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    wrk.run(url, 32, 1, threads=1, check=True)  # warm up
    rows: list[dict[str, float]] = []
    for number in range(args.rounds):
        # Alternate which load goes first: a run right after another differs from the one
        # before it on a busy machine, whatever is held (see --idle 0).
        quiet = active(url, worker, args.seconds) if number % 2 == 0 else None
        rss_before = rss_kib(worker)
        started = time.monotonic()
        idle = IdleClients("127.0.0.1", port, args.idle, timeout=120)
        opened = time.monotonic() - started
        rss_idle = rss_kib(worker)
        busy = active(url, worker, args.seconds)
        still = idle.still_open()
        idle.close()
        time.sleep(1.0)  # let the worker close them before the next quiet run
        rss_after = rss_kib(worker) / 1024
        if quiet is None:
            quiet = active(url, worker, args.seconds)
        rows.append({"rps": busy["rps"] / quiet["rps"], "p99": busy["p99"] / quiet["p99"],
                     "cpu": busy["cpu_us"] / quiet["cpu_us"], "rss_before": rss_before / 1024,
                     "rss_idle": rss_idle / 1024, "rss_after": rss_after,
                     "answered": idle.answered, "still": still, "quiet_rps": quiet["rps"],
                     "busy_rps": busy["rps"], "quiet_p99": quiet["p99"],
                     "busy_p99": busy["p99"], "quiet_cpu": quiet["cpu_us"],
                     "busy_cpu": busy["cpu_us"]})
        print(f"  round {number + 1}: 0 idle {quiet['rps']:.0f} req/s p99 {quiet['p99']:.2f} ms "
              f"{quiet['cpu_us']:.1f} µs/req | {idle.answered} idle (opened in {opened:.1f} s,"
              f" {still} still open after) {busy['rps']:.0f} req/s p99 {busy['p99']:.2f} ms "
              f"{busy['cpu_us']:.1f} µs/req | worker RSS {rss_before / 1024:.1f} -> "
              f"{rss_idle / 1024:.1f} MiB" + ("  (errors!)" if busy["errors"] or
                                               quiet["errors"] else ""), flush=True)
    report(rows, args.idle)


def report(rows: list[dict[str, float]], idle: int) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    fresh = rows[0]["rss_before"]  # later rounds start with what the first one grew
    peak = max(r["rss_idle"] for r in rows)
    print(f"\nworker RSS: {fresh:.1f} MiB before any idle connection, at most {peak:.1f} MiB "
          f"({peak * 1.048576:.1f} MB) with {idle} ({(peak - fresh) * 1024 / max(idle, 1):.2f} KiB "
          f"each); target < 60 MB. After they closed: {rows[-1]['rss_after']:.1f} MiB (freed "
          "memory stays with the process for the next connections)")
    print(f"active clients with {idle} idle vs none (median of same-round ratios): "
          f"{med('rps'):.2f}x req/s, {med('p99'):.2f}x p99, {med('cpu'):.2f}x CPU per request")
    print(f"absolute medians: none {med('quiet_rps'):.0f} req/s p99 {med('quiet_p99'):.2f} ms "
          f"{med('quiet_cpu'):.1f} µs/req; with idle {med('busy_rps'):.0f} req/s p99 "
          f"{med('busy_p99'):.2f} ms {med('busy_cpu'):.1f} µs/req")
    print(f"idle connections answered {min(r['answered'] for r in rows):.0f}-"
          f"{max(r['answered'] for r in rows):.0f}, still open after the load "
          f"{min(r['still'] for r in rows):.0f}-{max(r['still'] for r in rows):.0f}")


if __name__ == "__main__":
    sys.exit(main())
