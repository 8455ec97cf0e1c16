"""Benchmark of HTTP mode and TCP mode against going to a backend directly, in one run.

A benchmark, not a test: it prints numbers and asserts nothing. Everything runs on loopback:
two backends (nginx serving a small file when /usr/sbin/nginx exists, else `hbfork backend`),
one `hbfork run` in HTTP mode and one in TCP mode in front of them, and wrk as the client.
When nginx exists, nginx as a reverse proxy (one worker, upstream keep-alive) is measured too:
the issue's target is HTTP mode at >= 0.8x of it.
Targets are measured in interleaved rounds (direct, http, tcp, direct, ...) so a noisy
neighbour hurts all of them alike; the report gives the median of the rounds and ratios to
direct, and the CPU time the serving process tree spent per request (less sensitive to other
load on the machine than requests/s).

    ./scripts/bench-http [--rounds 3] [--seconds 5] [--connections 32] [--workers 1]
                         [--baseline DIR]

--baseline DIR also runs HTTP mode from another source tree (say, `git archive main` unpacked
there) as the target "http-base", so a change is measured against what it replaces in the same
run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
from pathlib import Path

from loadtest.bench import tools, wrk
from loadtest.bench.lab.loopback import NGINX, Stack
from loadtest.bench.proc_stats import tree_cpu
from loadtest.bench.procs import free_port, wait_http

BACKEND_IPS = ("127.0.0.2", "127.0.0.3")
BODY = b"x" * 612  # about nginx's default index page


def start_backends(stack: Stack, kind: str) -> tuple[list[tuple[str, int]], str]:
    port = free_port(BACKEND_IPS[0])
    addresses = [(ip, port) for ip in BACKEND_IPS]
    if kind == "nginx":
        root = stack.tmp / "www"
        root.mkdir()
        (root / "index.html").write_bytes(BODY)
        listens = "".join(f"listen {ip}:{port} backlog=4096;" for ip in BACKEND_IPS)
        conf = stack.tmp / "nginx.conf"
        conf.write_text(f"""
worker_processes 1; daemon off; pid {stack.tmp}/nginx.pid; error_log {stack.tmp}/nginx.err;
{'user root;' if os.geteuid() == 0 else ''}
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 100000; server {{ {listens} root {root}; }} }}
""")
        stack.start([NGINX, "-c", str(conf), "-p", str(stack.tmp)], "nginx.log")
        path = "/index.html"
    else:
        for ip in BACKEND_IPS:
            stack.start([sys.executable, "-m", "hbfork", "backend", "--listen", f"{ip}:{port}",
                         "--capacity", "100", "--name", ip], f"backend-{ip}.log")
        path = "/"
    for ip, p in addresses:
        wait_http(ip, p, path)
    return addresses, path


def start_nginx_proxy(stack: Stack, members: list[tuple[str, int]]) -> tuple[int, int]:
    """nginx as a reverse proxy over the same members, in a process of its own."""
    port = free_port()
    servers = "".join(f"server {ip}:{p};" for ip, p in members)
    conf = stack.tmp / "nginx-proxy.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {stack.tmp}/nginx-proxy.pid;
error_log {stack.tmp}/nginx-proxy.err;
{'user root;' if os.geteuid() == 0 else ''}
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 100000;
  upstream members {{ {servers} keepalive 64; }}
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://members; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }} }}
""")
    stack.start([NGINX, "-c", str(conf), "-p", str(stack.tmp)], "nginx-proxy.log")
    return port, stack.procs[-1].pid


def start_proxy(stack: Stack, mode: str, members: list[tuple[str, int]],
                workers: int, source: str | None = None) -> tuple[int, int]:
    """hbfork in `mode` over `members`; from the source tree `source` if given."""
    port = free_port()
    heartbeat_port = free_port(kind=socket.SOCK_DGRAM)
    name = f"{mode}-base" if source else mode
    conf = stack.tmp / f"hbfork-{name}.toml"
    member_lines = "".join(f'[[member]]\naddress = "{ip}:{p}"\n' for ip, p in members)
    conf.write_text(f"""
[proxy]
listen = ["127.0.0.1:{port}"]
mode = "{mode}"
workers = {workers}
allow_root = true
[heartbeat]
listen = "127.0.0.1:{heartbeat_port}"
max_age = 30
[status]
listen = ""
[log]
level = "warning"
{member_lines}""")
    env = {**os.environ, "PYTHONPATH": source} if source else None
    # `python -m` puts the working directory ahead of PYTHONPATH on sys.path: run the
    # baseline from its own tree, or the tree this script was started in is what runs.
    pid = stack.start([sys.executable, "-m", "hbfork", "run", "-c", str(conf)],
                      f"hbfork-{name}.log", env, cwd=source).pid
    stack.beat(heartbeat_port, members)  # plenty of ready capacity, from each member's IP
    return port, pid


def run_wrk(url: str, seconds: float, connections: int, threads: int) -> dict:
    # wrk's own --timeout (2 s), as this benchmark has always measured.
    result = wrk.run(url, connections, seconds, threads, timeout=None, check=True)
    result["errors"] = wrk.error_count(result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-http",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="per target per round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="hbfork workers")
    parser.add_argument("--backend", choices=("auto", "nginx", "hbfork"), default="auto")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also run HTTP mode from this source tree, as http-base")
    args = parser.parse_args(argv)
    tools.require("scripts/bench-http", "wrk", "nginx")
    kind = args.backend
    if kind == "auto":
        kind = "nginx" if os.access(NGINX, os.X_OK) else "hbfork"
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        stack = Stack(Path(tmp))
        try:
            members, path = start_backends(stack, kind)
            targets = {"direct": f"http://{members[0][0]}:{members[0][1]}{path}"}
            pids = {"direct": stack.procs[0].pid}
            for mode in ("http", "tcp"):
                port, pids[mode] = start_proxy(stack, mode, members, args.workers)
                wait_http("127.0.0.1", port, path)
                targets[mode] = f"http://127.0.0.1:{port}{path}"
            if args.baseline:
                port, pids["http-base"] = start_proxy(stack, "http", members, args.workers,
                                                      os.path.abspath(args.baseline))
                wait_http("127.0.0.1", port, path)
                targets["http-base"] = f"http://127.0.0.1:{port}{path}"
            if os.access(NGINX, os.X_OK):
                port, pids["nginx-proxy"] = start_nginx_proxy(stack, members)
                wait_http("127.0.0.1", port, path)
                targets["nginx-proxy"] = f"http://127.0.0.1:{port}{path}"
            print(f"backends: 2 x {kind}; hbfork workers: {args.workers}; wrk -t{args.threads} "
                  f"-c{args.connections}, {args.seconds:g}s x {args.rounds} rounds per target; "
                  f"{os.cpu_count()} CPUs", flush=True)
            for url in targets.values():
                run_wrk(url, 1, args.connections, args.threads)  # warm up caches and pools
            results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
            for round_number in range(args.rounds):
                for name, url in targets.items():
                    cpu = tree_cpu(pids[name])
                    result = run_wrk(url, args.seconds, args.connections, args.threads)
                    result["cpu_us"] = (tree_cpu(pids[name]) - cpu) / result["requests"] * 1e6
                    results[name].append(result)
                    print(f"  round {round_number + 1} {name:<11} {result['rps']:>9.0f} req/s"
                          f"  {result['cpu_us']:5.1f} CPU us/req"
                          f"  p50 {result['p50']:.2f} ms  p99 {result['p99']:.2f} ms"
                          + ("  (errors!)" if result["errors"] else ""), flush=True)
            report(results)
        finally:
            stack.stop()
    return 0


def report(results: dict[str, list[dict[str, float]]]) -> None:
    median = {name: {k: statistics.median(r[k] for r in runs)
                     for k in ("rps", "p50", "p99", "cpu_us")}
              for name, runs in results.items()}
    base = median["direct"]
    print(f"\n{'target':<12}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs direct':>11}"
          f"{'CPU us/req':>12}")
    for name, m in median.items():
        print(f"{name:<12}{m['rps']:>10.0f}{m['p50']:>9.2f}{m['p99']:>9.2f}"
              f"{m['rps'] / base['rps']:>11.2f}{m['cpu_us']:>12.1f}")
    if "http-base" in median:
        ratio = median["http"]["rps"] / median["http-base"]["rps"]
        cpu = median["http"]["cpu_us"] / median["http-base"]["cpu_us"]
        print(f"hbfork http vs http-base: {ratio:.3f}x the requests/s, {cpu:.3f}x the CPU "
              "per request")
    if "nginx-proxy" in median:
        ratio = median["http"]["rps"] / median["nginx-proxy"]["rps"]
        cpu = median["http"]["cpu_us"] / median["nginx-proxy"]["cpu_us"]
        print(f"hbfork http vs nginx-proxy: {ratio:.2f}x the requests/s (issue target >= 0.8), "
              f"{cpu:.1f}x the CPU per request")


if __name__ == "__main__":
    sys.exit(main())
