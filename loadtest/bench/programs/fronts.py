"""scripts/bench-balance and scripts/bench-overload: the members and the fronts they compare.

Members are `hbfork backend --workers N` processes, one per lab host, each multicasting the
true idle and busy workers it has (mod_heartbeat's format) to the group every second, as an
Apache member with mod_heartbeat would. Fronts, all on the lab's front host, balancing over
the same members:

    apache          Apache httpd, mod_proxy_balancer, lbmethod=heartbeat + mod_heartmonitor
    nginx-lc        nginx `least_conn` (zone: one count for all its workers)
    nginx-r2        nginx `random two least_conn` (zone)
    haproxy-lc      HAProxy `balance leastconn`
    haproxy-queue   HAProxy `balance leastconn`, `maxconn` per server, `timeout queue`
    hbfork-reported hbfork `weighting = "reported"` (Apache's rule, within capacity)
    hbfork          hbfork defaults (in-flight-corrected weights, front queue)
    hbfork-p2c      hbfork `pick = "p2c"`
    hbfork-apache   hbfork `weighting = "reported"`, `queue_timeout = 0`: Apache's 503s
    hbfork-1worker  hbfork defaults with one worker (so one queue, not one per worker)

Each is given what an operator who wants failover would set, and no more: nginx retries an
idempotent request on another member on an error (its default `proxy_next_upstream error
timeout`, `max_fails=1 fail_timeout=10s`); HAProxy checks its servers every second and
retries an idempotent request elsewhere when the server failed or closed without answering
(`retry-on conn-failure empty-response response-timeout`, `option redispatch`); Apache and
hbfork run with their defaults.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest.bench.procs import Proc, free_port
from loadtest.bench.programs import servers
from loadtest.bench.programs.configs import (
    GROUP,
    apache_front_conf,
    haproxy_maxconn,
    hbfork_conf,
    nofile_limit,
)
from loadtest.bench.programs.servers import Server, spawn, spawn_hbfork, wait_http, wait_members

MEMBER_PORT = 80
LABELS = {
    "apache": "Apache httpd, lbmethod=heartbeat",
    "nginx-lc": "nginx least_conn",
    "nginx-r2": "nginx random two least_conn",
    "haproxy-lc": "HAProxy leastconn",
    "haproxy-queue": "HAProxy leastconn + maxconn + timeout queue",
    "hbfork-reported": 'hbfork weighting = "reported"',
    "hbfork": "hbfork (defaults: corrected)",
    "hbfork-p2c": 'hbfork pick = "p2c"',
    "hbfork-apache": 'hbfork weighting = "reported", queue_timeout = 0 (Apache\'s rule)',
    "hbfork-1worker": "hbfork defaults, workers = 1 (one front queue)",
}


@dataclass(frozen=True)
class MemberSpec:
    name: str
    workers: int
    delay_ms: float        # fixed part of the service time
    jitter_ms: float = 0.0  # plus an exponential part with this mean

    @property
    def service_ms(self) -> float:
        return self.delay_ms + self.jitter_ms

    @property
    def capacity_rps(self) -> float:
        """Requests/s it completes with every worker busy."""
        return self.workers * 1000 / self.service_ms


def start_member(lab: Any, host: Any, spec: MemberSpec, workdir: Path, seed: int) -> Server:
    """`hbfork backend --workers` in the lab host, beating to the group (port 80, as Apache)."""
    directory = workdir / f"member-{spec.name}"
    directory.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "hbfork", "backend", "--listen",
            f"{host.address}:{MEMBER_PORT}", "--heartbeat", GROUP, "--name", spec.name,
            "--workers", str(spec.workers), "--delay-ms", f"{spec.delay_ms:g}",
            "--delay-jitter", f"{spec.jitter_ms:g}", "--seed", str(seed)]
    home = servers.HBFORK_HOME
    env = {**os.environ, **({"PYTHONPATH": str(home)} if home else {})}
    proc = Proc(spec.name, lab.command(host.name, argv), directory / "output.log",
                cwd=home or None, env=env, preexec_fn=servers.nofile_preexec)
    server = Server(spec.name, host.address, MEMBER_PORT, proc, directory,
                    {"kind": "member", "spec": spec.__dict__})
    wait_http(server)
    return server


def kill(server: Server) -> None:
    """SIGKILL, as a crash: no goodbye to the connections it holds."""
    if server.proc.alive():
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.proc.wait()


# --- front configs ------------------------------------------------------------------------

def nginx_conf(directory: Path, port: int, members: list[str], method: str) -> str:
    servers = "".join(f"        server {m};\n" for m in members)
    return f"""# scripts/bench-balance: nginx, upstream {method}
daemon off;
worker_processes auto;
worker_rlimit_nofile {nofile_limit()};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections {min(20000, nofile_limit() - 1000)}; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream members {{
        zone members 256k;
        {method};
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://members;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 30s;
        }}
    }}
}}
"""


def haproxy_conf(directory: Path, port: int, members: list[str], maxconn: int = 0,
                 queue_timeout: float = 5.0) -> str:
    limit = f" maxconn {maxconn}" if maxconn else ""
    servers = "".join(f"    server m{i} {m} check inter 1s fall 2 rise 2{limit}\n"
                      for i, m in enumerate(members, 1))
    title = "leastconn + maxconn + timeout queue" if maxconn else "leastconn"
    return f"""# scripts/bench-balance: HAProxy {title}
global
    maxconn {haproxy_maxconn()}
    pidfile {directory}/haproxy.pid
    log stderr format short local0 warning
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 30s
    timeout http-keep-alive 300s
    timeout queue {queue_timeout:g}s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend front
    bind 127.0.0.1:{port}
    default_backend members
backend members
    balance leastconn
{servers}"""


HBFORK_BALANCE = {"hbfork": "", "hbfork-reported": 'weighting = "reported"\n',
                  "hbfork-p2c": 'pick = "p2c"\n'}


def start_front(kind: str, directory: Path, members: list[str], *, maxconn: int = 0,
                queue_timeout: float = 5.0, balance: str = "",
                workers: int | str = "auto") -> Server:
    """Start one front; returns when it serves (hbfork: when every member is eligible)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    port = free_port()
    info: dict[str, Any] = {"kind": kind, "label": LABELS.get(kind, kind)}
    if kind.startswith("hbfork"):
        status_port = free_port()
        conf = directory / "hbfork.toml"
        text = hbfork_conf(directory, port, "http", workers, GROUP, members, status_port)
        extra = HBFORK_BALANCE.get(kind, "") + balance
        conf.write_text(text + (f"\n[balance]\n{extra}" if extra else ""))
        proc = spawn_hbfork(kind, conf, directory)
        info["status_url"] = f"http://127.0.0.1:{status_port}/status.json"
        server = Server(kind, "127.0.0.1", port, proc, directory, info)
        wait_members(server, len(members))
    elif kind.startswith("nginx"):
        conf = directory / "nginx.conf"
        method = "least_conn" if kind == "nginx-lc" else "random two least_conn"
        conf.write_text(nginx_conf(directory, port, members, method))
        proc = spawn(kind, ["nginx", "-p", str(directory), "-c", str(conf), "-e", "stderr"],
                     directory)
        server = Server(kind, "127.0.0.1", port, proc, directory, info)
    elif kind.startswith("haproxy"):
        conf = directory / "haproxy.cfg"
        conf.write_text(haproxy_conf(directory, port, members, maxconn, queue_timeout))
        proc = spawn(kind, ["haproxy", "-db", "-f", str(conf)], directory)
        server = Server(kind, "127.0.0.1", port, proc, directory, info)
    elif kind == "apache":
        conf = directory / "httpd.conf"
        conf.write_text(apache_front_conf(directory, port, members, heartbeat=True))
        proc = spawn(kind, ["apache2", "-f", str(conf), "-DFOREGROUND"], directory)
        server = Server(kind, "127.0.0.1", port, proc, directory, info)
    else:
        raise ValueError(kind)
    info["config"] = str(conf)
    wait_http(server, timeout=30)
    return server


def wait_all_eligible(fronts: dict[str, Server], count: int, timeout: float = 30) -> None:
    """Every hbfork front sees `count` eligible members (e.g. after a restarted member)."""
    deadline = time.monotonic() + timeout
    for server in fronts.values():
        if server.info["kind"].startswith("hbfork"):
            wait_members(server, count, max(1.0, deadline - time.monotonic()))
