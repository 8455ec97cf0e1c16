"""Benchmark of TLS termination: hbfork against nginx, same certificate, same members, one run.

A benchmark, not a test: it prints numbers and asserts nothing. Two nginx members on
127.0.0.2-3 (heartbeats sent for them), and two fronts with one worker each on the same ECDSA
P-256 certificate: hbfork (a TLS [[listen]]) and nginx (ssl, upstream keepalive). wrk measures,
in interleaved rounds:

    keep-alive   HTTPS requests on kept-alive connections (the handshake cost amortised)
    handshakes   one request per connection ("Connection: close"): a full TLS handshake each

The report gives medians of requests/s, p50/p99 and the CPU the front's processes spent per
request, and the ratios the issue asks about (keep-alive >= 0.7x nginx, handshakes >= 0.8x).

    ./scripts/bench-tls [--rounds 5] [--seconds 5] [--connections 64]
"""

from __future__ import annotations

import argparse
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

OPENSSL = "/usr/bin/openssl"
MEMBERS = ("127.0.0.2", "127.0.0.3")


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for localhost (both fronts serve this one)."""
    cert, key = directory / "front.pem", directory / "front.key"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o600)
    return cert, key


def hbfork_conf(directory: Path, port: int, hb_port: int, members: list[tuple[str, int]],
                cert: Path, key: Path) -> str:
    blocks = "".join(f'[[member]]\naddress = "{ip}:{p}"\n' for ip, p in members)
    return f"""[proxy]
workers = 1
allow_root = true
max_connections = 20000
[[listen]]
address = "127.0.0.1:{port}"
tls = true
[[certificate]]
cert = "{cert}"
key = "{key}"
[heartbeat]
listen = "127.0.0.1:{hb_port}"
max_age = 30
[http]
keepalive_timeout = 300
client_timeout = 300
[status]
listen = ""
[log]
level = "warning"
error = "{directory}/hbfork.log"
{blocks}"""


def nginx_conf(directory: Path, port: int, members: list[tuple[str, int]], cert: Path,
               key: Path) -> str:
    servers = "".join(f"server {ip}:{p};" for ip, p in members)
    return f"""daemon off; worker_processes 1; pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
{'user root;' if os.geteuid() == 0 else ''}
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_requests 100000000; keepalive_timeout 300s;
  client_body_temp_path {directory}/body; proxy_temp_path {directory}/proxy;
  fastcgi_temp_path {directory}/f; uwsgi_temp_path {directory}/u; scgi_temp_path {directory}/s;
  upstream members {{ {servers} keepalive 64; }}
  server {{ listen 127.0.0.1:{port} ssl backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m;
    location / {{ proxy_pass http://members; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }} }}
"""


def run_wrk(url: str, seconds: float, connections: int, close: bool) -> dict:
    """`close`: one request per connection, so every request pays a full handshake."""
    return wrk.run(url, connections, seconds, 2, check=True,
                   headers=("Connection: close",) if close else ())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-tls",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    tools.require("scripts/bench-tls", "wrk", "nginx", "openssl")
    for tool in (wrk.WRK, NGINX, OPENSSL):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{tool} is not installed")
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
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
                server = Server(f"m{n}", ip, port, spawn(f"m{n}", [NGINX, "-c", str(conf),
                                                                    "-p", str(directory)],
                                                         directory), directory)
                servers.append(server)
                wait_http(server)
                members.append((ip, port))
            cert, key = certificate(base)
            fronts: dict[str, tuple[Server, str]] = {}
            directory = base / "hbfork"
            directory.mkdir()
            port, hb_port = free_port(), free_port(kind=socket.SOCK_DGRAM)
            conf = directory / "hbfork.toml"
            conf.write_text(hbfork_conf(directory, port, hb_port, members, cert, key))
            fronts["hbfork"] = (Server("hbfork", "127.0.0.1", port,
                                       spawn_hbfork("hbfork", conf, directory), directory),
                                f"https://127.0.0.1:{port}/index.html")
            for ip, p in members:
                beacon = Beacon(("127.0.0.1", hb_port), port=p, source=ip, interval=0.5)
                beacon.start(lambda: (100, 0))
                beacons.append(beacon)
            directory = base / "nginx"
            directory.mkdir()
            port = free_port()
            conf = directory / "nginx.conf"
            conf.write_text(nginx_conf(directory, port, members, cert, key))
            fronts["nginx"] = (Server("nginx", "127.0.0.1", port,
                                      spawn("nginx", [NGINX, "-c", str(conf), "-p",
                                                      str(directory)], directory), directory),
                               f"https://127.0.0.1:{port}/index.html")
            for server, _ in fronts.values():
                servers.append(server)
            for _, url in fronts.values():
                _wait(url)
                run_wrk(url, 2, args.connections, False)  # warm up
            print(f"2 nginx members; fronts with 1 worker, ECDSA P-256; wrk -t2 "
                  f"-c{args.connections}, {args.seconds:g}s x {args.rounds} rounds; "
                  f"{os.cpu_count()} CPUs", flush=True)
            results: dict[tuple[str, str], list[dict]] = {}
            for number in range(args.rounds):
                for mode in ("keep-alive", "handshakes"):
                    for name, (server, url) in fronts.items():
                        cpu = tree_cpu(server.proc.pid)
                        result = run_wrk(url, args.seconds, args.connections, mode == "handshakes")
                        result["cpu_us"] = (tree_cpu(server.proc.pid) - cpu) \
                            / max(result["requests"], 1) * 1e6
                        results.setdefault((mode, name), []).append(result)
                        print(f"  round {number + 1} {mode:<10} {name:<7} {result['rps']:>8.0f} "
                              f"req/s {result['cpu_us']:7.1f} CPU us/req  p99 "
                              f"{result['p99']:.2f} ms" + (f"  errors {result['errors']}"
                                                          if result["errors"] else ""),
                              flush=True)
            report(results)
        finally:
            for beacon in beacons:
                beacon.stop()
            for server in reversed(servers):
                server.stop()
    return 0


def _wait(url: str) -> None:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done = subprocess.run(["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", url],
                              capture_output=True, text=True, check=False)
        if done.stdout == "200":
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} does not answer 200")


def report(results: dict[tuple[str, str], list[dict]]) -> None:
    median = {key: {m: statistics.median(r[m] for r in runs)
                    for m in ("rps", "p50", "p99", "cpu_us")} for key, runs in results.items()}
    print(f"\n{'mode':<12}{'front':<8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}")
    for (mode, name), m in median.items():
        print(f"{mode:<12}{name:<8}{m['rps']:>9.0f}{m['p50']:>9.2f}{m['p99']:>9.2f}"
              f"{m['cpu_us']:>12.1f}")
    for mode, target in (("keep-alive", 0.7), ("handshakes", 0.8)):
        ratio = median[(mode, "hbfork")]["rps"] / median[(mode, "nginx")]["rps"]
        print(f"{mode}: hbfork {ratio:.2f}x nginx's requests/s (target >= {target}): "
              f"{'met' if ratio >= target else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
