"""`hbfork beat`: send mod_heartbeat datagrams for a backend that is not Apache.

The load comes from one of: --ready/--busy (static), --probe URL (JSON {"ready": N, "busy": M}
or a plain "N M" line), or --exec CMD (same output). A probe or command that fails reports
ready=0, so the proxy stops sending traffic to a backend that cannot say it is fine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.request

from hbfork.beat.beacon import Beacon, Load
from hbfork.core.heartbeat import INT32_MAX


def parse_load(text: str) -> tuple[int, int]:
    """(ready, busy) from JSON `{"ready": N, "busy": M}` or a line `N M` (busy optional)."""
    text = text.strip()
    if text.startswith("{"):
        data = json.loads(text)
        ready, busy = data["ready"], data.get("busy", 0)
    else:
        parts = text.split()
        if not 1 <= len(parts) <= 2:
            raise ValueError(f"expected 'READY [BUSY]', got {text[:40]!r}")
        ready, busy = int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
    for value in (ready, busy):
        if isinstance(value, bool) or not isinstance(value, int) or \
                not 0 <= value <= INT32_MAX:
            raise ValueError(f"ready/busy must be integers in [0, {INT32_MAX}]")
    return ready, busy


def probe_load(url: str, timeout: float) -> Load:
    def load() -> tuple[int, int]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return parse_load(response.read(4096).decode("utf-8", "replace"))
        except Exception as err:  # unreachable or nonsense: say "send nothing here"
            print(f"hbfork beat: probe {url} failed ({err}); sending ready=0", file=sys.stderr)
            return 0, 0
    return load


def exec_load(command: str, timeout: float) -> Load:
    def load() -> tuple[int, int]:
        try:
            done = subprocess.run(command, shell=True, capture_output=True, text=True,
                                  timeout=timeout, check=True)
            return parse_load(done.stdout)
        except Exception as err:
            print(f"hbfork beat: {command!r} failed ({err}); sending ready=0", file=sys.stderr)
            return 0, 0
    return load


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("beat", help="send heartbeats for a backend that is not Apache")
    parser.add_argument("--to", required=True,
                        help="ADDR:PORT: multicast group or the proxy's unicast address")
    parser.add_argument("--from", dest="source", help="source address to send from")
    parser.add_argument("--port", type=int, help="the backend's service port (sent as port=)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between beats")
    parser.add_argument("--ttl", type=int, default=1, help="multicast TTL (default 1)")
    parser.add_argument("--key-file", help="sign heartbeats with this key (first line)")
    parser.add_argument("--count", type=int, help="stop after this many beats")
    load = parser.add_mutually_exclusive_group(required=True)
    load.add_argument("--ready", type=int, help="static ready value")
    load.add_argument("--probe", metavar="URL", help="GET this URL for the load each beat")
    load.add_argument("--exec", dest="command", metavar="CMD", help="run CMD for the load")
    parser.add_argument("--busy", type=int, default=0, help="static busy value (with --ready)")
    return parser


def run(args: argparse.Namespace) -> int:
    from hbfork.core.addresses import parse_endpoint
    from hbfork.core.errors import HbforkError
    from hbfork.system.keyfile import read_keys

    try:
        to = parse_endpoint(args.to)
        key = read_keys(args.key_file)[0] if args.key_file else None
    except (ValueError, HbforkError) as err:
        print(f"hbfork beat: {err}", file=sys.stderr)
        return 2
    if args.ready is not None:
        ready, busy = args.ready, args.busy
        load: Load = lambda: (ready, busy)  # noqa: E731
    elif args.probe:
        load = probe_load(args.probe, timeout=max(0.2, args.interval * 0.8))
    else:
        load = exec_load(args.command, timeout=max(0.2, args.interval * 0.8))
    beacon = Beacon(to.sockaddr, port=args.port, source=args.source, ttl=args.ttl, key=key,
                    interval=args.interval)
    try:
        beacon.run(load, count=args.count)
    except KeyboardInterrupt:
        pass
    return 0
