"""Large bodies through HTTP mode, both directions: throughput, CPU per MiB and worker RSS.

A benchmark, not a test. Two nginx members (127.0.0.2/.3, one process) serve a 1 MiB and a 100
MiB file, the same files chunked on /chunked/ (nginx's SSI filter drops the length: 32 KiB
chunks, as an application that streams its answer sends them) and take uploads on /upload: a
member reads the whole body (nginx buffers it in /dev/shm before answering through an internal
location, so the answer comes after the last byte, as an application's would) and answers 200.
In front, one worker each: hbfork in HTTP mode from this tree (optionally also from --baseline
DIR as "hbfork-base") and nginx as an HTTP reverse proxy set to stream, not spool
(proxy_request_buffering off, proxy_max_temp_file_size 0: the configuration a large-body proxy
is given), and "direct" (to one member: the ceiling).

Downloads and chunked downloads: wrk over keep-alive (-c2 for 1 MiB, -c1 for 100 MiB). Uploads:
a client in this process sends each body with sendfile(2) from a file over one keep-alive
connection (two for 1 MiB), as many as --seconds allows. Rounds interleave the contenders;
ratios are taken within a round. The RSS of hbfork's worker is sampled every 20 ms during the
100 MiB runs; growth = the highest sample less the RSS just before (issue 14: < 16 MiB). With
--baseline, "x base" is the median of the same-round ratios hbfork / hbfork-base (MiB/s, and
CPU per MiB).

    ./scripts/bench-bodies [--rounds 3] [--seconds 6] [--baseline DIR] [--kinds chunked,upload]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from loadtest.bench import tools, wrk
from loadtest.bench.lab import loopback as lab
from loadtest.bench.proc_stats import RssSampler, cpu_seconds, rss_kib
from loadtest.bench.procs import children, free_port, wait_children, wait_http
from loadtest.bench.programs.configs import CHUNKED

SIZES = {"1MiB": 1 << 20, "100MiB": 100 << 20}
CONNECTIONS = {"1MiB": 2, "100MiB": 1}
KINDS = ("download", "chunked", "upload")


def upload_members(stack: lab.Stack, files: dict[str, bytes]) -> list[tuple[str, int]]:
    """nginx members serving `files` and reading whole uploads on /upload."""
    port = free_port(lab.MEMBER_IPS[0])
    sink = free_port()
    root = stack.tmp / "www"
    root.mkdir(exist_ok=True)
    for name, body in files.items():
        (root / name).write_bytes(body)
    (root / "ok").write_bytes(b"ok\n")
    temp = Path(tempfile.mkdtemp(prefix="bench-bodies-", dir="/dev/shm"))
    stack.cleanups.append(lambda: shutil.rmtree(temp, ignore_errors=True))
    listens = "".join(f"listen {ip}:{port} backlog=4096;" for ip in lab.MEMBER_IPS)
    stack._nginx("members", f"""
http {{ access_log off; keepalive_requests 1000000; sendfile on;
  client_body_temp_path {temp}; client_max_body_size 0; client_body_buffer_size 1m;
  server {{ listen 127.0.0.1:{sink}; root {root}; location / {{ }} }}
  server {{ {listens} root {root};
    location = /upload {{ proxy_pass http://127.0.0.1:{sink}/ok; proxy_method GET;
      proxy_pass_request_body off; proxy_set_header Content-Length ""; }}
    location {CHUNKED}/ {{ alias {root}/; ssi on; ssi_types *; }} }} }}""")
    members = [(ip, port) for ip in lab.MEMBER_IPS]
    for ip, p in members:
        wait_http(ip, p, "/" + next(iter(files)))
    return members


def nginx_streaming_proxy(stack: lab.Stack, members: list[tuple[str, int]]) -> tuple[int, int]:
    port = free_port()
    servers = "".join(f"server {ip}:{p};" for ip, p in members)
    proc = stack._nginx("proxy", f"""
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 300s;
  client_max_body_size 0;
  upstream members {{ {servers} keepalive 64; }}
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://members; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_request_buffering off;
      proxy_max_temp_file_size 0; }} }} }}""")
    return port, proc.pid


class Uploader:
    """Bodies POSTed over keep-alive connections with sendfile, until a deadline."""

    def __init__(self, address: tuple[str, int], path: Path, size: int,
                 connections: int) -> None:
        self.address, self.path, self.size, self.connections = address, path, size, connections
        self.sent = 0
        self.errors = 0
        self.lock = threading.Lock()

    def run(self, seconds: float) -> float:
        """MiB/s of bodies answered 200."""
        deadline = time.monotonic() + seconds
        threads = [threading.Thread(target=self._one, args=(deadline,))
                   for _ in range(self.connections)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return self.sent / (time.monotonic() - started) / (1 << 20)

    def _one(self, deadline: float) -> None:
        head = (f"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Length: {self.size}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        with socket.create_connection(self.address, timeout=30) as sock, \
                open(self.path, "rb") as body:
            while time.monotonic() < deadline:
                sock.sendall(head)
                sock.sendfile(body, 0, self.size)  # sendfile(2), waiting out EAGAIN
                if not _read_ok(sock):
                    with self.lock:
                        self.errors += 1
                    return
                with self.lock:
                    self.sent += self.size


def _read_ok(sock: socket.socket) -> bool:
    """Read one response; True if it is a 200 (its body is small and read whole)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        body += chunk
    return head.startswith(b"HTTP/1.1 200")


def run_one(kind: str, address: tuple[str, int], size: str, body: Path, pids: list[int],
            worker: int | None, seconds: float) -> dict[str, float]:
    before_rss = rss_kib(worker) if worker else 0
    sampler = RssSampler(worker) if worker and size == "100MiB" else None
    if sampler:
        sampler.start()
    cpu = cpu_seconds(*pids)
    if kind != "upload":
        host, port = address
        path = f"{CHUNKED}/{size}" if kind == "chunked" else f"/{size}"
        result = wrk.run(f"http://{host}:{port}{path}", CONNECTIONS[size], seconds, threads=1,
                         check=True)
        mib_s, errors = result["rps"] * SIZES[size] / (1 << 20), wrk.error_count(result)
        moved = result["requests"] * SIZES[size] / (1 << 20)
    else:
        uploader = Uploader(address, body, SIZES[size], CONNECTIONS[size])
        mib_s = uploader.run(seconds)
        errors, moved = uploader.errors, uploader.sent / (1 << 20)
    cpu = cpu_seconds(*pids) - cpu
    out = {"mib_s": mib_s, "errors": errors,
           "cpu_ms_per_mib": cpu / moved * 1e3 if moved else 0.0}
    if sampler:
        out["rss_growth_mib"] = (sampler.stop() - before_rss) / 1024
        out["rss_mib"] = sampler.peak / 1024
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-bodies",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="per run")
    parser.add_argument("--baseline", metavar="DIR", help="also hbfork from this source tree")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help=f"comma-separated, of {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    args.kinds = [kind for kind in KINDS if kind in args.kinds.split(",")]
    if not args.kinds:
        parser.error(f"--kinds: none of {', '.join(KINDS)}")
    tools.require("scripts/bench-bodies", "wrk", "nginx")
    with tempfile.TemporaryDirectory(prefix="bench-bodies-") as tmp:
        stack = lab.Stack(Path(tmp))
        try:
            run(stack, args)
        finally:
            stack.stop()
    return 0


def run(stack: lab.Stack, args: argparse.Namespace) -> None:
    files = {name: os.urandom(size) for name, size in SIZES.items()}
    members = upload_members(stack, files)
    bodies = {name: stack.tmp / "www" / name for name in SIZES}
    fronts: dict[str, tuple[int, list[int], int | None]] = {}
    port, master = stack.hbfork("http", members, "http")
    fronts["hbfork"] = (port, [master], None)
    if args.baseline:
        source = os.path.abspath(args.baseline)
        port, master = stack.hbfork("http", members, "http-base", env={"PYTHONPATH": source})
        fronts["hbfork-base"] = (port, [master], None)
    port, master = nginx_streaming_proxy(stack, members)
    fronts["nginx"] = (port, [master], None)
    for name, (port, pids, _) in list(fronts.items()):
        wait_http("127.0.0.1", port, "/1MiB")
        workers = wait_children(pids[0])
        fronts[name] = (port, pids + workers, workers[-1] if name.startswith("hbfork")
                        else None)
    addresses = {name: ("127.0.0.1", port) for name, (port, _, _) in fronts.items()}
    pids = {name: pids for name, (_, pids, _) in fronts.items()}
    addresses["direct"] = members[0]
    pids["direct"] = [stack.procs[0].pid, *children(stack.procs[0].pid)]
    workers = {name: worker for name, (_, _, worker) in fronts.items()}
    print(f"one worker per front; {args.seconds:g}s x {args.rounds} rounds per contender, "
          f"kind and size; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    names = list(addresses)
    for number in range(args.rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        for kind in args.kinds:
            for size in SIZES:
                for name in order:
                    result = run_one(kind, addresses[name], size, bodies[size], pids[name],
                                     workers.get(name), args.seconds)
                    results.setdefault((name, kind, size), []).append(result)
                    rss = f"  worker RSS peak {result['rss_mib']:.1f} MiB " \
                        f"(+{result['rss_growth_mib']:.1f})" if "rss_growth_mib" in result \
                        else ""
                    print(f"  round {number + 1} {kind:<9}{size:<7}{name:<12}"
                          f"{result['mib_s']:>8.0f} MiB/s {result['cpu_ms_per_mib']:6.2f} "
                          f"CPU ms/MiB{rss}" + ("  (errors!)" if result["errors"] else ""),
                          flush=True)
    report(results, names, args.rounds, args.kinds)


def _paired(runs: list[dict[str, float]], ref: list[dict[str, float]], key: str) -> float:
    """The median of the same-round ratios runs / ref of `key`."""
    return statistics.median(r[key] / ref[i][key] for i, r in enumerate(runs) if ref[i][key])


def report(results: dict[tuple[str, str, str], list[dict[str, float]]], names: list[str],
           rounds: int, kinds: list[str]) -> None:
    base = "hbfork-base" in names
    print(f"\n{'kind':<10}{'size':<8}{'contender':<13}{'MiB/s':>8}{'min-max':>14}"
          f"{'CPU ms/MiB':>12}{'x nginx':>9}{'RSS growth':>12}"
          + (f"{'x base':>8}{'CPU x base':>12}" if base else ""))
    for kind in kinds:
        for size in SIZES:
            for name in names:
                runs = results[(name, kind, size)]
                mib = [r["mib_s"] for r in runs]
                ref = results[("nginx", kind, size)]
                ratio = _paired(runs, ref, "mib_s")
                rss = [r["rss_growth_mib"] for r in runs if "rss_growth_mib" in r]
                against_base = ""
                if base and name == "hbfork":
                    prior = results[("hbfork-base", kind, size)]
                    against_base = (f"{_paired(runs, prior, 'mib_s'):>8.2f}"
                                    f"{_paired(runs, prior, 'cpu_ms_per_mib'):>12.2f}")
                print(f"{kind:<10}{size:<8}{name:<13}{statistics.median(mib):>8.0f}"
                      f"{f'{min(mib):.0f}-{max(mib):.0f}':>14}"
                      f"{statistics.median(r['cpu_ms_per_mib'] for r in runs):>12.2f}"
                      f"{ratio:>9.2f}{f'{max(rss):.1f} MiB' if rss else '-':>12}"
                      f"{against_base}")
    print(f"(medians of {rounds} rounds; x nginx: median of the same-round ratios; RSS growth:"
          " the largest over the rounds; issue 14: >= 0.9x nginx, growth < 16 MiB"
          + ("; x base: median of the same-round hbfork / hbfork-base ratios" if base else "")
          + ")")


if __name__ == "__main__":
    sys.exit(main())
