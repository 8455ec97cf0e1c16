"""AJP members: hbfork's AJP pool against Apache's mod_proxy_ajp, in front of the same Tomcats.

A benchmark, not a test. Two Tomcat 10 (Debian's tomcat10; private CATALINA_BASEs made by
loadtest.bench.programs.tomcat) with an AJP/1.3 connector each on 127.0.0.2/.3, secretRequired,
jvmRoute node1/node2, serving one small servlet. In front: hbfork (`protocol = "ajp"`, --workers
workers, heartbeats sent for the Tomcats from their addresses) and Apache httpd (event MPM,
mod_proxy_balancer with `BalancerMember ajp://…` members, lbmethod=byrequests, in its own
ServerRoot). wrk over keep-alive GETs the servlet through each front; rounds interleave the
two; ratios are taken within a round. CPU is the front's (every process of it) and the
Tomcats', per 1000 requests. --body N also sends N-byte POST bodies (a wrk Lua script).

    ./scripts/bench-ajp [--rounds 3] [--seconds 8] [--connections 32] [--workers 2]

The machine must be otherwise idle for real figures (the lead takes them alone).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from loadtest.bench import tools, wrk
from loadtest.bench.lab import loopback as lab
from loadtest.bench.proc_stats import cpu_seconds
from loadtest.bench.procs import children, free_port, wait_until
from loadtest.bench.programs import tomcat
from loadtest.bench.programs.configs import MODULES, unprivileged

PATH = "/bench"


def start_tomcats(stack: lab.Stack) -> list[tuple[str, int, str]]:
    """Two Tomcats with AJP connectors: [(ip, port, route)], once both listen."""
    classes = tomcat.build_servlet(stack.tmp / "servlet")
    found = []
    for number, ip in enumerate(lab.MEMBER_IPS, 1):
        port, route = free_port(ip), f"node{number}"
        argv = tomcat.prepare_base(stack.tmp / route, classes, ip, port, route, threads=100,
                                   heap="512m")
        stack.start(argv, f"tomcat-{route}.log")
        found.append((ip, port, route))
    for ip, port, route in found:
        wait_until(_listening(ip, port), 90, f"tomcat {route}")
    return found


def _listening(ip: str, port: int) -> Callable[[], bool]:
    def listens() -> bool:
        try:
            with socket.create_connection((ip, port), timeout=1):
                return True
        except OSError:
            return False
    return listens


def hbfork_front(stack: lab.Stack, tomcats: list[tuple[str, int, str]],
                 workers: int, argv: list[str] | None = None,
                 env: dict[str, str] | None = None) -> tuple[int, int]:
    """hbfork's AJP pool over `tomcats` (`argv` + CONF, default `python -m hbfork run -c`):
    (port, master pid)."""
    port = free_port()
    heartbeat_port = free_port(kind=socket.SOCK_DGRAM)
    members = "".join(f'[[pool.member]]\naddress = "{ip}:{p}"\nroute = "{route}"\n'
                      for ip, p, route in tomcats)
    conf = stack.tmp / "hbfork-ajp.toml"
    conf.write_text(f"""
[proxy]
listen = ["127.0.0.1:{port}"]
workers = {workers}
allow_root = true
max_connections = 20000
backlog = 4096
[heartbeat]
listen = "127.0.0.1:{heartbeat_port}"
max_age = 30
[status]
listen = ""
[log]
level = "warning"
[[pool]]
name = "tomcat"
protocol = "ajp"
ajp_secret = "{tomcat.SECRET}"
stickysession = "JSESSIONID|jsessionid"
{members}
[[route]]
path = "/"
pool = "tomcat"
""")
    argv = argv or [sys.executable, "-m", "hbfork", "run", "-c"]
    pid = stack.start([*argv, str(conf)], "hbfork-ajp.log", {**os.environ, **(env or {})}).pid
    stack.beat(heartbeat_port, [(ip, p) for ip, p, _ in tomcats])
    return port, pid


def apache_front(stack: lab.Stack, tomcats: list[tuple[str, int, str]]) -> tuple[int, int]:
    directory = stack.tmp / "apache"
    (directory / "run").mkdir(parents=True)
    os.chmod(directory, 0o755)
    user, group = unprivileged()
    port = free_port()
    members = "".join(f'    BalancerMember "ajp://{ip}:{p}" route={route} '
                      f'secret={tomcat.SECRET}\n' for ip, p, route in tomcats)
    conf = directory / "httpd.conf"
    conf.write_text(f"""# scripts/bench-ajp: Apache httpd in front of Tomcat (mod_proxy_ajp)
ServerRoot {directory}
ServerName front.bench
DefaultRuntimeDir {directory}/run
PidFile {directory}/run/httpd.pid
ErrorLog {directory}/error.log
LogLevel warn
User {user}
Group {group}
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule proxy_module {MODULES}/mod_proxy.so
LoadModule proxy_ajp_module {MODULES}/mod_proxy_ajp.so
LoadModule proxy_balancer_module {MODULES}/mod_proxy_balancer.so
LoadModule slotmem_shm_module {MODULES}/mod_slotmem_shm.so
LoadModule lbmethod_byrequests_module {MODULES}/mod_lbmethod_byrequests.so
# Debian's mpm_event.conf defaults; keep-alive without a request limit.
StartServers 2
MinSpareThreads 25
MaxSpareThreads 75
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 150
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 300
Listen 127.0.0.1:{port}
<Proxy "balancer://tomcat">
{members}    ProxySet lbmethod=byrequests stickysession=JSESSIONID|jsessionid
</Proxy>
ProxyPass        "/" "balancer://tomcat/"
""")
    pid = stack.start(["apache2", "-f", str(conf), "-DFOREGROUND"], "apache.log").pid
    return port, pid


def _serving(port: int) -> Callable[[], bool]:
    def serves() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n"
                             "\r\n".encode())
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False
    return serves


def run_one(port: int, front: list[int], members: list[int], args: argparse.Namespace,
            script: Path | None) -> dict[str, float]:
    front_cpu, member_cpu = cpu_seconds(*front), cpu_seconds(*members)
    result = wrk.run(f"http://127.0.0.1:{port}{PATH}", args.connections, args.seconds,
                     threads=2, script=["-s", str(script)] if script else None)
    front_cpu, member_cpu = cpu_seconds(*front) - front_cpu, cpu_seconds(*members) - member_cpu
    requests = result.get("requests", 0) or 0
    return {"rps": result.get("rps", 0.0), "errors": wrk.error_count(result),
            "front_ms": front_cpu / requests * 1e6 if requests else 0.0,
            "tomcat_ms": member_cpu / requests * 1e6 if requests else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-ajp",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="hbfork's workers")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds of load through each front (twice) before measuring")
    parser.add_argument("--body", type=int, default=0, help="POST bodies of this many bytes")
    args = parser.parse_args(argv)
    tools.require("scripts/bench-ajp", "wrk", "apache2", "java")
    reason = tomcat.unavailable_reason()
    if reason:
        print(f"scripts/bench-ajp: {reason}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-ajp-") as tmp:
        os.chmod(tmp, 0o755)
        stack = lab.Stack(Path(tmp))
        try:
            run(stack, args)
        finally:
            stack.stop()
    return 0


def run(stack: lab.Stack, args: argparse.Namespace) -> None:
    tomcats = start_tomcats(stack)
    member_pids = [p.pid for p in stack.procs]
    fronts = {"hbfork": hbfork_front(stack, tomcats, args.workers),
              "apache": apache_front(stack, tomcats)}
    for name, (port, _) in fronts.items():
        wait_until(_serving(port), 60, f"{name} to serve through AJP")
    pids = {name: [pid, *children(pid)] for name, (_, pid) in fronts.items()}
    script = None
    if args.body:
        script = stack.tmp / "post.lua"
        script.write_text(f'wrk.method = "POST"\nwrk.body = string.rep("x", {args.body})\n'
                          'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    for port, _ in list(fronts.values()) * 2:  # warm the JVMs' JIT and both fronts' pools
        wrk.run(f"http://127.0.0.1:{port}{PATH}", args.connections, args.warmup, threads=2)
    print(f"{args.connections} connections, {args.seconds:g}s x {args.rounds} rounds; hbfork "
          f"{args.workers} workers; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
          flush=True)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in fronts}
    names = list(fronts)
    for number in range(args.rounds):
        for name in names[number % 2:] + names[:number % 2]:
            result = run_one(fronts[name][0], pids[name], member_pids, args, script)
            results[name].append(result)
            print(f"  round {number + 1} {name:<8}{result['rps']:>9.0f} req/s  front "
                  f"{result['front_ms']:6.1f} CPU ms/1000  tomcats {result['tomcat_ms']:6.1f}"
                  + ("  (errors!)" if result["errors"] else ""), flush=True)
    report(results, args.rounds)


def report(results: dict[str, list[dict[str, float]]], rounds: int) -> None:
    print(f"\n{'front':<9}{'req/s':>9}{'min-max':>16}{'x apache':>10}{'front CPU ms/1000':>19}"
          f"{'tomcat CPU ms/1000':>20}{'errors':>8}")
    ref = results["apache"]
    for name, runs in results.items():
        rps = [r["rps"] for r in runs]
        ratio = statistics.median(r["rps"] / ref[i]["rps"] for i, r in enumerate(runs)
                                  if ref[i]["rps"]) if any(r["rps"] for r in ref) else 0.0
        print(f"{name:<9}{statistics.median(rps):>9.0f}"
              f"{f'{min(rps):.0f}-{max(rps):.0f}':>16}{ratio:>10.2f}"
              f"{statistics.median(r['front_ms'] for r in runs):>19.1f}"
              f"{statistics.median(r['tomcat_ms'] for r in runs):>20.1f}"
              f"{sum(int(r['errors']) for r in runs):>8}")
    print(f"(medians of {rounds} rounds; x apache: median of the same-round ratios; issue 25: "
          ">= 1.0x Apache's requests/s)")


if __name__ == "__main__":
    raise SystemExit(main())
