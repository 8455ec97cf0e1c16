"""The loopback lab shared by scripts/profile-http, bench-tcp and bench-conns.

Processes (nginx members on 127.0.0.2/.3, hbfork, nginx or HAProxy fronts) are started in a
temporary directory, each in its own session, and stopped by pid at the end; heartbeats for
the members are sent by a Beacon from each member's address. Measuring helpers read /proc
(CPU, RSS) and parse wrk. Nothing here leaves 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hbfork.beat.beacon import Beacon  # noqa: E402

NGINX = "/usr/sbin/nginx"
# Debian builds `stream` as a module of its own package (libnginx-mod-stream).
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"
HAPROXY = "/usr/sbin/haproxy"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
MEMBER_IPS = ("127.0.0.2", "127.0.0.3")
CLK_TCK = os.sysconf("SC_CLK_TCK")
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
ROOT_USER = "user root;" if os.geteuid() == 0 else ""


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_http(host: str, port: int, path: str = "/", timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing answers 200 on {host}:{port}{path}")


def raise_nofile(wanted: int = 1 << 20) -> int:
    """Lift this process's RLIMIT_NOFILE soft limit towards `wanted` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Stack:
    """The processes of one run, stopped by pid at the end (TERM, then KILL after 10 s)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen] = []
        self.beacons: list[Beacon] = []
        self.cleanups: list[Callable[[], object]] = []  # run after the processes stopped

    def start(self, args: list[str], log: str, env: dict[str, str] | None = None,
              cwd: str | None = None) -> subprocess.Popen:
        out = open(self.tmp / log, "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                cwd=cwd)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for beacon in self.beacons:
            beacon.stop()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for cleanup in self.cleanups:
            cleanup()

    # --- members

    def nginx_members(self, files: dict[str, bytes]) -> list[tuple[str, int]]:
        """One nginx (one worker) serving `files` on every MEMBER_IPS address, same port."""
        port = free_port(MEMBER_IPS[0])
        root = self.tmp / "www"
        root.mkdir(exist_ok=True)
        for name, body in files.items():
            (root / name).write_bytes(body)
        listens = "".join(f"listen {ip}:{port} backlog=4096;" for ip in MEMBER_IPS)
        self._nginx("members", f"""
http {{ access_log off; keepalive_requests 1000000; sendfile on;
  server {{ {listens} root {root}; }} }}""")
        members = [(ip, port) for ip in MEMBER_IPS]
        for ip, p in members:
            wait_http(ip, p, "/" + next(iter(files)))
        return members

    def _nginx(self, name: str, body: str, head: str = "") -> subprocess.Popen:
        conf = self.tmp / f"nginx-{name}.conf"
        nofile = raise_nofile()
        conf.write_text(f"""{head}
worker_processes 1; daemon off; pid {self.tmp}/nginx-{name}.pid;
error_log {self.tmp}/nginx-{name}.err; {ROOT_USER} worker_rlimit_nofile {nofile};
events {{ worker_connections {nofile - 100}; }}
{body}
""")
        return self.start([NGINX, "-c", str(conf), "-p", str(self.tmp)], f"nginx-{name}.log")

    # --- fronts

    def nginx_http_proxy(self, members: list[tuple[str, int]]) -> tuple[int, int]:
        """nginx as an HTTP reverse proxy (one worker, upstream keep-alive): (port, pid)."""
        port = free_port()
        servers = "".join(f"server {ip}:{p};" for ip, p in members)
        proc = self._nginx("proxy", f"""
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  upstream members {{ {servers} keepalive 64; }}
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://members; proxy_http_version 1.1;
      proxy_set_header Connection ""; }} }} }}""")
        return port, proc.pid

    def nginx_stream_proxy(self, members: list[tuple[str, int]]) -> tuple[int, int]:
        """nginx `stream` (TCP) proxy, one worker: (port, pid)."""
        port = free_port()
        servers = "".join(f"server {ip}:{p};" for ip, p in members)
        proc = self._nginx("stream", f"""
stream {{ upstream members {{ random; {servers} }}
  server {{ listen 127.0.0.1:{port} backlog=4096; proxy_pass members; }} }}""",
                           head=f"load_module {NGINX_STREAM};")
        return port, proc.pid

    def haproxy_tcp(self, members: list[tuple[str, int]]) -> tuple[int, int]:
        """HAProxy in tcp mode, one thread: (port, pid)."""
        port = free_port()
        conf = self.tmp / "haproxy.cfg"
        servers = "".join(f"  server m{i} {ip}:{p}\n" for i, (ip, p) in enumerate(members))
        conf.write_text(f"""global
  nbthread 1
  maxconn 4000
defaults
  mode tcp
  timeout connect 5s
  timeout client 300s
  timeout server 300s
listen front
  bind 127.0.0.1:{port}
  balance random
{servers}""")
        proc = self.start([HAPROXY, "-db", "-f", str(conf)], "haproxy.log")
        return port, proc.pid

    def hbfork(self, mode: str, members: list[tuple[str, int]], name: str,
               argv: list[str] | None = None, http: str = "", log: str = "",
               env: dict[str, str] | None = None) -> tuple[int, int]:
        """hbfork with one worker over `members`, as `argv` (default `python -m hbfork run`)
        with `-c CONF` appended: (port, master pid). `http` and `log` are added to those
        tables. With PYTHONPATH in `env`, hbfork is imported from there: it is also made the
        working directory, which `python -m` puts ahead of PYTHONPATH on sys.path."""
        port = free_port()
        heartbeat_port = free_port(kind=socket.SOCK_DGRAM)
        conf = self.tmp / f"hbfork-{name}.toml"
        member_lines = "".join(f'[[member]]\naddress = "{ip}:{p}"\n' for ip, p in members)
        conf.write_text(f"""
[proxy]
listen = ["127.0.0.1:{port}"]
mode = "{mode}"
workers = 1
allow_root = true
max_connections = 20000
backlog = 4096
[heartbeat]
listen = "127.0.0.1:{heartbeat_port}"
max_age = 30
[http]
{http}
[status]
listen = ""
[log]
level = "warning"
{log}
{member_lines}""")
        argv = argv or [sys.executable, "-m", "hbfork", "run"]
        source = (env or {}).get("PYTHONPATH")
        pid = self.start([*argv, "-c", str(conf)], f"hbfork-{name}.log",
                         {**os.environ, **(env or {})}, cwd=source).pid
        for ip, p in members:  # plenty of ready capacity, from each member's own address
            beacon = Beacon(("127.0.0.1", heartbeat_port), port=p, source=ip, interval=0.5)
            beacon.start(lambda: (100, 0))
            self.beacons.append(beacon)
        return port, pid


# --- /proc


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def wait_children(pid: int, count: int = 1, timeout: float = 15) -> list[int]:
    """The first `count` children of `pid` (hbfork's workers, nginx's worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(pid)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise SystemExit(f"process {pid} has no children")


def cpu_split(*pids: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the processes (not their children), from /proc."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time of the processes (not their children), from /proc."""
    return sum(cpu_split(*pids))


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """VmRSS (or VmHWM, the peak) of `pid` in KiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- wrk


def wrk(url: str, seconds: float, connections: int, threads: int = 1,
        script: str | None = None) -> dict[str, float]:
    """One wrk run: req/s, requests, p50/p99 in ms, errors (socket errors + non-2xx)."""
    argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
            "--timeout", "5s"]
    if script:
        argv += ["-s", script]
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True,
                         timeout=seconds + 30).stdout
    latency = {q: float(v) * _UNIT_MS[u] for q, v, u in
               re.findall(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        errors += int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                          r"timeout (\d+)", out):
        errors += sum(int(g) for g in match.groups())
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": latency.get("50", 0.0), "p99": latency.get("99", 0.0),
            "errors": errors}


class RssSampler(threading.Thread):
    """The highest VmRSS of `pid` seen while running."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = rss_kib(pid)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.peak = max(self.peak, rss_kib(self.pid))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak
