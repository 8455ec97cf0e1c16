"""Benchmark of header rules and request IDs on the HTTP fast path: CPU per request with none
against 3 request rules + 3 response rules + a request ID, in one run (issue 26: at most 5 %
more CPU per request).

A benchmark, not a test: it prints numbers and asserts nothing. One nginx member on 127.0.0.2
(heartbeats sent for it), one hbfork worker per configuration, wrk as the client (a plain
keep-alive GET, the fast path's shape):

    none    no header rules, [request_id] header = "" (IDs off)
    rules   [http] request_headers (3 rules) and response_headers (3 rules, one `always`),
            request IDs on (the default X-Request-ID, sent back in the response)

Targets are measured in interleaved rounds; the report gives medians, the CPU time the serving
process tree spent per request, the share of requests the fast path served (from the status
page: rules must not push requests to the general path) and the ratio the issue asks about.
Take real figures on an otherwise idle machine.

    ./scripts/bench-headers [--rounds 5] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hbfork.beat.beacon import Beacon
from loadtest.bench import tools, wrk
from loadtest.bench.lab.loopback import NGINX
from loadtest.bench.proc_stats import tree_cpu
from loadtest.bench.procs import free_port
from loadtest.bench.programs.configs import nginx_backend_conf
from loadtest.bench.programs.servers import Server, spawn, spawn_hbfork, wait_http

MEMBER = "127.0.0.2"
KINDS = ("none", "rules")
RULES = """request_headers = ["set X-Env prod", "unset X-Debug", "append X-Via hbfork"]
response_headers = ["unset Server", "always set X-Frame-Options DENY",
                    "set Strict-Transport-Security max-age=600"]
"""


def config(kind: str, port: int, heartbeat_port: int, status_port: int, member: str,
           workdir: Path) -> str:
    return f"""[proxy]
listen = ["127.0.0.1:{port}"]
workers = 1
allow_root = true
max_connections = 20000
[heartbeat]
listen = "127.0.0.1:{heartbeat_port}"
max_age = 30
rate_limit = 0
[http]
keepalive_timeout = 300
client_timeout = 300
{RULES if kind == "rules" else ""}[request_id]
enabled = {'true' if kind == 'rules' else 'false'}
[status]
listen = "127.0.0.1:{status_port}"
[log]
level = "warning"
error = "{workdir}/hbfork.log"
[[pool]]
name = "default"
members = ["{member}"]
"""


def wait_served(server: Server, timeout: float = 20) -> None:
    """Until the front answers 200 (its member known from heartbeats)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
            conn.request("GET", "/index.html")
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{server.name} did not answer within {timeout:g}s:\n{server.proc.tail()}")


def totals(status_port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", status_port, timeout=5)
    try:
        conn.request("GET", "/status.json")
        return json.loads(conn.getresponse().read())["totals"]
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-headers",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    tools.require("scripts/bench-headers", "wrk", "nginx")
    with tempfile.TemporaryDirectory(prefix="bench-headers-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # nginx's workers run unprivileged
        servers: list[Server] = []
        beacons: list[Beacon] = []
        try:
            port = free_port(MEMBER)
            directory = base / "member"
            directory.mkdir()
            conf = directory / "nginx.conf"
            conf.write_text(nginx_backend_conf(directory, "m1", MEMBER, port))
            member = Server("m1", MEMBER, port,
                            spawn("m1", [NGINX, "-c", str(conf), "-p", str(directory)],
                                  directory), directory)
            servers.append(member)
            wait_http(member)
            targets: dict[str, tuple[Server, int]] = {}
            for kind in KINDS:
                front, hb_port = free_port(), free_port(kind=socket.SOCK_DGRAM)
                status_port = free_port()
                home = base / kind
                home.mkdir()
                path = home / "hbfork.toml"
                path.write_text(config(kind, front, hb_port, status_port,
                                       f"{MEMBER}:{port}", home))
                server = Server(kind, "127.0.0.1", front, spawn_hbfork(kind, path, home), home)
                servers.append(server)
                targets[kind] = (server, status_port)
                beacon = Beacon(("127.0.0.1", hb_port), port=port, source=MEMBER, interval=0.5)
                beacon.start(lambda: (100, 0))
                beacons.append(beacon)
            for server, _ in targets.values():
                wait_served(server)
                if wrk.run(server.url + "/index.html", args.connections, 2, 1, check=True,
                           timeout=None)["non2xx"]:  # and warm up
                    raise SystemExit(f"{server.name} does not answer 200 to every request")
            print(f"1 nginx member; 1 hbfork worker each; wrk -t1 -c{args.connections} GET "
                  f"/index.html, {args.seconds:g}s x {args.rounds} rounds; "
                  f"{os.cpu_count()} CPUs", flush=True)
            results: dict[str, list[dict]] = {k: [] for k in targets}
            for number in range(args.rounds):
                for kind, (server, status_port) in targets.items():
                    cpu, before = tree_cpu(server.proc.pid), totals(status_port)
                    result = wrk.run(server.url + "/index.html", args.connections,
                                     args.seconds, 1, check=True, timeout=None)
                    after = totals(status_port)
                    result["cpu_us"] = (tree_cpu(server.proc.pid) - cpu) / result["requests"] \
                        * 1e6
                    served = after["requests"] - before["requests"]
                    result["fast"] = (after["fast_path"] - before["fast_path"]) / max(1, served)
                    results[kind].append(result)
                    print(f"  round {number + 1} {kind:<6} {result['rps']:>8.0f} req/s "
                          f"{result['cpu_us']:6.1f} CPU us/req  p99 {result['p99']:.2f} ms  "
                          f"fast path {result['fast'] * 100:.0f}%"
                          + (f"  non-2xx {result['non2xx']}" if result["non2xx"] else ""),
                          flush=True)
            report(results)
        finally:
            for beacon in beacons:
                beacon.stop()
            for server in reversed(servers):
                server.stop()
    return 0


def report(results: dict[str, list[dict]]) -> None:
    median = {k: {m: statistics.median(r[m] for r in runs)
                  for m in ("rps", "cpu_us", "p99", "fast")} for k, runs in results.items()}
    print(f"\n{'configuration':<16}{'req/s':>9}{'CPU us/req':>12}{'p99 ms':>9}{'fast path':>11}")
    for kind, m in median.items():
        print(f"{kind:<16}{m['rps']:>9.0f}{m['cpu_us']:>12.1f}{m['p99']:>9.2f}"
              f"{m['fast'] * 100:>10.0f}%")
    cpu = median["rules"]["cpu_us"] / median["none"]["cpu_us"]
    rps = median["rules"]["rps"] / median["none"]["rps"]
    print(f"rules vs none: {cpu:.3f}x the CPU per request ({(cpu - 1) * 100:+.1f}%; target: "
          f"at most +5%), {rps:.3f}x the requests/s")


if __name__ == "__main__":
    sys.exit(main())
