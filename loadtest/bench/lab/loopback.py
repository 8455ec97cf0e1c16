"""The loopback lab of scripts/profile-http, bench-tcp, bench-conns, bench-bodies and
bench-http: nginx members on 127.0.0.2/.3, and hbfork, nginx or HAProxy fronts over them.

Processes are started in a temporary directory (procs.ProcGroup: each in its own session,
stopped by pid at the end); heartbeats for the members are sent by a Beacon from each member's
address. Nothing here leaves 127.0.0.0/8.
"""

from __future__ import annotations

import os
import socket
import sys

from hbfork.beat.beacon import Beacon
from loadtest.bench.procs import Proc, ProcGroup, free_port, raise_nofile, wait_http

NGINX = "/usr/sbin/nginx"
# Debian builds `stream` as a module of its own package (libnginx-mod-stream).
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"
HAPROXY = "/usr/sbin/haproxy"
MEMBER_IPS = ("127.0.0.2", "127.0.0.3")
ROOT_USER = "user root;" if os.geteuid() == 0 else ""
NOFILE = 1 << 20   # nginx's worker_rlimit_nofile: as many as this process may have


class Stack(ProcGroup):
    """The processes of one run, stopped by pid at the end (TERM, then KILL after 10 s)."""

    def beat(self, heartbeat_port: int, members: list[tuple[str, int]]) -> None:
        """Heartbeats for `members` with plenty of ready capacity, each from its own
        address (its source IP is what identifies it), every 0.5 s until stop()."""
        for ip, p in members:
            beacon = Beacon(("127.0.0.1", heartbeat_port), port=p, source=ip, interval=0.5)
            beacon.start(lambda: (100, 0))
            self.beacons.append(beacon)

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

    def _nginx(self, name: str, body: str, head: str = "") -> Proc:
        conf = self.tmp / f"nginx-{name}.conf"
        nofile = raise_nofile(NOFILE)
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
        self.beat(heartbeat_port, members)
        return port, pid
