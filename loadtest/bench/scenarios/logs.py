"""Benchmark of the access log: what each format costs per request, in one run.

A benchmark, not a test: it prints numbers and asserts nothing. One nginx member on 127.0.0.2
(heartbeats sent for it), one hbfork worker per configuration, wrk as the client (keep-alive
GETs, which take the fast path):

    off           no access log (the reference)
    combined+     the default format, to a file
    logformat     Apache's combined plus %{X-Request-ID}i %{BALANCER_WORKER_NAME}e %D, to a file
    json-fields   JSON with eight chosen fields, to a file
    syslog        the default format as RFC 5424 datagrams to a UDP socket bound here (never
                  read: the kernel drops what does not fit, as a busy daemon would)

Targets are measured in interleaved rounds; the report gives medians and the CPU time the
serving process tree spent per request, and each format's CPU against `off`.

    ./scripts/bench-logs [--rounds 5] [--seconds 5] [--connections 32]
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

MEMBER = "127.0.0.2"
LOGFORMAT = ('%h %l %u %t \\"%r\\" %>s %b \\"%{Referer}i\\" \\"%{User-Agent}i\\" '
             '%{X-Request-ID}i %{BALANCER_WORKER_NAME}e %D')
FIELDS = '["time", "client", "method", "path", "status", "bytes", "member", "total_seconds"]'


def log_section(kind: str, workdir: Path, syslog_port: int) -> str:
    if kind == "off":
        return ""
    access = f"syslog:udp://127.0.0.1:{syslog_port}" if kind == "syslog" \
        else f"{workdir}/access.log"
    text = f'access = "{access}"\n'
    if kind == "logformat":
        text += f'access_format = "{LOGFORMAT}"\n'
    elif kind == "json-fields":
        text += f'access_format = "json"\naccess_fields = {FIELDS}\n'
    return text


def config(kind: str, port: int, heartbeat_port: int, member: tuple[str, int],
           workdir: Path, syslog_port: int) -> str:
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
[status]
listen = ""
[log]
level = "warning"
error = "{workdir}/hbfork.log"
{log_section(kind, workdir, syslog_port)}
[[member]]
address = "{member[0]}:{member[1]}"
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-logs",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)
    tools.require("scripts/bench-logs", "wrk", "nginx")
    for tool in (wrk.WRK, NGINX):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is not installed")
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp, receiver:
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
            member = Server("m1", MEMBER, port, spawn("m1", [NGINX, "-c", str(conf), "-p",
                                                             str(directory)], directory),
                            directory)
            servers.append(member)
            wait_http(member)
            targets: dict[str, Server] = {}
            for kind in ("off", "combined+", "logformat", "json-fields", "syslog"):
                front, hb_port = free_port(), free_port(kind=socket.SOCK_DGRAM)
                directory = base / kind
                directory.mkdir()
                conf = directory / "hbfork.toml"
                conf.write_text(config(kind, front, hb_port, (MEMBER, port), directory,
                                       receiver.getsockname()[1]))
                targets[kind] = Server(kind, "127.0.0.1", front,
                                       spawn_hbfork(kind, conf, directory), directory)
                servers.append(targets[kind])
                beacon = Beacon(("127.0.0.1", hb_port), port=port, source=MEMBER, interval=0.5)
                beacon.start(lambda: (100, 0))
                beacons.append(beacon)
            for server in targets.values():
                wait_http(server)
                if wrk.run(server.url, args.connections, 2, 1, check=True)["non2xx"]:
                    raise SystemExit(f"{server.name} does not answer 200 to every request")
            print(f"1 nginx member; 1 hbfork worker each; wrk -t1 -c{args.connections}, "
                  f"{args.seconds:g}s x {args.rounds} rounds; {os.cpu_count()} CPUs", flush=True)
            results: dict[str, list[dict]] = {k: [] for k in targets}
            for number in range(args.rounds):
                for kind, server in targets.items():
                    cpu = tree_cpu(server.proc.pid)
                    result = wrk.run(server.url, args.connections, args.seconds, 1, check=True)
                    result["cpu_us"] = (tree_cpu(server.proc.pid) - cpu) / result["requests"] \
                        * 1e6
                    results[kind].append(result)
                    print(f"  round {number + 1} {kind:<12} {result['rps']:>8.0f} req/s "
                          f"{result['cpu_us']:6.1f} CPU us/req", flush=True)
            report(results)
        finally:
            for beacon in beacons:
                beacon.stop()
            for server in reversed(servers):
                server.stop()
    return 0


def report(results: dict[str, list[dict]]) -> None:
    median = {k: {m: statistics.median(r[m] for r in runs) for m in ("rps", "cpu_us")}
              for k, runs in results.items()}
    print(f"\n{'access log':<14}{'req/s':>9}{'CPU us/req':>12}{'vs off':>9}")
    for kind, m in median.items():
        ratio = m["cpu_us"] / median["off"]["cpu_us"]
        print(f"{kind:<14}{m['rps']:>9.0f}{m['cpu_us']:>12.1f}{ratio:>8.3f}x")


if __name__ == "__main__":
    sys.exit(main())
