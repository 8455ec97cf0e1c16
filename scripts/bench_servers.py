"""scripts/bench: the servers it runs. Config text for each program, and one launcher.

Backends: real Apache httpd with mod_heartbeat inside the network-namespace lab (multicast
heartbeats, as APACHE-HEARTBEAT.md describes), or nginx on 127.0.0.2-4 with heartbeats sent
for them (hbfork.beat.Beacon) when only loopback is available. Every backend serves the same
files (bench_kinds.FILES: 604 bytes, 16 KiB, 1 MiB) and reads and discards POSTed bodies at
/upload, with an `X-Backend` header and unlimited keep-alive.

Fronts (the contenders): hbfork in HTTP and in TCP mode, Apache httpd with mod_proxy_balancer
(lbmethod=heartbeat + mod_heartmonitor in the lab; lbmethod=byrequests as a labelled stand-in
on loopback, where Apache cannot receive heartbeats), nginx (upstream random + keepalive) and
HAProxy (balance random; HTTP mode, and TCP mode as the like-for-like of hbfork's TCP mode).
Each is configured the way its own defaults suggest for this machine (workers/threads = cores,
no access log), with keep-alive limits lifted so no front closes a benchmark connection.
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import resource
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_kinds import APACHE_UPLOAD, FILES, KINDS  # noqa: E402

from loadtest.topology import Proc, free_port  # noqa: E402

GROUP = "239.0.0.1:27999"
NOFILE = 65536   # wanted; a container without CAP_SYS_RESOURCE may cap it lower (see below)
MODULES = Path("/usr/lib/apache2/modules")
UPLOAD = KINDS["1m-up"].path


def raise_nofile() -> None:
    """preexec_fn for every child: room for 10,000 idle connections and their upstreams."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE if hard == resource.RLIM_INFINITY else max(soft, min(NOFILE, hard))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, hard), hard))


def nofile_limit() -> int:
    """The RLIMIT_NOFILE children get: NOFILE, or the hard limit when that is lower."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)


def haproxy_maxconn() -> int:
    """HAProxy reserves two descriptors per connection (client and server side) and refuses
    to start when maxconn does not fit its FD limit."""
    return min(50_000, (nofile_limit() - 400) // 2)


def unprivileged() -> tuple[str, str]:
    for user in ("www-data", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        return user, grp.getgrgid(entry.pw_gid).gr_name
    return "nobody", "nogroup"


@dataclass
class Server:
    """One running program (and its descendants), reachable at host:port."""

    name: str
    host: str
    port: int
    proc: Proc
    workdir: Path
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def stop(self) -> None:
        self.proc.stop()


# Where `python -m hbfork` is imported from: None = this checkout; scripts/bench sets it to an
# export of a commit so uncommitted work in the tree is not what gets measured.
HBFORK_HOME: Path | None = None


def spawn(name: str, argv: list[str], workdir: Path, prefix: list[str] | None = None) -> Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    return Proc(name, [*(prefix or []), *argv], workdir / "output.log", preexec_fn=raise_nofile)


def spawn_hbfork(name: str, config: Path, workdir: Path) -> Proc:
    """`python -m hbfork run -c config`, imported from HBFORK_HOME when set (it is the cwd
    and PYTHONPATH, both ahead of the checkout's editable install)."""
    argv = [sys.executable, "-m", "hbfork", "run", "-c", str(config)]
    if HBFORK_HOME is None:
        return spawn(name, argv, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    env = {**os.environ, "PYTHONPATH": str(HBFORK_HOME)}
    return Proc(name, argv, workdir / "output.log", preexec_fn=raise_nofile, cwd=HBFORK_HOME,
                env=env)


def wait_http(server: Server, timeout: float = 20, want_header: str = "X-Backend") -> None:
    """Until the server answers 200 with `want_header` (or its process dies)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not server.proc.alive():
            raise RuntimeError(f"{server.name} exited with {server.proc.proc.returncode}:\n"
                               f"{server.proc.tail()}{_logs(server.workdir)}")
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=2)
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            conn.close()
            if response.status == 200 and response.getheader(want_header):
                return
            last = f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as err:
            last = repr(err)
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not answer 200 within {timeout:g}s ({last})"
                       f"\n{server.proc.tail()}{_logs(server.workdir)}")


def _logs(directory: Path) -> str:
    out = []
    for path in sorted(directory.glob("*.log")):
        text = path.read_text(errors="replace")[-1500:]
        if text.strip():
            out.append(f"\n--- {path.name}\n{text}")
    return "".join(out)


def write_docroot(directory: Path) -> Path:
    """htdocs/ with every kind's file ("/" is index.html)."""
    docs = directory / "htdocs"
    docs.mkdir(parents=True, exist_ok=True)
    os.chmod(docs, 0o755)
    for url_path, body in FILES.items():
        path = docs / (url_path.strip("/") or "index.html")
        path.write_bytes(body)
        os.chmod(path, 0o644)
    return docs


# --- backends -----------------------------------------------------------------------------

def apache_backend_conf(directory: Path, name: str, address: str, port: int) -> str:
    user, group = unprivileged()
    docs = write_docroot(directory)
    (directory / "run").mkdir(exist_ok=True)
    upload = directory / "upload.lua"   # a copy the unprivileged children can surely read
    upload.write_text(APACHE_UPLOAD.read_text())
    os.chmod(upload, 0o644)
    return f"""# scripts/bench: an Apache backend that multicasts mod_heartbeat datagrams
ServerRoot {directory}
ServerName {name}.lab
DefaultRuntimeDir {directory}/run
PidFile {directory}/run/httpd.pid
ErrorLog {directory}/error.log
LogLevel warn
User {user}
Group {group}
LoadModule mpm_event_module {MODULES}/mod_mpm_event.so
LoadModule authz_core_module {MODULES}/mod_authz_core.so
LoadModule headers_module {MODULES}/mod_headers.so
LoadModule dir_module {MODULES}/mod_dir.so
LoadModule heartbeat_module {MODULES}/mod_heartbeat.so
LoadModule lua_module {MODULES}/mod_lua.so
# Three children of 64 threads that are never reaped (ready = idle threads, up to 192):
# more threads than the 128 connections of the largest direct run, so no backend ever has
# to close keep-alive connections for lack of threads.
StartServers 3
ServerLimit 3
ThreadsPerChild 64
MaxRequestWorkers 192
MinSpareThreads 1
MaxSpareThreads 192
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 300
Listen {address}:{port}
DocumentRoot {docs}
DirectoryIndex index.html
EnableSendfile On
<Directory {docs}>
    Require all granted
</Directory>
# POST {UPLOAD}: the body is read to the end (into /dev/null) and the byte count answered;
# a POST to a static file would only get a 405.
LuaScope thread
LuaCodeCache forever
LuaMapHandler "^{UPLOAD}$" "{upload}" handle
Header always set X-Backend "{name}"
HeartbeatAddress {GROUP}
"""


def nginx_backend_conf(directory: Path, name: str, address: str, port: int) -> str:
    docs = write_docroot(directory)
    return f"""# scripts/bench: an nginx backend (loopback runs; heartbeats are sent for it)
daemon off;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    sendfile on;
    client_max_body_size 0;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    server {{
        listen {address}:{port};
        root {docs};
        location / {{ add_header X-Backend "{name}" always; }}
        # mirror_request_body: the whole body is read (into memory) before the answer; a bare
        # `return` would answer first and discard the body after, which fronts that stream
        # the body take as the member ending the exchange early.
        location = {UPLOAD} {{
            client_body_buffer_size 2m;
            mirror /read;
            mirror_request_body on;
            add_header X-Backend "{name}" always;
            return 200 "read $content_length\\n";
        }}
        location = /read {{ internal; return 204; }}
    }}
}}
"""


# --- fronts -------------------------------------------------------------------------------

def hbfork_conf(directory: Path, port: int, mode: str, workers: int | str,
                heartbeat_listen: str, members: list[str], status_port: int,
                discover: bool = False, max_members: int = 256) -> str:
    workers_value = f'"{workers}"' if isinstance(workers, str) else str(workers)
    member_blocks = "".join(f'\n[[member]]\naddress = "{m}"\n' for m in members)
    return f"""# scripts/bench
[proxy]
listen = ["127.0.0.1:{port}"]
mode = "{mode}"
workers = {workers_value}
allow_root = true
pidfile = "{directory}/hbfork.pid"
shutdown_timeout = 5
max_connections = 20000

[heartbeat]
listen = "{heartbeat_listen}"
discover = {"true" if discover else "false"}
max_members = {max_members}
rate_limit = 0

[http]
keepalive_timeout = 300
client_timeout = 300

[status]
listen = "127.0.0.1:{status_port}"

[log]
level = "warning"
error = "{directory}/hbfork.log"
{member_blocks}"""


def nginx_front_conf(directory: Path, port: int, members: list[str]) -> str:
    servers = "".join(f"        server {m};\n" for m in members)
    return f"""# scripts/bench: nginx as the front (upstream random, keepalive)
daemon off;
worker_processes auto;
worker_rlimit_nofile {nofile_limit()};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections {nofile_limit() - 1000}; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    # Bodies stay in memory: nginx's defaults would spool a request body over 16 KiB, and a
    # response the client is slower to take than the member sends, to temporary files (and
    # refuse request bodies over 1 MiB). The request body is still read whole before it is
    # sent on (nginx's default); with proxy_request_buffering off, nginx closed the client's
    # connection after most uploads whose answer came right after the body (wrk: read
    # errors), and relayed less.
    client_max_body_size 0;
    client_body_buffer_size 2m;
    proxy_max_temp_file_size 0;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream members {{
        random;
{servers}        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://members;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def haproxy_conf(directory: Path, port: int, members: list[str], mode: str) -> str:
    servers = "".join(f"    server m{i} {m}\n" for i, m in enumerate(members, 1))
    return f"""# scripts/bench: HAProxy as the front (balance random), {mode} mode
global
    maxconn {haproxy_maxconn()}
    pidfile {directory}/haproxy.pid
    log stderr format short local0 warning
defaults
    mode {mode}
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
frontend front
    bind 127.0.0.1:{port}
    default_backend members
backend members
    balance random
{servers}"""


def apache_front_conf(directory: Path, port: int, members: list[str], heartbeat: bool) -> str:
    """lbmethod=heartbeat with mod_heartmonitor (the lab), or byrequests (a stand-in)."""
    user, group = unprivileged()
    (directory / "run").mkdir(exist_ok=True)
    balancer = "".join(f'    BalancerMember "http://{m}"\n' for m in members)
    if heartbeat:
        modules = (f"LoadModule slotmem_shm_module {MODULES}/mod_slotmem_shm.so\n"
                   f"LoadModule heartmonitor_module {MODULES}/mod_heartmonitor.so\n"
                   f"LoadModule lbmethod_heartbeat_module {MODULES}/mod_lbmethod_heartbeat.so\n")
        monitor, method = f"HeartbeatListen {GROUP}\n", "heartbeat"
    else:
        modules = (f"LoadModule slotmem_shm_module {MODULES}/mod_slotmem_shm.so\n"
                   f"LoadModule lbmethod_byrequests_module "
                   f"{MODULES}/mod_lbmethod_byrequests.so\n")
        monitor, method = "", "byrequests"
    return f"""# scripts/bench: Apache httpd as the front (mod_proxy_balancer, lbmethod={method})
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
LoadModule proxy_http_module {MODULES}/mod_proxy_http.so
LoadModule proxy_balancer_module {MODULES}/mod_proxy_balancer.so
{modules}
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
{monitor}
<Proxy "balancer://members">
{balancer}    ProxySet lbmethod={method}
</Proxy>
ProxyPass        "/" "balancer://members/"
ProxyPassReverse "/" "balancer://members/"
"""


def start_front(kind: str, directory: Path, members: list[str], *, heartbeat_listen: str = "",
                workers: int | str = "auto", apache_heartbeat: bool = True) -> Server:
    """Start one contender; returns when it serves (hbfork: all members eligible)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    port = free_port()
    info: dict[str, Any] = {"kind": kind}
    if kind in ("hbfork-http", "hbfork-tcp"):
        status_port = free_port()
        conf = directory / "hbfork.toml"
        conf.write_text(hbfork_conf(directory, port, kind.split("-")[1], workers,
                                    heartbeat_listen, members, status_port))
        proc = spawn_hbfork(kind, conf, directory)
        info.update(status_url=f"http://127.0.0.1:{status_port}/status.json", config=str(conf))
        server = Server(kind, "127.0.0.1", port, proc, directory, info)
        wait_members(server, len(members))
    elif kind == "nginx":
        conf = directory / "nginx.conf"
        conf.write_text(nginx_front_conf(directory, port, members))
        proc = spawn(kind, ["nginx", "-p", str(directory), "-c", str(conf), "-e", "stderr"],
                     directory)
        server = Server(kind, "127.0.0.1", port, proc, directory, info)
    elif kind in ("haproxy", "haproxy-tcp"):
        conf = directory / "haproxy.cfg"
        conf.write_text(haproxy_conf(directory, port, members,
                                     "tcp" if kind == "haproxy-tcp" else "http"))
        proc = spawn(kind, ["haproxy", "-db", "-f", str(conf)], directory)
        server = Server(kind, "127.0.0.1", port, proc, directory, info)
    elif kind == "apache":
        conf = directory / "httpd.conf"
        conf.write_text(apache_front_conf(directory, port, members, apache_heartbeat))
        proc = spawn(kind, ["apache2", "-f", str(conf), "-DFOREGROUND"], directory)
        info["lbmethod"] = "heartbeat" if apache_heartbeat else "byrequests"
        server = Server(kind, "127.0.0.1", port, proc, directory, info)
    else:
        raise ValueError(kind)
    info["config"] = str(conf)
    wait_http(server, timeout=30)
    return server


def status(server: Server) -> dict[str, Any]:
    with urllib.request.urlopen(server.info["status_url"], timeout=3) as answer:
        return json.loads(answer.read())


def wait_members(server: Server, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    eligible = 0
    while time.monotonic() < deadline:
        if not server.proc.alive():
            raise RuntimeError(f"{server.name} exited:\n{server.proc.tail()}"
                               f"{_logs(server.workdir)}")
        try:
            eligible = sum(m["eligible"] for m in status(server)["members"])
            if eligible >= count:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.name}: {eligible} of {count} members eligible after "
                       f"{timeout:g}s{_logs(server.workdir)}")
