"""The client's address through real programs, on loopback: HAProxy `send-proxy-v2` in front of
hbfork (hbfork's PROXY listener), and nginx `listen ... proxy_protocol` and Apache
`RemoteIPProxyProtocol On` as members of a pool with `proxy_protocol = "v1"` / `"v2"`, in
both of hbfork's modes. Each program's own log says which client it saw: the address the test's
client connected from, never hbfork's or HAProxy's.

Without the program the test skips, except under CI=true, where it fails (CI must not pass a
test it did not run).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Process, Proxy, free_port, wait_until

CLIENT = "127.0.0.81"      # where the test's client connects from
BALANCER = "127.0.0.82"    # HAProxy
MEMBER = "127.0.0.83"      # nginx / Apache / hbfork backend
REQUEST = b"GET /who HTTP/1.1\r\nHost: edge.test\r\nConnection: close\r\n\r\n"


def program(name: str, *paths: str) -> str:
    found = shutil.which(name) or next((p for p in paths if os.access(p, os.X_OK)), None)
    if found is None:
        message = f"{name} is not installed (Debian: apt-get install {name})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def fetch(port: int, host: str = "127.0.0.1") -> bytes:
    """One request from CLIENT, read to the end."""
    with socket.create_connection((host, port), timeout=10,
                                  source_address=(CLIENT, 0)) as sock:
        sock.sendall(REQUEST)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass  # closed with our request unread: what came before is the answer
        return out


def wait_listening(proc: Process, host: str, port: int) -> None:
    def listening() -> bool:
        if not proc.alive():
            raise AssertionError(f"exited:\n{proc.output()}")
        with socket.create_connection((host, port), timeout=1):
            return True
    wait_until(listening, 10, message=f"{host}:{port} to listen")


def log_lines(path: Path, count: int) -> list[str]:
    return wait_until(lambda: path.exists() and len(lines := path.read_text().splitlines())
                      >= count and lines, 10, message=f"{count} lines in {path}")


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory Apache's unprivileged children can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hbfork-edge-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def hbfork(tmp: Path, mode: str, pool: dict | None = None, **sections) -> Proxy:
    """hbfork with `pool` (its one pool, "default", of static members tried without
    heartbeats), or a discovered backend."""
    extra: dict = {"pool": [pool]} if pool is not None else {}
    extra["heartbeat"] = {"startup_grace": 3600} if pool is not None else {"discover": True}
    tmp.mkdir(exist_ok=True)
    return Proxy(tmp, [], proxy={"mode": mode, "workers": 1}, **extra, **sections)


@pytest.fixture
def started() -> Iterator[list[Process]]:
    procs: list[Process] = []
    yield procs
    for proc in reversed(procs):
        proc.stop()


# --- HAProxy in front


@pytest.mark.parametrize("mode", ["http", "tcp"])
def test_haproxy_send_proxy_v2_in_front(scratch, started, mode):
    """HAProxy (send-proxy-v2) -> hbfork (a PROXY listener; a pool sending v1) -> nginx
    (proxy_protocol): nginx sees the client that connected to HAProxy."""
    binary = program("haproxy", "/usr/sbin/haproxy")
    member_port, member_log = nginx_member(scratch / "nginx", started)
    listen_port = free_port()
    log = scratch / "access.log"
    proxy = hbfork(scratch / "hbfork", mode,
                   pool={"name": "default", "members": [f"{MEMBER}:{member_port}"],
                         "proxy_protocol": "v1"},
                   log={"access": str(log)},
                   listen=[{"address": f"127.0.0.1:{listen_port}", "proxy_protocol": True,
                            "proxy_protocol_from": [f"{BALANCER}/32"]}])
    started.append(proxy)
    proxy.wait_ready()
    front_port = free_port(BALANCER)
    conf = scratch / "haproxy.cfg"
    conf.write_text(textwrap.dedent(f"""\
        global
            maxconn 100
        defaults
            mode {mode}
            timeout connect 5s
            timeout client 30s
            timeout server 30s
        frontend edge
            bind {BALANCER}:{front_port}
            default_backend hbfork
        backend hbfork
            source {BALANCER}
            server hb 127.0.0.1:{listen_port} send-proxy-v2
        """))
    haproxy = Process([binary, "-db", "-f", str(conf)], scratch / "haproxy.log")
    started.append(haproxy)
    wait_listening(haproxy, BALANCER, front_port)
    answer = fetch(front_port, BALANCER)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.endswith(f"seen {CLIENT}\n".encode()), answer
    assert log_lines(member_log, 1)[-1].split(" ")[0] == CLIENT
    counts = proxy.status()["totals"]["proxy_protocol"]
    assert counts["ok"] >= 1 and counts["malformed"] == 0, counts
    if mode == "http":
        # hbfork's access log names the client HAProxy saw, not HAProxy
        assert log_lines(log, 1)[0].split(" ", 1)[0] == CLIENT
    # A connection straight to the PROXY listener from elsewhere is refused.
    assert fetch(listen_port) == b""
    wait_until(lambda: proxy.status()["totals"]["proxy_protocol"]["untrusted"] == 1, 5,
               message="the direct connection counted as untrusted")


# --- nginx and Apache behind


def nginx_member(directory: Path, started: list[Process]) -> tuple[int, Path]:
    binary = program("nginx", "/usr/sbin/nginx")
    port = free_port(MEMBER)
    for sub in ("logs", "tmp"):
        (directory / sub).mkdir(parents=True)
    log = directory / "logs" / "access.log"
    conf = directory / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""\
        daemon off;
        master_process on;
        worker_processes 1;
        {"user root root;" if os.geteuid() == 0 else ""}
        pid {directory}/nginx.pid;
        error_log stderr warn;
        events {{ worker_connections 64; }}
        http {{
            log_format pp '$proxy_protocol_addr $remote_addr $request_uri $status';
            access_log {log} pp;
            client_body_temp_path {directory}/tmp/body;
            proxy_temp_path {directory}/tmp/proxy;
            fastcgi_temp_path {directory}/tmp/fastcgi;
            uwsgi_temp_path {directory}/tmp/uwsgi;
            scgi_temp_path {directory}/tmp/scgi;
            server {{
                listen {MEMBER}:{port} proxy_protocol;
                location / {{ return 200 "seen $proxy_protocol_addr\\n"; }}
            }}
        }}
        """))
    nginx = Process([binary, "-p", str(directory), "-c", str(conf), "-e", "stderr"],
                    directory / "nginx.out")
    started.append(nginx)
    wait_listening(nginx, MEMBER, port)
    return port, log


APACHE_MODULES = Path("/usr/lib/apache2/modules")


def apache_member(directory: Path, started: list[Process]) -> tuple[int, Path]:
    binary = program("apache2", "/usr/sbin/apache2")
    if not (APACHE_MODULES / "mod_remoteip.so").exists():
        pytest.fail("apache2 without mod_remoteip")
    port = free_port(MEMBER)
    directory.mkdir(mode=0o755)
    (directory / "run").mkdir()
    log = directory / "access.log"
    user = "www-data" if _user_exists("www-data") else "nobody"
    conf = directory / "httpd.conf"
    conf.write_text(textwrap.dedent(f"""\
        ServerRoot {directory}
        ServerName member.test
        DefaultRuntimeDir {directory}/run
        PidFile {directory}/run/httpd.pid
        ErrorLog {directory}/error.log
        LogLevel info
        User {user}
        Group {"www-data" if user == "www-data" else "nogroup"}
        LoadModule mpm_event_module {APACHE_MODULES}/mod_mpm_event.so
        LoadModule authz_core_module {APACHE_MODULES}/mod_authz_core.so
        LoadModule remoteip_module {APACHE_MODULES}/mod_remoteip.so
        StartServers 1
        ServerLimit 1
        ThreadsPerChild 8
        MaxRequestWorkers 8
        Listen {MEMBER}:{port}
        RemoteIPProxyProtocol On
        LogFormat "%a %{{c}}a %U %>s" pp
        CustomLog {log} pp
        """))
    apache = Process([binary, "-f", str(conf), "-DFOREGROUND"], directory / "apache.out")
    started.append(apache)
    wait_until(lambda: _apache_up(apache, directory), 10, message="Apache to start")
    return port, log


def _apache_up(apache: Process, directory: Path) -> bool:
    if not apache.alive():
        raise AssertionError(f"apache2 exited:\n{apache.output()}\n"
                             f"{(directory / 'error.log').read_text(errors='replace')}")
    error_log = directory / "error.log"
    return error_log.exists() and "AH00489" in error_log.read_text(errors="replace")


def _user_exists(name: str) -> bool:
    import pwd
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("mode", ["http", "tcp"])
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("server", ["nginx", "apache"])
def test_members_that_read_the_proxy_protocol_see_the_client(scratch, started, server,
                                                             version, mode):
    make = nginx_member if server == "nginx" else apache_member
    port, log = make(scratch / server, started)
    proxy = hbfork(scratch / "hbfork", mode,
                   pool={"name": "default", "members": [f"{MEMBER}:{port}"],
                         "proxy_protocol": version})
    started.append(proxy)
    proxy.wait_ready()
    for _ in range(2):
        answer = fetch(proxy.port)
        assert b" 200 " in answer.split(b"\r\n", 1)[0] or b" 404 " in answer.split(b"\r\n")[0], \
            answer[:300]
    lines = log_lines(log, 2)
    # the member's view of the client: nginx's $proxy_protocol_addr, Apache's %a; and the
    # connection itself came from hbfork (nginx's $remote_addr, Apache's %{c}a)
    assert [line.split(" ")[0] for line in lines] == [CLIENT, CLIENT], lines
    assert all(line.split(" ")[1] == "127.0.0.1" for line in lines), lines
    if server == "nginx":
        assert answer.endswith(f"seen {CLIENT}\n".encode())
