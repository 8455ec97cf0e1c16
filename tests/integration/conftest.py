"""Fixtures that start real hbfork processes on loopback and stop every one of them."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Backend, Process, Proxy, shm_exists


class Cluster:
    """Processes of one test: backends and proxies, stopped in reverse order at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.processes: list[Process] = []
        self.segments: list[str] = []
        self._next_ip = 2
        self.http_defaults: dict[str, Any] = {}  # [http] settings every proxy starts with

    def backend(self, name: str, capacity: int = 10, heartbeat: str | None = None,
                ip: str | None = None, **kwargs: Any) -> Backend:
        if ip is None:
            ip = f"127.0.0.{self._next_ip}"
            self._next_ip += 1
        backend = Backend(self.tmp, name, ip, heartbeat, capacity, **kwargs)
        self.processes.append(backend)  # before waiting: a failed start is still stopped
        backend.wait_ready()
        return backend

    def proxy(self, members: list[dict[str, Any]], cwd: Path | None = None,
              **sections: dict[str, Any]) -> Proxy:
        home = self.tmp / f"proxy{sum(isinstance(p, Proxy) for p in self.processes) + 1}"
        home.mkdir()
        if self.http_defaults:
            sections["http"] = {**self.http_defaults, **sections.get("http", {})}
        proxy = Proxy(home, members, cwd, **sections)
        self.processes.append(proxy)  # before waiting: a failed start is still stopped
        self.segments.append(proxy.segment())
        proxy.wait_ready()
        return proxy

    def stop(self) -> None:
        # All signalled first, then waited for: they stop side by side, not one after another
        # (a test's teardown was the sum of its processes' exits).
        signalled = []
        for proc in reversed(self.processes):
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                signalled.append(proc)
        for proc in reversed(self.processes):
            proc.stop(signalled=proc in signalled)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()
    leftovers = [name for name in c.segments if shm_exists(name)]
    assert not leftovers, f"shared-memory segments left behind: {leftovers}"
