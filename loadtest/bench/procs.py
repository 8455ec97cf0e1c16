"""The one process manager: start programs in their own session with their output in a log
file, wait until they are ready, stop them by pid (TERM, then KILL after a grace period).

Nothing here signals by name or by process group: a benchmark stops exactly the pids it
started, so it never touches another engineer's servers on the same machine.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STOP_TIMEOUT = 15.0


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on now and that this process has not handed out before.

    The kernel may give the same ephemeral port to two binds in a row once the first socket is
    closed, so two ports asked for one config (a listener and the status page) could be equal;
    what was given out is remembered and the kernel asked again. A race remains only with
    other binders.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, kind) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no port not handed out before in 100 tries")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.1) -> Any:
    """Poll `predicate` until it returns something truthy; RuntimeError at the deadline."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError, KeyError) as err:
            last = err
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}"
                       + (f" (last error: {last!r})" if last else ""))


def wait_http(host: str, port: int, path: str = "/", timeout: float = 15) -> None:
    """Until GET `path` answers 200; SystemExit (the benchmark cannot go on) at the deadline."""
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


def raise_nofile(wanted: int, *, raise_hard: bool = False) -> int:
    """Lift this process's RLIMIT_NOFILE soft limit towards `wanted` (children inherit it) and
    return the soft limit now. Never lowers it. With `raise_hard`, first try to lift the hard
    limit too (root may, up to fs.nr_open); otherwise the hard limit caps it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if raise_hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
            return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ValueError, OSError):
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def children(pid: int) -> list[int]:
    """The direct children of `pid` (of its main thread), from /proc."""
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


class Proc:
    """A child process with its output in a log file, in a session of its own (so a terminal's
    Ctrl-C reaches the benchmark, which then stops it by pid), stopped by its pid."""

    def __init__(self, name: str, argv: list[str], log: Path, **popen: Any) -> None:
        self.name = name
        self.log_path = log
        # The child gets its own copy of the descriptor: ours can close at once.
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         **popen)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds, then SIGKILL it; its exit status."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode

    def stop(self, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        if self.alive():
            self.send_signal(signum)
            return self.wait(timeout)
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class ProcGroup:
    """The processes of one run, in `workdir`, stopped together: TERM to all of them (newest
    first), then each is waited for and KILLed after `timeout`. Signalling all before waiting
    on any lets them shut down in parallel. `beacons` are stopped first (so no heartbeat
    outlives its member) and `cleanups` run last."""

    def __init__(self, workdir: Path, timeout: float = 10.0) -> None:
        self.tmp = workdir
        self.timeout = timeout
        self.procs: list[Proc] = []
        self.beacons: list[Any] = []                     # anything with stop()
        self.cleanups: list[Callable[[], object]] = []   # run after the processes stopped

    def start(self, argv: list[str], log: str, env: dict[str, str] | None = None,
              cwd: str | None = None, **popen: Any) -> Proc:
        proc = Proc(log.removesuffix(".log"), argv, self.tmp / log, env=env, cwd=cwd, **popen)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for beacon in self.beacons:
            beacon.stop()
        for proc in reversed(self.procs):
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(self.timeout)
        for cleanup in self.cleanups:
            cleanup()
