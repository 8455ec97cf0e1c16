"""Start real hbfork processes on loopback for integration tests, and always stop them.

Every process is started here and stopped by its pid; nothing is matched by name. Waiting is
polling with a deadline (wait_until), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hbfork.table.layout import segment_name
from hbfork.table.table import Table
from loadtest.bench.procs import free_port

HBFORK = [sys.executable, "-m", "hbfork"]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               message: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except (OSError, ValueError, KeyError, http.client.HTTPException) as err:
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def to_toml(sections: dict[str, Any]) -> str:
    out = []
    for name, body in sections.items():
        if name in ("member", "pool", "route", "listen", "certificate"):
            for table in body:
                out.append(f"[[{name}]]")
                out.extend(f"{k} = {toml_value(v)}" for k, v in table.items()
                           if not (name == "pool" and k == "member"))
                out.append("")
                for member in table.get("member", []) if name == "pool" else ():
                    out.append("[[pool.member]]")
                    out.extend(f"{k} = {toml_value(v)}" for k, v in member.items())
                    out.append("")
            continue
        out.append(f"[{name}]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in body.items())
        out.append("")
    return "\n".join(out)


class Process:
    """A child process with its output in a file, stopped by pid."""

    def __init__(self, args: list[str], log: Path, cwd: Path | None = None) -> None:
        self.args = args
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0,
             signalled: bool = False) -> int | None:
        """Signal (unless `signalled` already) and wait; killed after `timeout`."""
        if self.alive():
            if not signalled:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


class Backend(Process):
    def __init__(self, tmp: Path, name: str, ip: str, heartbeat: str | None, capacity: int,
                 delay_ms: float = 0, interval: float = 0.2, extra: tuple[str, ...] = (),
                 port: int | None = None) -> None:
        self.name, self.ip, self.port = name, ip, port or free_port(ip)
        args = [*HBFORK, "backend", "--listen", f"{ip}:{self.port}", "--capacity",
                str(capacity), "--name", name, "--delay-ms", str(delay_ms),
                "--interval", str(interval), *extra]
        if heartbeat:
            args += ["--heartbeat", heartbeat]
        super().__init__(args, tmp / f"backend-{name}.log")

    def wait_ready(self) -> None:
        wait_until(self._listening, 10, message=f"backend {self.name} to listen")

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def _listening(self) -> bool:
        if not self.alive():
            raise AssertionError(f"backend {self.name} exited:\n{self.output()}")
        with socket.create_connection((self.ip, self.port), timeout=1):
            return True

    def pause_heartbeats(self) -> None:
        self.send_signal(signal.SIGUSR1)

    def resume_heartbeats(self) -> None:
        self.send_signal(signal.SIGUSR2)


class Proxy(Process):
    """`hbfork run` with a config built from defaults plus overrides."""

    def __init__(self, tmp: Path, members: list[dict[str, Any]], cwd: Path | None = None,
                 **sections: Any) -> None:
        """`cwd`: where `python -m hbfork` finds the package first (a copy to upgrade to)."""
        self.tmp = tmp
        self.port = free_port()
        self.status_port = free_port()
        self.heartbeat_port = free_port(kind=socket.SOCK_DGRAM)
        self.config: dict[str, Any] = {
            "proxy": {"listen": [f"127.0.0.1:{self.port}"], "workers": 2, "allow_root": True,
                      "pidfile": str(tmp / "hbfork.pid"), "shutdown_timeout": 10,
                      "retry": 5},
            "heartbeat": {"listen": f"127.0.0.1:{self.heartbeat_port}", "max_age": 3},
            "status": {"listen": f"127.0.0.1:{self.status_port}"},
            "http": {"connect_timeout": 2, "response_timeout": 10},
            "log": {"level": "info"},
        }
        for name, values in sections.items():
            if name in ("pool", "route", "listen", "certificate"):
                self.config[name] = values  # arrays of tables
            else:
                self.config.setdefault(name, {}).update(values)
        self.config["member"] = members
        self.config_path = tmp / "hbfork.toml"
        self.write_config()
        super().__init__([*HBFORK, "run", "-c", str(self.config_path)], tmp / "hbfork.log", cwd)

    def wait_ready(self) -> None:
        wait_until(self._serving, 15, message="hbfork to serve its status page")

    @property
    def heartbeat_address(self) -> str:
        return f"127.0.0.1:{self.heartbeat_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        self.config_path.write_text(to_toml(self.config))

    def _serving(self) -> bool:
        if not self.alive():
            raise AssertionError(f"hbfork exited with {self.proc.returncode}:\n{self.output()}")
        status = self.status()
        return len([w for w in status["workers"] if w["state"] == "ready"]) >= \
            self.config["proxy"]["workers"]

    def status(self) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        try:
            conn.request("GET", "/status.json")
            response = conn.getresponse()
            return json.loads(response.read())
        finally:
            conn.close()

    def member(self, address: str) -> dict[str, Any]:
        return next(m for m in self.status()["members"] if m["address"] == address)

    def wait_eligible(self, *addresses: str, timeout: float = 10) -> None:
        def ready() -> bool:
            members = {m["address"]: m for m in self.status()["members"]}
            return all(members.get(a, {}).get("eligible") for a in addresses)
        wait_until(ready, timeout, message=f"members {addresses} to be eligible")

    def workers(self) -> list[dict[str, Any]]:
        return self.status()["workers"]

    def segment(self) -> str:
        return segment_name(self.pid)

    def table(self) -> Table:
        return Table.attach(self.segment())


def get(url: str, path: str = "/", conn: http.client.HTTPConnection | None = None,
        method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
        timeout: float = 10) -> tuple[http.client.HTTPResponse, bytes,
                                      http.client.HTTPConnection]:
    if conn is None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    return response, data, conn


def spread(url: str, requests: int, keep_alive: bool = True) -> Counter[str]:
    """X-Backend counts over `requests` sequential requests (non-200 counted by status)."""
    counts: Counter[str] = Counter()
    conn = None
    for _ in range(requests):
        response, _, conn = get(url, conn=conn if keep_alive else None)
        if not keep_alive:
            conn.close()
        counts[response.getheader("X-Backend") if response.status == 200
               else f"HTTP {response.status}"] += 1
    if conn is not None:
        conn.close()
    return counts


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def shm_exists(name: str) -> bool:
    return Path("/dev/shm", name).exists()


@contextlib.contextmanager
def stopping(*procs: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()
