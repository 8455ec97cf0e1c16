"""Client-side helpers the interop tests run INSIDE a lab namespace (never in the root one).

    python labclient.py fetch URL COUNT [--wait S]   COUNT GETs, one connection each
    python labclient.py sniff GROUP:PORT SECONDS      what heartbeats arrive, per source IP
    python labclient.py send GROUP:PORT PAYLOAD COUNT INTERVAL   multicast PAYLOAD repeatedly
    python labclient.py load URL[,URL...] SECONDS [--conns N] [--keepalive] [--max N] [--rate R]
        constant load, round robin over the URLs: statuses, errors with their times, the
        longest stretch without a successful response (the outage a client saw); SIGTERM
        ends it early with the same report

Each prints one JSON document on stdout. Standard library only; no hbfork import, so it also
shows what an outside observer sees.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import signal
import socket
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def fetch_once(url: str, timeout: float) -> tuple[int, str]:
    """One GET on a fresh connection: (status, who answered) from X-Backend, else the body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace").strip()
        return response.status, response.getheader("X-Backend") or body[:40]
    finally:
        conn.close()


def fetch(url: str, count: int, wait: float, timeout: float = 5.0) -> dict:
    """`count` requests; connection refusals are retried for up to `wait` seconds in total
    (the proxy may still be starting), other failures are counted as errors."""
    backends: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + wait
    done = 0
    while done < count:
        try:
            status, who = fetch_once(url, timeout)
        except ConnectionRefusedError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            errors["refused"] += 1
        except (OSError, http.client.HTTPException) as err:
            errors[type(err).__name__] += 1
        else:
            statuses[status] += 1
            if status == 200:
                backends[who] += 1
        done += 1
    return {"backends": dict(backends), "statuses": {str(k): v for k, v in statuses.items()},
            "errors": dict(errors)}


def sniff(group: str, seconds: float) -> dict:
    """Join `group` (as a second listener beside the proxy; SO_REUSEADDR lets both receive)
    and report, per source IP, the datagram count and the last payload."""
    host, port = group.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    socket.inet_aton(host) + bytes(4))
    seen: dict[str, dict] = {}
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, (source, _) = sock.recvfrom(2048)
        except TimeoutError:
            break
        entry = seen.setdefault(source, {"count": 0, "payloads": []})
        entry["count"] += 1
        entry["payloads"].append(data.decode("latin-1"))
    return seen


def send(group: str, payload: str, count: int, interval: float) -> dict:
    """Send like mod_heartbeat: a UDP datagram to the group, TTL 1, routed out of eth0."""
    host, port = group.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    for _ in range(count):
        sock.sendto(payload.encode(), (host, int(port)))
        time.sleep(interval)
    return {"sent": count}


class _Load:
    """Shared state of the load threads: the next URL, and what every request ended as."""

    def __init__(self, urls: list[str], seconds: float, limit: int, pause: float = 0.0
                 ) -> None:
        self.pause = pause  # seconds between one thread's requests (0: back to back)
        self.urls = [urlsplit(url) for url in urls]
        self.end = time.monotonic() + seconds
        self.limit = limit
        self.lock = threading.Lock()
        self.started = 0
        self.done: list[tuple[float, str, str, str]] = []  # (wall end, url, outcome, backend)
        self.failed_spans: list[list] = []  # [wall start, wall end, url, outcome] of failures

    def stop(self) -> None:
        """No request starts after this; those under way finish."""
        with self.lock:
            self.end = 0.0

    def next_url(self):
        with self.lock:
            if self.started >= self.limit or time.monotonic() >= self.end:
                return None
            self.started += 1
            return self.urls[self.started % len(self.urls)]

    def run(self, keepalive: bool) -> None:
        conns: dict[str, http.client.HTTPConnection] = {}
        next_at = time.monotonic()
        while (parts := self.next_url()) is not None:
            if self.pause:
                next_at += self.pause
                time.sleep(max(0.0, next_at - time.monotonic()))  # pacing the offered load
            key = parts.netloc
            conn = conns.pop(key, None) or http.client.HTTPConnection(
                parts.hostname, parts.port or 80, timeout=5)
            started = time.time()
            try:
                conn.request("GET", parts.path or "/",
                             headers={} if keepalive else {"Connection": "close"})
                response = conn.getresponse()
                response.read()
                outcome, backend = str(response.status), response.getheader("X-Backend", "")
                if keepalive and not response.will_close:
                    conns[key] = conn
                else:
                    conn.close()
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                outcome, backend = type(err).__name__, ""
                time.sleep(0.01)  # pace retries against a dead address, not a wait for state
            with self.lock:
                ended = time.time()
                self.done.append((ended, key, outcome, backend))
                if outcome != "200":
                    self.failed_spans.append([started, ended, key, outcome])
        for conn in conns.values():
            conn.close()


def load(urls: list[str], seconds: float, conns: int, keepalive: bool, limit: int,
         rate: float = 0.0) -> dict:
    state = _Load(urls, seconds, limit, conns / rate if rate else 0.0)
    # SIGTERM ends the load early, as its end would (the test has seen what it needed):
    # the requests under way finish and the result is printed all the same.
    signal.signal(signal.SIGTERM, lambda *_: state.stop())
    began = time.time()
    threads = [threading.Thread(target=state.run, args=(keepalive,)) for _ in range(conns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = sorted(state.done)
    # An outage still going on at the end counts up to the end.
    ok_times = [began, *(t for t, _, outcome, _ in done if outcome == "200"), time.time()]
    gaps = [(b - a, a) for a, b in itertools.pairwise(ok_times)]
    max_gap, gap_at = max(gaps, default=(0.0, began))
    per_url: dict[str, Counter[str]] = {}
    for _, url, outcome, backend in done:
        per_url.setdefault(url, Counter())[backend if outcome == "200" else outcome] += 1
    return {
        "requests": len(done), "began": began, "ended": time.time(),
        "statuses": dict(Counter(o for _, _, o, _ in done if o.isdigit())),
        "errors": dict(Counter(o for _, _, o, _ in done if not o.isdigit())),
        "backends": dict(Counter(b for _, _, o, b in done if o == "200")),
        "per_url": {url: dict(counts) for url, counts in per_url.items()},
        "max_gap": max_gap, "gap_at": gap_at,
        "failures": [[t, url, o] for t, url, o, _ in done if o != "200"][:100],
        "failed_spans": sorted(state.failed_spans)[:100],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="labclient")
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("fetch")
    get.add_argument("url")
    get.add_argument("count", type=int)
    get.add_argument("--wait", type=float, default=5.0)
    listen = sub.add_parser("sniff")
    listen.add_argument("group")
    listen.add_argument("seconds", type=float)
    out = sub.add_parser("send")
    out.add_argument("group")
    out.add_argument("payload")
    out.add_argument("count", type=int)
    out.add_argument("interval", type=float)
    constant = sub.add_parser("load")
    constant.add_argument("urls")
    constant.add_argument("seconds", type=float)
    constant.add_argument("--conns", type=int, default=4)
    constant.add_argument("--keepalive", action="store_true")
    constant.add_argument("--max", type=int, default=200_000)
    constant.add_argument("--rate", type=float, default=0.0,
                          help="requests per second in all (0: as fast as it goes)")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        result = fetch(args.url, args.count, args.wait)
    elif args.command == "load":
        result = load(args.urls.split(","), min(args.seconds, 120.0), args.conns,
                      args.keepalive, args.max, args.rate)
    elif args.command == "sniff":
        result = sniff(args.group, args.seconds)
    else:
        result = send(args.group, args.payload, args.count, args.interval)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
