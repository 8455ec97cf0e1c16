"""Slow clients against hbfork and nginx on the same members (issue 24): does a slow-client
attack keep normal clients from being served, and what does each slow connection cost?

    scripts/bench-slow-clients [--capacity 10] [--extra 100] [--seconds 20] [--quick] [--trace]

A benchmark, not a test; loopback only. Two members, `hbfork backend --capacity C --workers
C` on 127.0.0.2/.3 (each serves at most C requests at once and beats its true capacity to
hbfork). Fronts, one at a time over the same members, one worker each:
  hbfork  its defaults (request_buffering 64 KiB, body 20 s + 500 B/s, send 20 s + 500 B/s),
          and response_spool_max = 1 GiB (nginx's proxy_max_temp_file_size; the default, set
          anyway)
  nginx   proxy_request_buffering on (its default), `max_conns=C` per server
Per front, three phases of --seconds each: normal clients alone (wrk -t1 -c16, GET of 1 KiB),
then the same while `2C + extra` slow-body connections (slowhttptest -B style: a POST
announcing 10 MB, 16 bytes a second) hold on, then while `2C + extra` slow readers (a GET of
--reader-sizes bytes, 4 KiB receive window, 16 bytes read a second) do: 32 KiB fits what a
front keeps per connection (the member is free at once), 1 MiB and more (`--reader-sizes
16777216`: larger than the kernel's socket buffers) do not: both fronts spool the rest of the
response to a temporary file and free the member once it has sent all (hbfork's [http]
response_spool_max, nginx's proxy_max_temp_file_size). A slow
connection the front closes is opened again at once. Reported per phase: the normal
clients' success % (2xx among all answers and socket errors), their p99 against the
no-attack p99, and the front worker's RSS growth per slow connection (KiB). The issue's
targets: success >= 99 %, p99 <= 2x, <= 64 KiB.

--trace samples hbfork's front queue every 100 ms from the attack's start to the end of its
phase (loadtest/bench/probes/queue_trace.py) and prints when requests waited and for how long:
the 16 MiB readers' damage is a transient, the first wave of spools, and this shows it.

The slow clients are this script's Python (loadtest/bench/clients/slow.py), not slowhttptest.
On a shared two-core machine, take the figures alone: a smoke run (--quick) shows the shape.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.bench import tools, wrk
from loadtest.bench.clients.slow import BODY, READER, SlowClients
from loadtest.bench.lab import loopback as lab
from loadtest.bench.probes.queue_trace import QueueTrace, Sample
from loadtest.bench.proc_stats import rss_kib
from loadtest.bench.procs import free_port, raise_nofile, wait_children, wait_http

NORMAL_PATH = "/?size=1024"


def members(stack: lab.Stack, capacity: int, heartbeat_port: int) -> list[tuple[str, int]]:
    out = []
    for ip in lab.MEMBER_IPS:
        port = free_port(ip)
        stack.start([sys.executable, "-m", "hbfork", "backend", "--listen", f"{ip}:{port}",
                     "--capacity", str(capacity), "--workers", str(capacity), "--heartbeat",
                     f"127.0.0.1:{heartbeat_port}", "--interval", "0.5"], f"backend-{ip}.log")
        out.append((ip, port))
    for ip, port in out:
        wait_http(ip, port, NORMAL_PATH)
    return out


def hbfork_front(stack: lab.Stack, backends: list[tuple[str, int]],
                 heartbeat_port: int) -> tuple[int, int, int]:
    port = free_port()
    conf = stack.tmp / "hbfork-slow.toml"
    member_lines = "".join(f'[[member]]\naddress = "{ip}:{p}"\n' for ip, p in backends)
    conf.write_text(f"""
[proxy]
listen = ["127.0.0.1:{port}"]
workers = 1
allow_root = true
max_connections = 20000
backlog = 4096
[heartbeat]
listen = "127.0.0.1:{heartbeat_port}"
[status]
listen = ""
[http]
response_spool_max = 1073741824
[log]
level = "warning"
{member_lines}""")
    master = stack.start([sys.executable, "-m", "hbfork", "run", "-c", str(conf)],
                         "hbfork-slow.log").pid
    wait_http("127.0.0.1", port, NORMAL_PATH, timeout=20)
    return port, wait_children(master)[-1], master


def nginx_front(stack: lab.Stack, backends: list[tuple[str, int]],
                capacity: int) -> tuple[int, int]:
    port = free_port()
    servers = "".join(f"server {ip}:{p} max_conns={capacity};" for ip, p in backends)
    proc = stack._nginx("front", f"""
http {{ access_log off; keepalive_timeout 300s; client_body_buffer_size 64k;
  client_max_body_size 0;
  upstream members {{ {servers} keepalive 64; }}
  server {{ listen 127.0.0.1:{port} backlog=4096;
    location / {{ proxy_pass http://members; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_request_buffering on; }} }} }}""")
    wait_http("127.0.0.1", port, NORMAL_PATH)
    return port, wait_children(proc.pid)[-1]


def normal(port: int, seconds: float) -> dict[str, Any]:
    result = wrk.run(f"http://127.0.0.1:{port}{NORMAL_PATH}", 16, seconds, threads=1,
                     timeout="5s")
    answered = result.get("requests", 0) + result.get("errors", 0)
    bad = wrk.error_count(result)
    result["success"] = 100.0 * (answered - bad) / answered if answered else 0.0
    return result


def phase(port: int, worker: int, kind: str, count: int, seconds: float,
          size: int = 0, trace_master: int = 0) -> dict[str, Any]:
    """One attack while the normal clients run; `trace_master`: hbfork's master, whose queue
    is sampled meanwhile (0: none)."""
    before = rss_kib(worker)
    trace = QueueTrace(trace_master, interval=0.1).start() if trace_master else None
    slow = SlowClients("127.0.0.1", port, kind, count,
                       response_path=f"/?size={size}").start()
    settle = min(3.0, seconds / 4)
    time.sleep(settle)  # let them settle in (the load, not a synchronisation)
    result = normal(port, seconds)
    if trace is not None:
        print(queue_timeline(trace.stop(), settle), flush=True)
    held = rss_kib(worker)
    result.update(open=slow.open_now(), opened=slow.opened, cut=slow.cut, answers=slow.answers,
                  rss_per_conn_kib=(held - before) / max(count, 1), rss_kib=held)
    slow.stop()
    time.sleep(1.0)  # let the front close them before the next phase
    return result


def queue_timeline(samples: list[Sample], normal_at: float) -> str:
    """The front queue over an attack, a line per half second while anything waited: the
    waiters in all workers, the oldest one's age (its rank's: a new connection's includes
    queue_fresh_offset), the requests in flight per member."""
    if not samples:
        return "  queue: no samples"
    start = samples[0][0]
    lines, last = [], -1.0
    for t, rows, *_ in samples:
        queued = sum(row[2] for row in rows)
        if queued and t - last >= 0.5:
            last = t
            head = max(row[3] for row in rows)
            inflight = [sum(row[5][i][0] for row in rows) for i in range(len(rows[0][5]))]
            lines.append(f"  +{t - start:4.1f} s: {queued:4} waiting, oldest {head:7.0f} ms, "
                         f"in flight {inflight}")
    waited = [t - start for t, rows, *_ in samples if any(row[2] for row in rows)]
    end = f"last waiter seen +{max(waited):.1f} s" if waited else "nothing waited"
    return "\n".join([f"  queue (normal clients from +{normal_at:.1f} s): {end}", *lines])


def run_front(name: str, port: int, worker: int, count: int, seconds: float,
              sizes: list[int], trace_master: int = 0) -> list[str]:
    base = normal(port, seconds)
    rows = [f"| {name} | none | {base['success']:.1f} % | {base.get('p99', 0):.1f} ms | 1.00x "
            f"| - | {rss_kib(worker) / 1024:.1f} MiB |"]
    attacks = [(BODY, 0), *((READER, size) for size in sizes)]
    for kind, size in attacks:
        r = phase(port, worker, kind, count, seconds, size, trace_master)
        what = f"{count} slow {kind}" + (f" ({size // 1024} KiB)" if size else "")
        ratio = r.get("p99", 0) / base["p99"] if base.get("p99") else 0
        rows.append(f"| {name} | {what} | {r['success']:.1f} % | "
                    f"{r.get('p99', 0):.1f} ms | {ratio:.2f}x | {r['rss_per_conn_kib']:.1f} "
                    f"KiB | {r['rss_kib'] / 1024:.1f} MiB |")
        print(f"  {name} {what}: {r['open']} open, {r['opened']} opened, {r['cut']} cut; "
              f"answers {r['answers']}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-slow-clients",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=10, help="per member")
    parser.add_argument("--extra", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 s phases")
    parser.add_argument("--trace", action="store_true",
                        help="sample hbfork's front queue during each attack and print it")
    parser.add_argument("--fronts", default="hbfork,nginx")
    parser.add_argument("--reader-sizes", default="32768,1048576",
                        help="response sizes the slow readers ask for (bytes, comma-separated)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 5.0
    tools.require("scripts/bench-slow-clients", "wrk", "nginx")
    count = 2 * args.capacity + args.extra  # the members' whole capacity + extra
    raise_nofile(lab.NOFILE)
    print(f"2 members x capacity {args.capacity}; {count} slow connections per attack; "
          f"normal clients wrk -t1 -c16 -d{args.seconds:g}s; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    rows = ["| front | attack | normal success | normal p99 | p99 vs none | RSS per slow "
            "conn | worker RSS |", "|---|---|---|---|---|---|---|"]
    for front in args.fronts.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-slow-") as tmp:
            stack = lab.Stack(Path(tmp))
            try:
                heartbeat_port = free_port(kind=socket.SOCK_DGRAM)
                if front == "hbfork":
                    backends = members(stack, args.capacity, heartbeat_port)
                    port, worker, master = hbfork_front(stack, backends, heartbeat_port)
                else:
                    backends = members(stack, args.capacity, heartbeat_port)
                    port, worker = nginx_front(stack, backends, args.capacity)
                    master = 0
                rows += run_front(front, port, worker, count, args.seconds,
                                  [int(x) for x in args.reader_sizes.split(",") if x],
                                  master if args.trace else 0)
            finally:
                stack.stop()
    print("\n" + "\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
