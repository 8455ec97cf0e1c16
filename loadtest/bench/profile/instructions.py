"""Instructions per request of one hbfork worker on the HTTP fast path, counted by callgrind:
an A/B measure that a shared, busy machine does not disturb (CPU time and requests/s do).

A measurement, not a test. One nginx member on 127.0.0.2 (heartbeats sent for it) and one
hbfork (one worker) run from a source tree (`--tree`, default this checkout) under
`valgrind --tool=callgrind`; after a warm-up, the worker's counters are zeroed, one client
connection sends N keep-alive GETs one after the other, and the counters are dumped. The figure
is user-space instructions (Ir) of the worker per request: Python's share of the CPU, not the
kernel's (syscalls cost the same in both arms of a comparison that sends the same requests).
Counts repeat within about 0.5 % from run to run; a wall-clock share of the worker's time
(timers, heartbeats) is included, so compare runs with the same N.

    scripts/instructions-http [--tree DIR] [--kind none|rules|base] [--requests N]
                              [--upload | --chunked] [--http LINES]

`--kind rules` is scripts/bench-headers' rules configuration (3 + 3 header rules and request
IDs), `none` its plain one, `base` the plain one without the [request_id] section (for trees
older than it).

`--upload` sends 1 MiB POST bodies instead (to the member's /upload, which reads each body
whole before it answers), N=100 by default: the general path's request body relay (request
buffering, then splice). Under callgrind the worker is far slower than the client, so each
body is mostly in the socket already when the worker reads: the regime of a benchmark whose
worker is the bottleneck (scripts/bench-bodies). `--http "request_buffering = 0"` adds lines to
the configuration's [http] table.

`--chunked` GETs a 1 MiB file as a chunked response instead (the member's SSI filter sends it in
32 KiB chunks), N=100 by default: the general path's chunked response relay (re-framing).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hbfork.beat.beacon import Beacon
from loadtest.bench import tools
from loadtest.bench.kinds import KINDS
from loadtest.bench.lab.loopback import NGINX
from loadtest.bench.procs import free_port
from loadtest.bench.programs.configs import CHUNKED, UPLOAD, nginx_backend_conf
from loadtest.bench.scenarios.headers import config as headers_config

MEMBER = "127.0.0.2"
REQUEST = b"GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"
UPLOAD_SIZE = 1 << 20
UPLOAD_REQUEST = (f"POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {UPLOAD_SIZE}\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n").encode() + bytes(UPLOAD_SIZE)
CHUNKED_REQUEST = (f"GET {CHUNKED}{KINDS['1m-down'].path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "User-Agent: bench\r\n\r\n").encode()
# By what is measured: what the client sends, and what one of it is called in the result.
SENDS = {"get": REQUEST, "upload": UPLOAD_REQUEST, "chunked": CHUNKED_REQUEST}
UNITS = {"get": "request", "upload": "1 MiB upload", "chunked": "1 MiB chunked response"}


def requests(port: int, count: int, timeout: float = 120, what: str = "get") -> None:
    """`count` GETs (or 1 MiB uploads, or chunked 1 MiB GETs: `what`) on one keep-alive
    connection, each answered 200 in full."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for _ in range(count):
            sock.sendall(SENDS[what])
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("closed mid-response")
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise OSError(f"answered {head[:40]!r}")
            if re.search(rb"(?i)\r\ntransfer-encoding: *chunked", head):
                tail = body[-7:]  # only the end matters: the last chunk (nginx sends no trailers)
                while tail != b"\r\n0\r\n\r\n":
                    chunk = sock.recv(262144)
                    if not chunk:
                        raise OSError("closed mid-body")
                    tail = (tail + chunk)[-7:]
                continue
            match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            length = int(match.group(1)) if match else 0
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("closed mid-body")
                body += chunk


def member_config(base: Path) -> tuple[Path, str]:
    """An nginx member on MEMBER, its directory made under `base`: (its nginx.conf, the
    member's address)."""
    member_port = free_port(MEMBER)
    directory = base / "member"
    directory.mkdir()
    directory.chmod(0o755)
    conf = directory / "nginx.conf"
    conf.write_text(nginx_backend_conf(directory, "m1", MEMBER, member_port))
    return conf, f"{MEMBER}:{member_port}"


def front_config(kind: str, front: int, beats: int, status: int, member: str,
                 base: Path) -> str:
    """scripts/bench-headers' configuration of `kind`: "rules", "none", or "base" (none
    without the [request_id] section, for trees older than it; its default is off)."""
    text = headers_config("rules" if kind == "rules" else "none", front, beats, status,
                          member, base)
    return text.replace("[request_id]\nenabled = false\n", "") if kind == "base" else text


def wait_serving(port: int, proc: subprocess.Popen[bytes], timeout: float,
                 why: Callable[[], str]) -> None:
    """Until the front on `port` answers a GET 200; SystemExit with `why()` if it has not
    within `timeout` s or its process ended."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests(port, 1)
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"hbfork did not serve: {why()}") from None
            time.sleep(0.5)


def measure(tree: Path, kind: str, count: int, what: str = "get", http: str = "") -> float:
    base = Path(tempfile.mkdtemp(prefix="instructions-"))
    base.chmod(0o755)  # nginx's workers run unprivileged
    procs: list[subprocess.Popen[bytes]] = []
    beacon = None

    def run(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        out = open(base / f"output-{len(procs)}.log", "wb")  # noqa: SIM115 (the child's)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                **kwargs)  # type: ignore[call-overload]
        procs.append(proc)
        return proc

    try:
        conf, member = member_config(base)
        run([NGINX, "-c", str(conf), "-p", str(conf.parent)])
        front, beats, status = free_port(), free_port(kind=socket.SOCK_DGRAM), free_port()
        text = front_config(kind, front, beats, status, member, base)
        text = text.replace("[http]\n", f"[http]\n{http}\n" if http else "[http]\n", 1)
        path = base / "hbfork.toml"
        path.write_text(text)
        master = run(["valgrind", "--tool=callgrind", "--trace-children=yes",
                      f"--callgrind-out-file={base}/callgrind.%p",
                      sys.executable, "-m", "hbfork", "run", "-c", str(path)],
                     cwd=str(tree), env={**os.environ, "PYTHONPATH": str(tree)})
        beacon = Beacon(("127.0.0.1", beats), port=int(member.rsplit(":", 1)[1]),
                        source=MEMBER, interval=0.5)
        beacon.start(lambda: (100, 0))
        # Python under valgrind starts slowly.
        wait_serving(front, master, 240, lambda: "\n" + (base / "output-1.log").read_text(
            errors="replace")[-2000:])
        requests(front, 300 if what == "get" else 20, what=what)  # warm: caches, bytecode
        workers = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True,
                                 text=True, check=False).stdout.split()
        for pid in workers:
            subprocess.run(["callgrind_control", "-z", pid], capture_output=True, check=False)
        requests(front, count, what=what)
        for pid in workers:
            subprocess.run(["callgrind_control", "-d", "measured", pid], capture_output=True,
                           check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            totals = [int(found[-1]) for name in glob.glob(f"{base}/callgrind.*")
                      if "Trigger: dump measured" in (text := Path(name).read_text())
                      and (found := re.findall(r"^summary: (\d+)", text, re.M))]
            if totals:
                return max(totals) / count
            time.sleep(0.5)
        raise SystemExit("no callgrind dump from the worker")
    finally:
        if beacon is not None:
            beacon.stop()
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/instructions-http",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[3],
                        help="the hbfork source tree to run (default: this checkout)")
    parser.add_argument("--kind", choices=("none", "rules", "base"), default="none")
    parser.add_argument("--requests", type=int, help="N (default 2000, 100 with --upload)")
    one = parser.add_mutually_exclusive_group()
    one.add_argument("--upload", action="store_true", help="1 MiB POST bodies, not GETs")
    one.add_argument("--chunked", action="store_true", help="1 MiB chunked responses")
    parser.add_argument("--http", default="", help="lines added to the [http] table")
    args = parser.parse_args(argv)
    tools.require("scripts/instructions-http", "nginx", "valgrind", "callgrind_control")
    what = "upload" if args.upload else "chunked" if args.chunked else "get"
    count = args.requests or (2000 if what == "get" else 100)
    per_request = measure(args.tree.resolve(), args.kind, count, what, args.http)
    print(f"{args.kind} {args.tree}{f' [http] {args.http!r}' if args.http else ''}: "
          f"{per_request:,.0f} instructions (Ir) per {UNITS[what]} (N={count})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
