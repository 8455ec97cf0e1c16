"""The load test's own topology on loopback: `hbfork run` and three `hbfork backend`s.

Backends listen on 127.0.0.2, .3 and .4 (Linux answers on all of 127.0.0.0/8) and beat unicast
to the proxy's heartbeat port on 127.0.0.1, each from its own address. Every process is
started here and stopped by its pid (loadtest.bench.procs); waiting is polling with a deadline.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The one process manager of the benchmark harness: started in their own session, stopped by pid.
from loadtest.bench.procs import Proc, free_port, wait_until

HBFORK = [sys.executable, "-m", "hbfork"]

__all__ = ["NORMAL", "OVERLOAD", "SLOW", "VICTIM", "BackendSpec", "Proc", "Topology",
           "backends_for", "free_port", "wait_until"]


@dataclass
class BackendSpec:
    name: str
    ip: str
    capacity: int
    delay_ms: float = 0.0
    workers: int = 0   # > 0: `hbfork backend --workers`, a real limit on what it serves at once


NORMAL = (BackendSpec("alpha", "127.0.0.2", 50), BackendSpec("beta", "127.0.0.3", 100),
          BackendSpec("gamma", "127.0.0.4", 150))
SLOW = BackendSpec("gamma-slow", "127.0.0.4", 2, delay_ms=100)
# overload: three members that really have two workers each (50 ms per request): 6 requests
# at once, ~120/s in all, so a spike of users is far more than they can serve at once and the
# rest must wait in hbfork's front queue.
OVERLOAD = tuple(BackendSpec(name, ip, 2, delay_ms=50, workers=2)
                 for name, ip in (("alpha", "127.0.0.2"), ("beta", "127.0.0.3"),
                                  ("gamma", "127.0.0.4")))
VICTIM = "beta"   # the member the member-down scenario kills


def backends_for(scenario: str) -> tuple[BackendSpec, ...]:
    """member-slow swaps gamma for a slow member with capacity 2 (ready <= 2); overload has
    three members with two real workers each."""
    if scenario == "overload":
        return OVERLOAD
    return (*NORMAL[:2], SLOW) if scenario == "member-slow" else NORMAL


class Topology:
    """hbfork + backends in `workdir` (config, pidfile and every log stay there)."""

    def __init__(self, workdir: Path, backends: tuple[BackendSpec, ...], mode: str = "http",
                 workers: int | str = 2) -> None:
        self.workdir = workdir
        self.specs = backends
        self.mode = mode
        self.workers = workers
        self.port = free_port()
        self.status_port = free_port()
        self.heartbeat_port = free_port(kind=socket.SOCK_DGRAM)
        # Short on purpose: the default control socket is "<pidfile>.ctl", and a Unix socket
        # path longer than 107 bytes makes hbfork refuse to start ("AF_UNIX path too long").
        self.piddir = Path(tempfile.mkdtemp(prefix="hbload-"))
        self.pidfile = self.piddir / "hbfork.pid"
        self.backends: dict[str, Proc] = {}
        self.proxy: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}/status.json"

    def start(self) -> Topology:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = {spec.name: free_port(spec.ip) for spec in self.specs}
        for spec in self.specs:
            self.backends[spec.name] = Proc(spec.name, [
                *HBFORK, "backend", "--listen", f"{spec.ip}:{ports[spec.name]}",
                "--heartbeat", f"127.0.0.1:{self.heartbeat_port}",
                "--capacity", str(spec.capacity), "--delay-ms", str(spec.delay_ms),
                "--workers", str(spec.workers), "--name", spec.name],
                self.workdir / f"backend-{spec.name}.log")
        config = self.workdir / "hbfork.toml"
        config.write_text(self._config(ports))
        self.proxy = Proc("hbfork", [*HBFORK, "run", "-c", str(config)],
                          self.workdir / "hbfork.log")
        wait_until(self._routing, 20, "hbfork to see every member eligible")
        return self

    def _config(self, ports: dict[str, int]) -> str:
        workers = f'"{self.workers}"' if isinstance(self.workers, str) else self.workers
        members = "".join(f'\n[[member]]\naddress = "{s.ip}:{ports[s.name]}"\n'
                          f'name = "{s.name}"\n' for s in self.specs)
        return f"""# written by scripts/loadtest
[proxy]
listen = ["127.0.0.1:{self.port}"]
mode = "{self.mode}"
workers = {workers}
allow_root = true
pidfile = "{self.pidfile}"
shutdown_timeout = 10

[heartbeat]
listen = "127.0.0.1:{self.heartbeat_port}"

[status]
listen = "127.0.0.1:{self.status_port}"

[log]
level = "info"
{members}"""

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.status_url, timeout=2) as answer:
            return json.loads(answer.read())

    def _routing(self) -> bool:
        for proc in (self.proxy, *self.backends.values()):
            if proc is not None and not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.proc.returncode}:\n"
                                   f"{proc.tail()}")
        members = self.status()["members"]
        return len(members) == len(self.specs) and all(m["eligible"] for m in members)

    def master_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for proc in self.backends.values():
            proc.stop()
        shutil.rmtree(self.piddir, ignore_errors=True)
