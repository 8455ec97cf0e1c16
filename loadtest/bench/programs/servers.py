"""scripts/bench's launcher: a Server is one running program reachable at host:port;
start_front() starts any contender from its config (programs/configs.py) and returns once it
serves. hbfork may be run from an export of a commit (HBFORK_HOME) rather than the tree."""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.bench.procs import Proc, free_port, raise_nofile
from loadtest.bench.programs.configs import (
    NOFILE,
    apache_front_conf,
    haproxy_conf,
    hbfork_conf,
    nginx_front_conf,
)


def nofile_preexec() -> None:
    """preexec_fn for every child: room for 10,000 idle connections and their upstreams."""
    raise_nofile(NOFILE)


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
    return Proc(name, [*(prefix or []), *argv], workdir / "output.log", preexec_fn=nofile_preexec)


def spawn_hbfork(name: str, config: Path, workdir: Path) -> Proc:
    """`python -m hbfork run -c config`, imported from HBFORK_HOME when set (it is the cwd
    and PYTHONPATH, both ahead of the checkout's editable install)."""
    argv = [sys.executable, "-m", "hbfork", "run", "-c", str(config)]
    if HBFORK_HOME is None:
        return spawn(name, argv, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o755)
    env = {**os.environ, "PYTHONPATH": str(HBFORK_HOME)}
    return Proc(name, argv, workdir / "output.log", preexec_fn=nofile_preexec, cwd=HBFORK_HOME,
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
