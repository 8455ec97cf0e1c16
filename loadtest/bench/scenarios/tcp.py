"""Large transfers through TCP mode: throughput, CPU per MiB and worker RSS, in one run.

A benchmark, not a test. Two nginx members (127.0.0.2/.3, sendfile on) serve a 1 MiB and a
100 MiB file. In front: hbfork in TCP mode (one worker) from this tree, optionally the same
from another tree (--baseline DIR, e.g. `git archive COMMIT | tar -x -C DIR`, as "hbfork-base"),
nginx's `stream` proxy (one worker) and HAProxy in tcp mode (one thread) when installed, and
"direct" (wrk straight to a member: the ceiling of this machine). wrk downloads the file over
keep-alive connections (-c2 for 1 MiB, -c1 for 100 MiB) for --seconds; contenders are
interleaved in rounds, and ratios are taken within a round.

RSS: hbfork's worker's VmRSS is sampled every 20 ms during each 100 MiB run; growth = the
highest sample less the RSS just before the run (the issue's target: < 16 MiB).

    ./scripts/bench-tcp [--rounds 3] [--seconds 6] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from loadtest.bench import tools, wrk
from loadtest.bench.lab import loopback as lab
from loadtest.bench.proc_stats import RssSampler, cpu_seconds, rss_kib
from loadtest.bench.procs import children, wait_children, wait_http

SIZES = {"1MiB": 1 << 20, "100MiB": 100 << 20}
CONNECTIONS = {"1MiB": 2, "100MiB": 1}


def run_one(url: str, size: str, pids: list[int], worker: int | None,
            seconds: float) -> dict[str, float]:
    before_rss = rss_kib(worker) if worker else 0
    sampler = RssSampler(worker) if worker and size == "100MiB" else None
    if sampler:
        sampler.start()
    cpu = cpu_seconds(*pids)
    result = wrk.run(url, CONNECTIONS[size], seconds, threads=1, check=True)
    cpu = cpu_seconds(*pids) - cpu
    mib = result["requests"] * SIZES[size] / (1 << 20)
    out = {"mib_s": result["rps"] * SIZES[size] / (1 << 20), "errors": wrk.error_count(result),
           "cpu_ms_per_mib": cpu / mib * 1e3 if mib else 0.0, "requests": result["requests"]}
    if sampler:
        out["rss_growth_mib"] = (sampler.stop() - before_rss) / 1024
        out["rss_mib"] = sampler.peak / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-tcp",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="per run")
    parser.add_argument("--baseline", metavar="DIR", help="also hbfork from this source tree")
    args = parser.parse_args(argv)
    tools.require("scripts/bench-tcp", "wrk", "nginx", "haproxy")
    with tempfile.TemporaryDirectory(prefix="bench-tcp-") as tmp:
        stack = lab.Stack(Path(tmp))
        try:
            run(stack, args)
        finally:
            stack.stop()
    return 0


def start(stack: lab.Stack, members: list[tuple[str, int]], args: argparse.Namespace
          ) -> dict[str, tuple[int, list[int], int | None]]:
    """name -> (port, pids whose CPU counts, hbfork worker pid or None)."""
    fronts: dict[str, tuple[int, list[int], int | None]] = {}
    port, master = stack.hbfork("tcp", members, "tcp")
    fronts["hbfork"] = (port, [master], None)
    if args.baseline:
        source = os.path.abspath(args.baseline)
        port, master = stack.hbfork("tcp", members, "tcp-base",
                                    env={"PYTHONPATH": source})
        fronts["hbfork-base"] = (port, [master], None)
    if os.path.exists(lab.NGINX_STREAM):
        port, master = stack.nginx_stream_proxy(members)
        fronts["nginx-stream"] = (port, [master], None)
    else:
        print(f"no {lab.NGINX_STREAM} (Debian: libnginx-mod-stream): no nginx stream proxy")
    if os.access(lab.HAPROXY, os.X_OK):
        port, master = stack.haproxy_tcp(members)
        fronts["haproxy-tcp"] = (port, [master], None)
    for name, (port, pids, _) in list(fronts.items()):
        wait_http("127.0.0.1", port, "/1MiB")
        workers = wait_children(pids[0]) if not name.startswith("haproxy") else []
        fronts[name] = (port, pids + workers,
                        workers[-1] if name.startswith("hbfork") else None)
    return fronts


def run(stack: lab.Stack, args: argparse.Namespace) -> None:
    members = stack.nginx_members({name: os.urandom(size) for name, size in SIZES.items()})
    fronts = start(stack, members, args)
    urls = {name: f"http://127.0.0.1:{port}" for name, (port, _, _) in fronts.items()}
    urls["direct"] = f"http://{members[0][0]}:{members[0][1]}"
    pids = {name: pids for name, (_, pids, _) in fronts.items()}
    pids["direct"] = [stack.procs[0].pid, *children(stack.procs[0].pid)]
    workers = {name: worker for name, (_, _, worker) in fronts.items()}
    print(f"wrk -t1, keep-alive downloads, {args.seconds:g}s x {args.rounds} rounds per "
          f"contender and size; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
          flush=True)
    for url in urls.values():
        wrk.run(f"{url}/1MiB", 2, 1, threads=1, check=True)  # warm up
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    names = list(urls)
    for number in range(args.rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        for size in SIZES:
            for name in order:
                result = run_one(f"{urls[name]}/{size}", size, pids[name], workers.get(name),
                                 args.seconds)
                results.setdefault((name, size), []).append(result)
                rss = f"  worker RSS peak {result['rss_mib']:.1f} MiB " \
                    f"(+{result['rss_growth_mib']:.1f})" if "rss_growth_mib" in result else ""
                print(f"  round {number + 1} {size:<7}{name:<13}{result['mib_s']:>8.0f} MiB/s "
                      f"{result['cpu_ms_per_mib']:6.2f} CPU ms/MiB{rss}"
                      + ("  (errors!)" if result["errors"] else ""), flush=True)
    report(results, names, args.rounds)


def report(results: dict[tuple[str, str], list[dict[str, float]]], names: list[str],
           rounds: int) -> None:
    print(f"\n{'size':<8}{'contender':<14}{'MiB/s':>8}{'min-max':>14}{'CPU ms/MiB':>12}"
          f"{'x nginx':>9}{'x haproxy':>10}{'RSS growth':>12}")
    for size in SIZES:
        for name in names:
            runs = results[(name, size)]
            mib = [r["mib_s"] for r in runs]
            ratios = []
            for ref in ("nginx-stream", "haproxy-tcp"):
                if (ref, size) in results:
                    ratios.append(statistics.median(
                        r["mib_s"] / results[(ref, size)][i]["mib_s"] for i, r in
                        enumerate(runs)))
                else:
                    ratios.append(float("nan"))
            rss = [r["rss_growth_mib"] for r in runs if "rss_growth_mib" in r]
            rss_text = f"{max(rss):.1f} MiB" if rss else "-"
            print(f"{size:<8}{name:<14}{statistics.median(mib):>8.0f}"
                  f"{f'{min(mib):.0f}-{max(mib):.0f}':>14}"
                  f"{statistics.median(r['cpu_ms_per_mib'] for r in runs):>12.2f}"
                  f"{ratios[0]:>9.2f}{ratios[1]:>10.2f}{rss_text:>12}")
    if any(name == "hbfork-base" for name in names):
        for size in SIZES:
            ratio = statistics.median(
                r["mib_s"] / results[("hbfork-base", size)][i]["mib_s"]
                for i, r in enumerate(results[("hbfork", size)]))
            print(f"hbfork vs hbfork-base, {size}: {ratio:.2f}x the throughput (same rounds)")
    print(f"(medians of {rounds} rounds; ratios: median of the same-round ratios; RSS growth: "
          "the largest over the rounds)")


if __name__ == "__main__":
    sys.exit(main())
