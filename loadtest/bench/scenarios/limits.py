"""Benchmark of per-client limits: what [limits] costs on the fast path, in one run.

A benchmark, not a test: it prints numbers and asserts nothing. Three nginx members on
127.0.0.2-4 (heartbeats sent for them), one hbfork worker per configuration, wrk as the client
with a Lua script that gives each request one of 10,000 X-Client values:

    off         no [limits] (the reference)
    header      requests_per_second keyed by "header:X-Client": 10,000 distinct clients, each
                request one hash and one update of a shared slot (never over the limit)
    address     requests_per_second keyed by address: wrk's connections are one client
                (127.0.0.1), each request one update of the slot its connection remembers

Targets are measured in interleaved rounds; the report gives medians, the CPU time the
serving process tree spent per request, and each configuration's ratio to `off` (target:
at most 3 % more CPU per request).

    ./scripts/bench-limits [--rounds 5] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
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
    "address": "[limits]\nrequests_per_second = 1000000\nburst = 1000000\n",
}


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
            print(f"3 nginx members; 1 hbfork worker each; wrk -t1 -c{args.connections}, "
                  f"{CLIENTS} X-Client values, {args.seconds:g}s x {args.rounds} rounds; "
                  f"{os.cpu_count()} CPUs", flush=True)
            results: dict[str, list[dict]] = {k: [] for k in targets}
            for number in range(args.rounds):
                for kind, server in targets.items():
                    cpu = tree_cpu(server.proc.pid)
                    result = run_wrk(server.url, script, args.seconds, args.connections)
                    result["cpu_us"] = (tree_cpu(server.proc.pid) - cpu) / result["requests"] \
                        * 1e6
                    results[kind].append(result)
                    print(f"  round {number + 1} {kind:<8} {result['rps']:>8.0f} req/s "
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
    print(f"\n{'limits':<10}{'req/s':>9}{'CPU us/req':>12}{'p99 ms':>9}")
    for kind, m in median.items():
        print(f"{kind:<10}{m['rps']:>9.0f}{m['cpu_us']:>12.1f}{m['p99']:>9.2f}")
    for kind in ("header", "address"):
        cpu = median[kind]["cpu_us"] / median["off"]["cpu_us"]
        print(f"{kind} vs off: {cpu:.3f}x the CPU per request ({(cpu - 1) * 100:+.1f}%; "
              f"target: at most +3%)")


if __name__ == "__main__":
    sys.exit(main())
