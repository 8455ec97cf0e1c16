"""Benchmark of routing and sticky sessions: what 50 hosts x 4 path routes cost, in one run.

A benchmark, not a test: it prints numbers and asserts nothing. Three nginx members on
127.0.0.2-4 (heartbeats sent for them), one hbfork worker per configuration, wrk as the client
with a Lua script that gives every request its own Host and path:

    single        one pool, no routes, no sticky sessions (the shape of every config before
                  pools existed)
    single+sticky one pool with stickysession = "JSESSIONID|jsessionid"; every request sends
                  the cookie (members have routes n1-n3)
    routed        4 pools x 3 members, 50 hosts x 4 path routes (/api/ /static/ /app/ /),
                  stickysession on every pool, every request with a cookie for its route

Targets are measured in interleaved rounds; the report gives medians, the CPU time the
serving process tree spent per request, and the ratios the issue asks about.

    ./scripts/bench-routes [--rounds 5] [--seconds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import http.client
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

MEMBERS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
HOSTS = [f"site{n}.example.com" for n in range(50)]
PATHS = ("/api/", "/static/", "/app/", "/")
WRK_SCRIPT = """
-- every request: the next host and path, a session cookie for a member's route
local hosts, paths, n = {%s}, {%s}, 0
request = function()
  n = n + 1
  local host = hosts[(n %% #hosts) + 1]
  local path = paths[(math.floor(n / #hosts) %% #paths) + 1]
  return wrk.format("GET", path .. "index.html", {
    ["Host"] = host, ["Cookie"] = "theme=dark; JSESSIONID=ABC123DEF.n" .. ((n %% 3) + 1)})
end
"""


def config(kind: str, port: int, heartbeat_port: int, members: list[tuple[str, int]],
           workdir: Path) -> str:
    head = f"""[proxy]
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
"""
    def pool(name: str) -> str:
        sticky = "" if kind == "single" else 'stickysession = "JSESSIONID|jsessionid"\n'
        text = f'[[pool]]\nname = "{name}"\n{sticky}'
        for n, (ip, p) in enumerate(members, 1):
            text += f'[[pool.member]]\naddress = "{ip}:{p}"\nroute = "n{n}"\n'
        return text

    if kind != "routed":
        return head + pool("default")
    text = head + "".join(pool(f"p{i}") for i in range(len(PATHS)))
    for host in HOSTS:
        for i, path in enumerate(PATHS):
            text += f'[[route]]\nhost = "{host}"\npath = "{path}"\npool = "p{i}"\n'
    return text


def wait_routed(server: Server, timeout: float = 20) -> None:
    """Until the front answers a routed request with 200 (members known from heartbeats)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
            conn.request("GET", "/app/index.html", headers={"Host": HOSTS[0]})
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{server.name} did not answer within {timeout:g}s:\n{server.proc.tail()}")


def run_wrk(url: str, script: Path, seconds: float, connections: int) -> dict:
    # One thread and wrk's own --timeout (2 s), as this benchmark has always measured.
    return wrk.run(url, connections, seconds, 1, check=True, timeout=None,
                   script=["-s", str(script)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-routes",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    tools.require("scripts/bench-routes", "wrk", "nginx")
    for tool in (wrk.WRK, NGINX):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-routes-") as tmp:
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
                docs = directory / "htdocs"
                for path in PATHS[:-1]:  # the same small file under every routed path
                    (docs / path.strip("/")).mkdir(mode=0o755)
                    (docs / path.strip("/") / "index.html").write_bytes(
                        (docs / "index.html").read_bytes())
                server = Server(f"m{n}", ip, port,
                                spawn(f"m{n}", [NGINX, "-c", str(conf), "-p", str(directory)],
                                      directory), directory)
                servers.append(server)
                wait_http(server)
                members.append((ip, port))
            script = base / "routes.lua"
            script.write_text(WRK_SCRIPT % (", ".join(f'"{h}"' for h in HOSTS),
                                            ", ".join(f'"{p}"' for p in PATHS)))
            targets: dict[str, Server] = {}
            for kind in ("single", "single+sticky", "routed"):
                port, hb_port = free_port(), free_port(kind=socket.SOCK_DGRAM)
                directory = base / kind.replace("+", "-")
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
                wait_routed(server)
                if run_wrk(server.url, script, 2, args.connections)["non2xx"]:  # and warm up
                    raise SystemExit(f"{server.name} does not answer 200 to every request")
            print(f"3 nginx members; 1 hbfork worker each; wrk -t1 -c{args.connections} "
                  f"with a Lua script (50 hosts x 4 paths, a session cookie on every request), "
                  f"{args.seconds:g}s x {args.rounds} rounds; {os.cpu_count()} CPUs", flush=True)
            results: dict[str, list[dict]] = {k: [] for k in targets}
            for number in range(args.rounds):
                for kind, server in targets.items():
                    cpu = tree_cpu(server.proc.pid)
                    result = run_wrk(server.url, script, args.seconds, args.connections)
                    result["cpu_us"] = (tree_cpu(server.proc.pid) - cpu) / result["requests"] \
                        * 1e6
                    results[kind].append(result)
                    print(f"  round {number + 1} {kind:<14} {result['rps']:>8.0f} req/s "
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
    print(f"\n{'configuration':<16}{'req/s':>9}{'CPU us/req':>12}{'p99 ms':>9}")
    for kind, m in median.items():
        print(f"{kind:<16}{m['rps']:>9.0f}{m['cpu_us']:>12.1f}{m['p99']:>9.2f}")
    for base in ("single", "single+sticky"):
        rps = median["routed"]["rps"] / median[base]["rps"]
        cpu = median["routed"]["cpu_us"] / median[base]["cpu_us"]
        print(f"routed vs {base}: {rps:.3f}x the requests/s ({(1 - rps) * 100:+.1f}% slower), "
              f"{cpu:.3f}x the CPU per request (target: at most 5% slower)")


if __name__ == "__main__":
    sys.exit(main())
