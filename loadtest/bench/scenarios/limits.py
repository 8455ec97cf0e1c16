"""Benchmark of per-client limits: what [limits] costs on the fast path, in one run.

A benchmark, not a test: it prints numbers and asserts nothing. Three nginx members on
127.0.0.2-4 (heartbeats sent for them), one hbfork worker per configuration:

    off         no [limits] (the reference)
    header      requests_per_second keyed by "header:X-Client"; wrk with a Lua script that
                gives each request one of 10,000 X-Client values: 10,000 distinct clients,
                each request one hash and one update of a shared slot (never over the limit)
    address     requests_per_second and connections_per_client keyed by address, measured
                twice: with wrk (its connections are one client, 127.0.0.1), and with
                loadtest.bench.clients.many: 10,000 keep-alive connections from 10,000
                loopback sources (127.1.x.y) used in turn, 10,000 distinct clients; `off`
                is measured with that client too, as its reference

Targets are measured in interleaved rounds; the report gives medians, the CPU time the
serving process tree spent per request (for the many-client runs: after its connections
are open), and each configuration's ratio to `off` with the same client (target: at most
3 % more CPU per request).

    ./scripts/bench-limits [--rounds 5] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from hbfork.beat.beacon import Beacon
from loadtest.bench import tools, wrk
from loadtest.bench.lab.loopback import NGINX
from loadtest.bench.proc_stats import tree_cpu
from loadtest.bench.procs import free_port
from loadtest.bench.programs.configs import nginx_backend_conf
from loadtest.bench.programs.servers import Server, spawn, spawn_hbfork, wait_http

MEMBERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
CLIENTS = 10_000
WRK_SCRIPT = """
-- every request: the next of CLIENTS client keys
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/index.html", {["X-Client"] = "client-" .. (n % CLIENTS)})
end
""".replace("CLIENTS", str(CLIENTS))
LIMITS = {
    "off": "",
    "header": '[limits]\nrequests_per_second = 1000\nburst = 1000\nkey = "header:X-Client"\n',
    "address": "[limits]\nrequests_per_second = 1000000\nburst = 1000000\n"
               "connections_per_client = 100\n",
}
RUNS = (("off", "wrk"), ("header", "wrk"), ("address", "wrk"), ("off", "many"),
        ("address", "many"))


def config(kind: str, port: int, heartbeat_port: int, members: list[tuple[str, int]],
           workdir: Path) -> str:
    text = f"""[proxy]
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
[status]
listen = ""
[log]
level = "warning"
error = "{workdir}/hbfork.log"
{LIMITS[kind]}"""
    for ip, p in members:
        text += f'[[member]]\naddress = "{ip}:{p}"\n'
    return text


def run_wrk(url: str, script: Path, seconds: float, connections: int) -> dict:
    return wrk.run(url, connections, seconds, 1, check=True, timeout=None,
                   script=["-s", str(script)])


def measure(server: Server, client: str, script: Path, seconds: float,
            connections: int) -> dict:
    """One run, with the CPU the front's process tree spent per request."""
    if client == "wrk":
        cpu = tree_cpu(server.proc.pid)
        result = run_wrk(server.url, script, seconds, connections)
        result["cpu_us"] = (tree_cpu(server.proc.pid) - cpu) / result["requests"] * 1e6
        return result
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtest.bench.clients.many", f"{server.host}:{server.port}",
         str(CLIENTS), str(seconds), str(connections)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the many-client run could not open its connections")
        cpu = tree_cpu(server.proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = json.loads(proc.stdout.readline())
        result["cpu_us"] = (tree_cpu(server.proc.pid) - cpu) / max(1, result["requests"]) * 1e6
        result["p99"] = 0.0  # not measured by this client
    finally:
        proc.stdin.close()
        proc.wait(30)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-limits",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    tools.require("scripts/bench-limits", "wrk", "nginx")
    for tool in (wrk.WRK, NGINX):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # nginx's workers run unprivileged
        servers: list[Server] = []
        beacons: list[Beacon] = []
        try:
            members = []
            for n, ip in enumerate(MEMBERS, 1):
                port = free_port(ip)
                directory = base / f"member{n}"
                directory.mkdir()
                conf = directory / "nginx.conf"
                conf.write_text(nginx_backend_conf(directory, f"m{n}", ip, port))
                server = Server(f"m{n}", ip, port,
                                spawn(f"m{n}", [NGINX, "-c", str(conf), "-p", str(directory)],
                                      directory), directory)
                servers.append(server)
                wait_http(server)
                members.append((ip, port))
            script = base / "clients.lua"
            script.write_text(WRK_SCRIPT)
            targets: dict[str, Server] = {}
            for kind in LIMITS:
                port, hb_port = free_port(), free_port(kind=socket.SOCK_DGRAM)
                directory = base / kind
                directory.mkdir()
                conf = directory / "hbfork.toml"
                conf.write_text(config(kind, port, hb_port, members, directory))
                targets[kind] = Server(kind, "127.0.0.1", port,
                                       spawn_hbfork(kind, conf, directory), directory)
                servers.append(targets[kind])
                for ip, p in members:
                    beacon = Beacon(("127.0.0.1", hb_port), port=p, source=ip, interval=0.5)
                    beacon.start(lambda: (100, 0))
                    beacons.append(beacon)
            for server in targets.values():
                wait_http(server)
                if run_wrk(server.url, script, 2, args.connections)["non2xx"]:  # and warm up
                    raise SystemExit(f"{server.name} does not answer 200 to every request")
            print(f"3 nginx members; 1 hbfork worker each; wrk -t1 -c{args.connections} "
                  f"({CLIENTS} X-Client values) or {CLIENTS} address clients with "
                  f"{args.connections} in flight, {args.seconds:g}s x {args.rounds} rounds; "
                  f"{os.cpu_count()} CPUs", flush=True)
            results: dict[str, list[dict]] = {f"{k}/{c}": [] for k, c in RUNS}
            for number in range(args.rounds):
                for kind, client in RUNS:
                    result = measure(targets[kind], client, script, args.seconds,
                                     args.connections)
                    name = f"{kind}/{client}"
                    results[name].append(result)
                    print(f"  round {number + 1} {name:<13} {result['rps']:>8.0f} req/s "
                          f"{result['cpu_us']:6.1f} CPU us/req  p99 {result['p99']:.2f} ms"
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
    median = {k: {m: statistics.median(r[m] for r in runs) for m in ("rps", "cpu_us", "p99")}
              for k, runs in results.items()}
    print(f"\n{'limits/client':<15}{'req/s':>9}{'CPU us/req':>12}{'p99 ms':>9}")
    for kind, m in median.items():
        print(f"{kind:<15}{m['rps']:>9.0f}{m['cpu_us']:>12.1f}{m['p99']:>9.2f}")
    for kind, reference, what in (("header/wrk", "off/wrk", "10,000 header keys"),
                                  ("address/wrk", "off/wrk", "one address"),
                                  ("address/many", "off/many", "10,000 addresses")):
        cpu = median[kind]["cpu_us"] / median[reference]["cpu_us"]
        print(f"{kind} vs {reference} ({what}): {cpu:.3f}x the CPU per request "
              f"({(cpu - 1) * 100:+.1f}%; target: at most +3%)")


if __name__ == "__main__":
    sys.exit(main())
