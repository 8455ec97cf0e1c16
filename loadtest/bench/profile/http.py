"""Where one hbfork worker's CPU goes per request in HTTP mode, under wrk, on loopback.

A measurement, not a test. Two nginx members (127.0.0.2/.3, one process) serve a 612-byte
file; one hbfork (one worker, HTTP mode, no access log unless --access-log) and nginx as a
reverse proxy (one worker, upstream keep-alive: the reference) sit in front; wrk drives them.

1. Rounds without any profiler, hbfork and nginx interleaved: CPU µs per request of hbfork's
   worker and of nginx's worker (from /proc), requests/s, p99.
2. py-spy (if installed: `.venv/bin/pip install -e '.[bench]'`) samples the same worker, not pausing
   it (--nonblocking), during one more wrk run.
3. cProfile, timed by the worker's CPU clock, during one more wrk run (profile/worker.py turns
   it on and off by SIGPROF; see there).
4. With --strace, `strace -c -f` on the worker during one more run: syscalls per request.

Each share is applied to the worker's unprofiled CPU µs per request of the rounds in 1, so
the table says how many of those µs each part of the path takes; the functions behind each
category are listed in loadtest/bench/profile/attrib.py (time in an unlisted function, such as a
socket method or an http11 helper, goes to its caller's category). Two estimates, because
each has a bias: py-spy samples wall-clock time whenever the worker is not idle, which on a
shared 2-core machine likely includes moments it waits for a core after waking a peer in
send(), favouring the write categories; cProfile
measures CPU time exactly but adds ~0.5 µs per call, which is calibrated on this machine and
subtracted (the rest still inflates the parts made of many small calls). Raw files are kept
with --keep DIR.

    ./scripts/profile-http [--seconds 8] [--rounds 3] [--connections 32] [--strace]
                           [--access-log] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest.bench import tools, wrk
from loadtest.bench.lab import loopback as lab
from loadtest.bench.paths import ROOT
from loadtest.bench.proc_stats import cpu_split
from loadtest.bench.procs import wait_children, wait_http
from loadtest.bench.profile import attrib as profile_attrib

BODY = b"x" * 612  # about nginx's default index page
PY_SPY = shutil.which("py-spy", path=f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}")


def loopback_wrk(url: str, seconds: float, connections: int) -> dict:
    """One thread, keep-alive, --timeout 5 s; errors = socket errors + non-2xx answers."""
    result = wrk.run(url, connections, seconds, threads=1, check=True)
    result["errors"] = wrk.error_count(result)
    return result


def measure(url: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    user, system = cpu_split(pid)
    result = loopback_wrk(url, args.seconds, args.connections)
    user_after, system_after = cpu_split(pid)
    result["user_us"] = (user_after - user) / result["requests"] * 1e6
    result["sys_us"] = (system_after - system) / result["requests"] * 1e6
    result["cpu_us"] = result["user_us"] + result["sys_us"]
    return result


def with_pyspy(url: str, worker: int, args: argparse.Namespace, out: Path
               ) -> tuple[dict[str, float], dict[str, int]]:
    spy = subprocess.Popen([PY_SPY, "record", "--pid", str(worker), "--nonblocking",
                            "--rate", "1000", "--format", "raw", "--output", str(out),
                            "--duration", str(int(args.seconds) + 2)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # py-spy attaches and starts sampling
    result = measure(url, worker, args)
    spy.wait(timeout=args.seconds + 30)
    return result, profile_attrib.from_pyspy(out)


def with_cprofile(url: str, worker: int, args: argparse.Namespace, directory: Path
                  ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    target = directory / f"worker-{worker}.prof"
    # The worker's timer is the thread CPU clock (loadtest/bench/profile/worker.py): measure what
    # the profiler itself adds per call with the same timer, on this machine, now.
    cost = profile_attrib.calibrate(time.thread_time)
    os.kill(worker, signal.SIGPROF)
    result = measure(url, worker, args)
    os.kill(worker, signal.SIGPROF)
    deadline = time.monotonic() + 30
    while not target.exists():
        if time.monotonic() > deadline:
            raise SystemExit("the worker wrote no profile")
        time.sleep(0.05)
    return result, profile_attrib.from_cprofile(target, cost)


def with_strace(url: str, worker: int, args: argparse.Namespace, out: Path
                ) -> tuple[int, dict[str, int]]:
    strace = subprocess.Popen(["strace", "-c", "-f", "-o", str(out), "-p", str(worker)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    result = loopback_wrk(url, args.seconds, args.connections)
    strace.send_signal(signal.SIGINT)
    strace.wait(timeout=30)
    counts = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        # "% time  seconds  usecs/call  calls  [errors]  syscall"
        if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[3].isdigit() \
                and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return result["requests"], counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/profile-http",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="unprofiled rounds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--strace", action="store_true", help="also count syscalls")
    parser.add_argument("--access-log", action="store_true", help="hbfork writes one")
    parser.add_argument("--keep", metavar="DIR", help="keep the raw profiles there")
    parser.add_argument("--pin", action="store_true",
                        help="give the proxies' workers CPU 1 and everything else CPU 0")
    args = parser.parse_args(argv)
    tools.require("scripts/profile-http", "wrk", "nginx")
    if not os.access(lab.NGINX, os.X_OK) or not os.access(wrk.WRK, os.X_OK):
        raise SystemExit("needs nginx and wrk")
    with tempfile.TemporaryDirectory(prefix="profile-http-") as tmp:
        stack = lab.Stack(Path(tmp))
        try:
            run(stack, Path(tmp), args)
        finally:
            stack.stop()
            if args.keep:
                keep = Path(args.keep)
                keep.mkdir(parents=True, exist_ok=True)
                for name in ("pyspy.txt", "strace.txt", *os.listdir(tmp)):
                    if name.endswith((".prof", ".txt")) and (Path(tmp) / name).exists():
                        shutil.copy(Path(tmp) / name, keep / name)
    return 0


def run(stack: lab.Stack, tmp: Path, args: argparse.Namespace) -> None:
    pinned = args.pin and {0, 1} <= os.sched_getaffinity(0)
    if pinned:
        os.sched_setaffinity(0, {0})  # inherited by wrk, the members, the masters, py-spy
    members = stack.nginx_members({"index.html": BODY})
    port, master = stack.hbfork(
        "http", members, "profiled", [sys.executable, "-m", "loadtest.bench.profile.worker"],
        log=f'access = "{tmp}/access.log"' if args.access_log else "",
        env={"HBFORK_PROFILE_DIR": str(tmp)})
    nginx_port, nginx_master = stack.nginx_http_proxy(members)
    urls = {"hbfork": f"http://127.0.0.1:{port}/index.html",
            "nginx": f"http://127.0.0.1:{nginx_port}/index.html"}
    wait_http("127.0.0.1", port, "/index.html")
    wait_http("127.0.0.1", nginx_port, "/index.html")
    pids = {"hbfork": wait_children(master)[-1], "nginx": wait_children(nginx_master)[0]}
    if pinned:
        # Each proxy's worker gets a core of its own (on 2 cores the other one then limits
        # nginx's requests/s, not its CPU per request).
        for pid in pids.values():
            os.sched_setaffinity(pid, {1})
    print(f"one hbfork worker (pid {pids['hbfork']}) and one nginx worker over 2 nginx members;"
          f" wrk -t1 -c{args.connections} -d{args.seconds:g}s; {os.cpu_count()} CPUs"
          f"{' (workers on CPU 1, the rest on CPU 0)' if pinned else ''}; "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    for url in urls.values():
        loopback_wrk(url, 1, args.connections)  # warm up pools and caches
    rounds: dict[str, list[dict[str, float]]] = {"hbfork": [], "nginx": []}
    for number in range(args.rounds):
        order = list(urls) if number % 2 == 0 else list(reversed(urls))
        for name in order:
            result = measure(urls[name], pids[name], args)
            rounds[name].append(result)
            print(f"  round {number + 1} {name:<7} {result['rps']:>8.0f} req/s "
                  f"{result['cpu_us']:6.1f} CPU µs/req  p99 {result['p99']:.2f} ms"
                  + ("  (errors!)" if result["errors"] else ""), flush=True)
    base = {name: {k: statistics.median(r[k] for r in runs)
                   for k in ("rps", "cpu_us", "user_us", "sys_us", "p99")}
            for name, runs in rounds.items()}
    cpu = base["hbfork"]["cpu_us"]
    spy = None
    if PY_SPY:
        spy_run, spy = with_pyspy(urls["hbfork"], pids["hbfork"], args, tmp / "pyspy.txt")
        print(f"  py-spy  run: {spy_run['rps']:.0f} req/s, {spy_run['cpu_us']:.1f} µs/req, "
              f"{sum(spy.values())} samples", flush=True)
    prof_run, profile = with_cprofile(urls["hbfork"], pids["hbfork"], args, tmp)
    requests, calls = prof_run["requests"], profile["calls"]
    fixed = profile_attrib.corrected(profile["seconds"], profile["charged"])
    print(f"  cProfile run: {prof_run['rps']:.0f} req/s, {prof_run['cpu_us']:.1f} µs/req "
          f"(profiler included), {sum(calls.values()) / requests:.0f} function calls/req; "
          f"less the profiler's calibrated cost {sum(fixed.values()) / requests * 1e6:.1f} "
          f"µs/req (vs {cpu:.1f} unprofiled)", flush=True)
    report(base, spy, fixed, calls, profile["counted"], requests)
    if args.strace:
        requests, counts = with_strace(urls["hbfork"], pids["hbfork"], args, tmp / "strace.txt")
        print(f"\nsyscalls per request (strace -c -f, {requests} requests):")
        for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            if n / requests >= 0.01:
                print(f"  {name:<16}{n / requests:8.2f}")
        print(f"  {'total':<16}{sum(counts.values()) / requests:8.2f}")


def report(base: dict[str, dict[str, float]], spy: dict[str, int] | None,
           seconds: dict[str, float], calls: dict[str, float], counted: dict[str, int],
           requests: int) -> None:
    hb, ng = base["hbfork"], base["nginx"]
    print(f"\nunprofiled medians: hbfork {hb['rps']:.0f} req/s, {hb['cpu_us']:.1f} CPU µs/req "
          f"({hb['user_us']:.1f} user + {hb['sys_us']:.1f} sys), p99 {hb['p99']:.2f} ms; "
          f"nginx {ng['rps']:.0f} req/s, {ng['cpu_us']:.1f} CPU µs/req ({ng['user_us']:.1f} "
          f"user + {ng['sys_us']:.1f} sys), p99 {ng['p99']:.2f} ms; hbfork/nginx "
          f"{hb['rps'] / ng['rps']:.2f}x req/s, {hb['cpu_us'] / ng['cpu_us']:.1f}x CPU")
    total = sum(seconds.values())
    spy_total = sum(spy.values()) if spy else 0
    print(f"\n{'µs per request':<48}{'cProfile':>9}{'calls':>7}{'py-spy':>8}")
    for category in profile_attrib.ORDER:
        share = seconds.get(category, 0.0) / total if total else 0.0
        spy_us = f"{spy.get(category, 0) / spy_total * hb['cpu_us']:8.1f}" if spy_total \
            else f"{'-':>8}"
        print(f"{category:<48}{share * hb['cpu_us']:9.1f}"
              f"{calls.get(category, 0.0) / requests:7.1f}{spy_us}")
    print(f"{'total = the unprofiled worker CPU per request':<48}{hb['cpu_us']:9.1f}"
          f"{sum(calls.values()) / requests:7.1f}{hb['cpu_us'] if spy_total else 0:8.1f}")
    print(f"{'nginx as the proxy, same run':<48}{ng['cpu_us']:9.1f}")
    print("\npy-spy: share of the samples that found the worker busy, times the unprofiled "
          "total.\ncProfile: thread-CPU tottime less the profiler's calibrated cost per call, "
          "split by the map,\nscaled to the same total (what is left of the profiler's cost "
          "inflates call-heavy parts);\ncalls: Python and builtin function calls per request.")
    print("\nbuiltin calls per request (cProfile):",
          ", ".join(f"{label} {counted.get(label, 0) / requests:.2f}"
                    for label in profile_attrib.COUNTED.values()))


if __name__ == "__main__":
    sys.exit(main())
