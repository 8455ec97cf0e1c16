"""Launchers for the interop tests: Apache httpd instances, hbfork, and plain commands, each
running inside a namespace of the lab (loadtest/bench/lab/netns.py), each stopped by its pid.

`ip netns exec` execs the program in place, so the pid of every Popen here is the pid of the
program itself (Apache's parent, hbfork's master), and stopping it by that pid is exact.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hbfork.apache.render import toml_value
from hbfork.table.layout import MemberRecord, segment_name
from hbfork.table.table import Table, unlink_segment
from loadtest.bench.lab import netns as netlab
from loadtest.bench.programs.configs import GROUP, unprivileged_user

ROOT = Path(__file__).resolve().parents[2]

# The proxy mode every interop test runs hbfork in: the one constant to switch to "http".
MODE = "tcp"
APACHE_DATA = ROOT / "tests" / "data" / "apache"
BACKEND_CONF = APACHE_DATA / "lab-backend.conf"
FRONT_HEARTMONITOR_CONF = APACHE_DATA / "lab-front-heartmonitor.conf"
FRONT_LBMETHOD_CONF = APACHE_DATA / "lab-front-lbmethod.conf"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
NEEDED_MODULES = ("mpm_event", "authz_core", "headers", "heartbeat", "heartmonitor",
                  "slotmem_shm", "proxy", "proxy_http", "proxy_balancer", "lbmethod_heartbeat")
LABCLIENT = Path(__file__).resolve().parent / "labclient.py"
# Root's PATH has /usr/sbin; other callers' may not, while Debian installs apache2 there.
APACHE_BIN = shutil.which("apache2") or shutil.which("apache2", path="/usr/sbin:/sbin")
STOP_TIMEOUT = 10.0
T = TypeVar("T")


def apache_unavailable_reason() -> str | None:
    """Why real-Apache tests cannot run here (Debian's apache2 package provides it all)."""
    if APACHE_BIN is None:
        return "apache2 is not installed (apt-get install apache2)"
    missing = [m for m in NEEDED_MODULES if not (APACHE_MODULES / f"mod_{m}.so").exists()]
    if missing:
        return f"apache2 modules missing from {APACHE_MODULES}: {', '.join(missing)}"
    if unprivileged_user() is None:
        return "no unprivileged user (www-data or nobody) for Apache's children"
    return None


def wait_for(check: Callable[[], T | None], timeout: float, what: Callable[[], str] | str,
             interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds saying
    `what` (a string or a function building one from the state at that moment)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s: "
                                 f"{what() if callable(what) else what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM,
                 timeout: float = STOP_TIMEOUT, signalled: bool = False) -> int:
    """Signal one process by its pid (unless `signalled` already), wait for it, SIGKILL it if
    it outstays `timeout`."""
    if proc.poll() is None:
        if not signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


class Service:
    """One program inside a lab host, with its own directory, stdout and stderr files."""

    def __init__(self, lab: netlab.Lab, host: str, name: str, directory: Path) -> None:
        self.lab = lab
        self.host = lab.host(host)
        self.name = name
        self.dir = directory
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)  # unprivileged Apache children must reach files below
        self.proc: subprocess.Popen | None = None

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.dir / "stdout.log", "ab") as out, open(self.dir / "stderr.log", "ab") as err:
            self.proc = self.lab.popen(self.host.name, argv, stdout=out, stderr=err,
                                       stdin=subprocess.DEVNULL,
                                       env={**os.environ, **(env or {})})
        return self.proc

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_stop(self) -> bool:
        """SIGTERM now if it runs, for a stop(signalled=True) to wait for; whether it ran."""
        if not self.running:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        return True

    def stop(self, signalled: bool = False) -> None:
        if self.proc is not None:
            stop_process(self.proc, signalled=signalled)

    def output(self) -> str:
        """Its logs, for assertion messages."""
        parts = []
        for path in sorted(self.dir.glob("*.log")):
            text = path.read_text(errors="replace")[-3000:]
            if text.strip():
                parts.append(f"--- {self.name}: {path.name}\n{text}")
        return "\n".join(parts) or f"--- {self.name}: no output"

    def check_started(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode} at start\n"
                                 + self.output())


class Apache(Service):
    """An apache2 instance run in the foreground from one of tests/data/apache/lab-*.conf,
    its ${VAR}s filled from the environment as Apache itself does."""

    def start(self, template: Path, variables: dict[str, str]) -> Apache:
        user, group = unprivileged_user() or ("nobody", "nogroup")
        (self.dir / "run").mkdir(exist_ok=True)
        env = {"HB_DIR": str(self.dir), "HB_NAME": self.name, "HB_USER": user,
               "HB_GROUP_NAME": group, **variables}
        assert APACHE_BIN is not None
        self.spawn([APACHE_BIN, "-f", str(template), "-DFOREGROUND"], env)
        wait_for(self._started, 10, lambda: f"{self.name} did not start\n{self.output()}")
        return self

    def _started(self) -> bool:
        self.check_started()
        log = self.dir / "error.log"
        # AH00489 is logged after the listeners are open: connections queue from then on.
        return log.exists() and "AH00489" in log.read_text(errors="replace")

    def serve_file(self, name: str, text: str) -> None:
        docs = self.dir / "htdocs"
        docs.mkdir(mode=0o755, exist_ok=True)
        (docs / name).write_text(text)
        os.chmod(docs / name, 0o644)


class Hbfork(Service):
    """`hbfork run` (its master) inside a lab host, with the table read from the root
    namespace: /dev/shm is shared, only the network is namespaced."""

    def start(self, config_text: str) -> Hbfork:
        self.config = self.dir / "hbfork.toml"
        self.config.write_text(config_text)
        self.spawn([sys.executable, "-m", "hbfork", "run", "-c", str(self.config)])
        wait_for(self._started, 10, lambda: f"{self.name} did not start\n{self.output()}")
        return self

    @property
    def pidfile(self) -> Path:
        return self.dir / "hbfork.pid"

    @property
    def log_path(self) -> Path:
        return self.dir / "hbfork.log"

    def _started(self) -> bool:
        self.check_started()
        # The table is created after every socket is bound: from then on clients can connect.
        return self._pidfile_pid() == self.pid and \
            Path("/dev/shm", segment_name(self.pid)).exists()

    def _pidfile_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @contextlib.contextmanager
    def table(self) -> Iterator[Table]:
        """The live table, attached read-only, closed (never unlinked) afterwards."""
        table = Table.attach(segment_name(self._pidfile_pid() or self.pid))
        try:
            yield table
        finally:
            table.close()

    def members(self) -> dict[str, MemberRecord]:
        with self.table() as table:
            return {record.address: record for record in table.members()}

    def heartbeat_counters(self) -> dict[str, int]:
        with self.table() as table:
            return table.heartbeat_counters()

    def leftover_segment(self) -> str | None:
        """The master's segment if it outlived the master (it must not)."""
        if self.proc is None or self.running:
            return None
        name = segment_name(self.pid)
        return name if Path("/dev/shm", name).exists() else None


def hbfork_config(directory: Path, listen: str, members: list[str], *, max_age: float = 3,
                  extra_heartbeat: str = "", mode: str = MODE, extra_proxy: str = "") -> str:
    """An hbfork config for the lab: heartbeats from the multicast group, status page off."""
    member_tables = "".join(f'\n[[member]]\naddress = "{m}"\n' for m in members)
    return f"""\
[proxy]
listen = ["{listen}"]
mode = "{mode}"
workers = 2
allow_root = true            # the tests run as root and nothing here needs a user switch
pidfile = "{directory / 'hbfork.pid'}"
shutdown_timeout = 5
retry = 5
{extra_proxy}

[heartbeat]
listen = "{GROUP}"
max_age = {max_age}
forget_after = 30
{extra_heartbeat}

[status]
listen = ""

[log]
level = "debug"
error = "{directory / 'hbfork.log'}"
{member_tables}"""


def patch(text: str, section: str, values: dict[str, Any]) -> str:
    """Set (or with None remove) keys of one [section] of `hbfork import-apache`'s TOML."""
    lines = text.splitlines()
    header = f"[{section}]"
    if header not in lines:
        lines += ["", header]
    start = lines.index(header) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    body = [line for line in lines[start:end] if line.split(" = ", 1)[0] not in values]
    added = [f"{key} = {toml_value(value)}" for key, value in values.items()
             if value is not None]
    return "\n".join(lines[:start] + added + body + lines[end:]) + "\n"


class Launcher:
    """Starts services in the lab and stops all of them by pid, signalled newest first and
    waited for together."""

    def __init__(self, lab: netlab.Lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.services: list[Service] = []

    def _directory(self, name: str) -> Path:
        return self.workdir / f"{len(self.services):02d}-{name}"

    def apache(self, host: str, name: str, template: Path, **variables: str) -> Apache:
        service = Apache(self.lab, host, name, self._directory(name))
        self.services.append(service)
        service.serve_file("who.txt", f"{name}\n")
        return service.start(template, variables)

    def hbfork(self, host: str, name: str, make_config: Callable[[Path], str]) -> Hbfork:
        """`make_config(directory)` returns the TOML (paths in it may use the directory)."""
        service = Hbfork(self.lab, host, name, self._directory(name))
        self.services.append(service)
        return service.start(make_config(service.dir))

    def process(self, host: str, name: str, argv: list[str]) -> Service:
        service = Service(self.lab, host, name, self._directory(name))
        self.services.append(service)
        service.spawn(argv)
        return service

    def client(self, host: str, *args: str, timeout: float = 60) -> Any:
        """Run labclient.py inside `host` and return its JSON answer."""
        done = self.lab.run(host, [sys.executable, str(LABCLIENT), *args], timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"labclient {' '.join(args)} failed: {done.stderr}")
        return json.loads(done.stdout)

    def output(self) -> str:
        return "\n".join(service.output() for service in self.services)

    def close(self) -> list[str]:
        """Stop everything; return the problems found (shared memory left behind)."""
        problems = []
        # All signalled first, then waited for: they stop side by side, not one after another.
        signalled = [service for service in reversed(self.services) if service.signal_stop()]
        for service in reversed(self.services):
            service.stop(signalled=service in signalled)
            if isinstance(service, Hbfork) and (name := service.leftover_segment()):
                unlink_segment(name)
                problems.append(f"{service.name} left /dev/shm/{name} behind after exiting")
        self.services.clear()
        return problems
