"""scripts/bench: measuring. wrk runs and their parsing, CPU and memory of process trees read
from /proc, 10,000 idle keep-alive clients, and a heartbeat blaster.

Run as a program it is the blaster (a separate process, so the orchestrator can sample the
proxy while it sends):

    python scripts/bench_measure.py blast HOST:PORT SOURCES SECONDS
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_kinds import KINDS

WRK = shutil.which("wrk") or "/usr/bin/wrk"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


# --- wrk ----------------------------------------------------------------------------------

def wrk_command(url: str, connections: int, seconds: float, threads: int = 2,
                script: list[str] | None = None, script_args: list[str] | None = None
                ) -> list[str]:
    """`script`: wrk options for a Lua script (["-s", FILE]); `script_args` go after `--`."""
    threads = min(threads, connections)
    return [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency",
            "--timeout", "5s", *(script or []), url,
            *(["--", *script_args] if script_args else [])]


def run_wrk(url: str, connections: int, seconds: float, threads: int = 2,
            script: list[str] | None = None, script_args: list[str] | None = None
            ) -> dict[str, Any]:
    argv = wrk_command(url, connections, seconds, threads, script, script_args)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30,
                          check=False)
    result = parse_wrk(done.stdout)
    if done.returncode != 0 or "rps" not in result:
        result["error"] = (done.stderr or done.stdout)[-500:]
    return result


def check_exchange(host: str, port: int, method: str, path: str, size: int) -> str | None:
    """One exchange with http.client: None when it is what the benchmark expects (200 and the
    whole `size`-byte body; for a POST of `size` bytes, the backend's answer "read SIZE"),
    else what went wrong."""
    body = b"x" * size if method == "POST" else None
    headers = {"Content-Type": "application/octet-stream"} if body else {}
    try:
        conn = http.client.HTTPConnection(host, port, timeout=15)
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
    except (OSError, http.client.HTTPException) as err:
        return f"{method} {path}: {err!r}"
    if response.status != 200:
        return f"{method} {path}: HTTP {response.status} {data[:80]!r}"
    if method == "GET" and len(data) != size:
        return f"{method} {path}: {len(data)} body bytes, not {size}"
    if method == "POST" and data.strip() != f"read {size}".encode():
        return f"{method} {path}: the backend answered {data[:80]!r}, not 'read {size}'"
    return None


def measure(server: Any, kind: str, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run of `kind` against `server`, with the CPU its process tree spent."""
    spec = KINDS[kind]
    pid = server.proc.pid
    before = tree_cpu(pid)
    result = run_wrk(server.url.rstrip("/") + spec.path, connections, seconds,
                     script=spec.wrk_args(), script_args=spec.wrk_script_args())
    cpu = tree_cpu(pid) - before
    if result.get("requests"):
        result["cpu_us_per_request"] = cpu / result["requests"] * 1e6
    result["cpu_seconds"] = cpu
    return result


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(text)
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {"errors": 0, "non2xx": 0}
    for pct in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", text, re.MULTILINE)
        if match:
            out[f"p{pct}"] = _ms(match.group(1))
    if match := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE):
        out["rps"] = float(match.group(1))
    if match := re.search(r"^\s+(\d+) requests in", text, re.MULTILINE):
        out["requests"] = int(match.group(1))
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                          r"timeout (\d+)", text):
        out["errors"] = sum(int(g) for g in match.groups())
        out["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, match.groups()), strict=True))
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        out["non2xx"] = int(match.group(1))
    if out.get("requests") and "rps" in out:
        # wrk counts error responses (a front's fast 503s) as requests; these do not.
        out["ok_rps"] = out["rps"] * (out["requests"] - out["non2xx"]) / out["requests"]
    return out


# --- /proc --------------------------------------------------------------------------------

def descendants(pid: int) -> list[int]:
    """pid and every live descendant."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (task / "children").read_text().split())
            except OSError:
                pass
    return sorted(set(out))


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes, including their reaped children."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])   # utime stime cutime cstime
    return total / CLK_TCK


def tree_cpu(pid: int) -> float:
    return cpu_seconds(descendants(pid))


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and Pss (proportional: shared pages split among the processes sharing them)."""
    out = {"rss": 0, "pss": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


def tree_memory(pid: int) -> list[dict[str, Any]]:
    return [{"pid": p, "title": process_title(p), **memory_kib(p)} for p in descendants(pid)]


# --- idle keep-alive clients --------------------------------------------------------------

def raise_own_nofile(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class IdleClients:
    """`count` keep-alive connections, each having made one request, then left idle."""

    def __init__(self, host: str, port: int, count: int, batch: int = 256,
                 timeout: float = 60, wave_timeout: float = 10) -> None:
        self.host, self.port, self.count = host, port, count
        self.socks: list[socket.socket] = []
        self.answered = 0
        self.failed = 0
        self._open(batch, timeout, wave_timeout)

    def _open(self, batch: int, timeout: float, wave_timeout: float) -> None:
        request = f"GET / HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode()
        deadline = time.monotonic() + timeout
        while len(self.socks) + self.failed < self.count and time.monotonic() < deadline:
            wave = min(batch, self.count - len(self.socks) - self.failed)
            self._wave(wave, request, min(deadline, time.monotonic() + wave_timeout))

    def _wave(self, n: int, request: bytes, deadline: float) -> None:
        selector = selectors.DefaultSelector()
        pending: dict[socket.socket, bytes] = {}
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((self.host, self.port))
            if err not in (0, errno.EINPROGRESS):
                sock.close()
                self.failed += 1
                continue
            pending[sock] = b""
            selector.register(sock, selectors.EVENT_WRITE)
        while pending and time.monotonic() < deadline:
            for key, events in selector.select(1.0):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        self._drop(selector, pending, sock)
                        continue
                    sock.send(request)
                    selector.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(selector, pending, sock)
                    continue
                pending[sock] += data
                if _complete(pending[sock]):
                    selector.unregister(sock)
                    del pending[sock]
                    self.socks.append(sock)
                    self.answered += 1
        for sock in list(pending):
            self._drop(selector, pending, sock)
        selector.close()

    def _drop(self, selector: selectors.BaseSelector, pending: dict, sock: socket.socket
              ) -> None:
        selector.unregister(sock)
        del pending[sock]
        sock.close()
        self.failed += 1

    def still_open(self) -> int:
        """Connections the server has not closed (a closed one reads as EOF)."""
        alive = 0
        for sock in self.socks:
            try:
                data = sock.recv(1, socket.MSG_PEEK)
                alive += bool(data)   # unexpected bytes: still open
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks.clear()


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    return len(body) >= int(match.group(1)) if match else True


# --- heartbeat blaster --------------------------------------------------------------------

def source_addresses(count: int) -> list[str]:
    """127.1.0.1, 127.1.0.2, ...: `count` distinct loopback sources."""
    return [f"127.1.{i // 250}.{i % 250 + 1}" for i in range(count)]


def blast(target: tuple[str, int], sources: int, seconds: float) -> dict[str, Any]:
    """Send valid heartbeats round-robin from `sources` addresses as fast as possible."""
    socks = []
    for address in source_addresses(sources):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((address, 0))
        sock.setblocking(False)
        socks.append(sock)
    payloads = [f"v=1&ready={10 + i % 90}&busy={i % 7}&port=80".encode()
                for i in range(sources)]
    sent = dropped = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        for sock, payload in zip(socks, payloads, strict=True):
            try:
                sock.sendto(payload, target)
                sent += 1
            except BlockingIOError:
                dropped += 1
    elapsed = time.monotonic() - start
    for sock in socks:
        sock.close()
    return {"sent": sent, "send_blocked": dropped, "seconds": elapsed,
            "sent_per_second": sent / elapsed}


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "blast":
        host, port = argv[1].rsplit(":", 1)
        print(json.dumps(blast((host, int(port)), int(argv[2]), float(argv[3]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
