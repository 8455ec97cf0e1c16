"""`hbfork demo`: the proxy and three heartbeat-sending backends on loopback, with a sample.

Backends listen on 127.0.0.2, .3 and .4 (Linux answers on all of 127.0.0.0/8), each with a
different capacity, and beat unicast to the proxy on 127.0.0.1; the traffic should split in
proportion to the ready counts they report.
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
import tempfile
import time
from collections import Counter
from pathlib import Path

BACKENDS = (("alpha", "127.0.0.2", 10), ("beta", "127.0.0.3", 20), ("gamma", "127.0.0.4", 30))


def free_port(host: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def write_config(directory: Path, port: int, mode: str, heartbeat_port: int,
                 backends: list[tuple[str, str, int, int]]) -> Path:
    members = "".join(f'\n[[member]]\naddress = "{ip}:{p}"\nname = "{name}"\n'
                      for name, ip, p, _ in backends)
    text = f"""# written by `hbfork demo`
[proxy]
listen = ["127.0.0.1:{port}"]
mode = "{mode}"
workers = 2
allow_root = true
pidfile = "hbfork.pid"
shutdown_timeout = 5

[heartbeat]
listen = "127.0.0.1:{heartbeat_port}"

[status]
listen = "127.0.0.1:{port + 1}"
{members}"""
    path = directory / "hbfork.toml"
    path.write_text(text)
    return path


def run(port: int = 8080, requests: int = 600, once: bool = False, mode: str = "http") -> int:
    heartbeat_port = free_port("127.0.0.1", socket.SOCK_DGRAM)
    backends = [(name, ip, free_port(ip), capacity) for name, ip, capacity in BACKENDS]
    with tempfile.TemporaryDirectory(prefix="hbfork-demo-") as tmp:
        config = write_config(Path(tmp), port, mode, heartbeat_port, backends)
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for name, ip, p, capacity in backends:
                procs.append(_spawn("backend", "--listen", f"{ip}:{p}", "--heartbeat",
                                    f"127.0.0.1:{heartbeat_port}", "--capacity", str(capacity),
                                    "--name", name))
            procs.append(_spawn("run", "-c", str(config)))
            print(f"hbfork demo: proxy on http://127.0.0.1:{port} ({mode} mode), status on "
                  f"http://127.0.0.1:{port + 1}/, config {config}")
            if not _wait_for_members(port, {b[0] for b in backends}, procs):
                print("hbfork demo: the proxy did not start routing to all three backends "
                      "within 15 s", file=sys.stderr)
                return 1
            ok = _sample(port, requests, backends)
            if once:
                return 0 if ok else 1
            print(f"\nTry:  curl -s http://127.0.0.1:{port}/      "
                  f"(the body names the backend that answered)\n"
                  f"      for i in $(seq 60); do curl -s http://127.0.0.1:{port}/; done "
                  f"| sort | uniq -c\n"
                  f"      curl -s http://127.0.0.1:{port + 1}/metrics | grep hbfork_member_ready\n"
                  "Press Ctrl-C to stop everything.")
            with contextlib.suppress(KeyboardInterrupt):
                while all(p.poll() is None for p in procs):
                    time.sleep(0.5)
            return 0
        finally:
            _stop(procs)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "hbfork", *args], stdin=subprocess.DEVNULL)


def _get(port: int, path: str = "/", conn: http.client.HTTPConnection | None = None
         ) -> tuple[int, str, http.client.HTTPConnection]:
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status, response.getheader("X-Backend", ""), conn


def _wait_for_members(port: int, names: set[str], procs: list[subprocess.Popen[bytes]]
                      ) -> bool:
    """Until every member's heartbeat has arrived. (Requests are answered before that, by
    the startup grace, but evenly: the sample would not show the heartbeat split.)"""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port + 1, timeout=5)
            conn.request("GET", "/status.json")
            members = json.loads(conn.getresponse().read())["members"]
            conn.close()
            if len(members) == len(names) and all(m["eligible"] for m in members):
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    return False


def _sample(port: int, requests: int, backends: list[tuple[str, str, int, int]]) -> bool:
    counts: Counter[str] = Counter()
    conn = None
    for _ in range(requests):
        status, backend, conn = _get(port, "/", conn)
        counts[backend if status == 200 else f"HTTP {status}"] += 1
    if conn is not None:
        conn.close()
    total_capacity = sum(b[3] for b in backends)
    print(f"\n{requests} requests on one keep-alive connection (each balanced on its own):")
    print(f"  {'backend':8} {'ready':>5} {'expected':>9} {'got':>9}")
    ok = True
    for name, _, _, capacity in backends:
        expected, got = capacity / total_capacity, counts[name] / requests
        ok &= abs(expected - got) < 0.08
        print(f"  {name:8} {capacity:5d} {expected:9.1%} {got:9.1%}  "
              f"{'#' * round(got * 40)}")
    return ok and sum(counts[b[0]] for b in backends) == requests


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
