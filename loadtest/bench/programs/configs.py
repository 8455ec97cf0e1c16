"""scripts/bench: the servers it runs. Config text for each program, and one launcher.

Backends: real Apache httpd with mod_heartbeat inside the network-namespace lab (multicast
heartbeats, as APACHE-HEARTBEAT.md describes), or nginx on 127.0.0.2-4 with heartbeats sent
for them (hbfork.beat.Beacon) when only loopback is available. Every backend serves the same
files (kinds.FILES: 604 bytes, 16 KiB, 1 MiB) and reads and discards POSTed bodies at
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
import os
import pwd
import resource
from pathlib import Path

from loadtest.bench.kinds import APACHE_UPLOAD, FILES, KINDS

GROUP = "239.0.0.1:27999"
NOFILE = 65536   # wanted; a container without CAP_SYS_RESOURCE may cap it lower (see below)
MODULES = Path("/usr/lib/apache2/modules")
UPLOAD = KINDS["1m-up"].path
CHUNKED = "/chunked"  # nginx_backend_conf: every file again, as a chunked response


def nofile_limit() -> int:
    """The RLIMIT_NOFILE children get: NOFILE, or the hard limit when that is lower."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)


def haproxy_maxconn() -> int:
    """HAProxy reserves two descriptors per connection (client and server side) and refuses
    to start when maxconn does not fit its FD limit."""
    return min(50_000, (nofile_limit() - 400) // 2)


def unprivileged_user() -> tuple[str, str] | None:
    """(user, group) Apache's children run as (Apache refuses to serve as root), or None."""
    for user in ("www-data", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        return user, grp.getgrgid(entry.pw_gid).gr_name
    return None


def unprivileged() -> tuple[str, str]:
    return unprivileged_user() or ("nobody", "nogroup")


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
        # The same files chunked: the SSI filter drops the length (32 KiB chunks).
        location {CHUNKED}/ {{ alias {docs}/; ssi on; ssi_types *; }}
        # The whole body is read (into memory) before the answer: proxy_pass buffers a request
        # body before it goes on (its body is not passed). A `return` here would answer at once
        # (it runs before mirror or any body reading), and fronts that stream the body take
        # that as the member ending the exchange early: the client's connection is closed.
        location = {UPLOAD} {{
            client_body_buffer_size 2m;
            proxy_pass http://unix:{directory}/sink.sock:/;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Read $content_length;
            add_header X-Backend "{name}" always;
        }}
    }}
    server {{
        listen unix:{directory}/sink.sock;
        location / {{ return 200 "read $http_x_read\\n"; }}
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
