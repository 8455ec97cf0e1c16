"""`hbfork status` and `hbfork ctl`: look at (or steer) the running master from a terminal.

`status` attaches to the master's table read-only (found through the pidfile) and never
unlinks or writes it; `ctl` sends one command over the control socket.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from hbfork.core.config import Config
from hbfork.core.errors import HbforkError
from hbfork.ops.control import DEFERRED_TIMEOUT, request
from hbfork.ops.snapshot import snapshot
from hbfork.system.configfile import load
from hbfork.system.pidfile import read_pid
from hbfork.table.layout import segment_name
from hbfork.table.table import Table

UPGRADE_WAIT = DEFERRED_TIMEOUT + 5.0


def attach(config: Config) -> Table:
    pidfile = config.pidfile
    if not pidfile:
        raise HbforkError(f"{config.path}: set [proxy] pidfile so the running master can be "
                          "found")
    pid = read_pid(pidfile)
    if pid is None:
        raise HbforkError(f"no hbfork master is running (pidfile {pidfile} is missing or "
                          "names no live process)")
    try:
        return Table.attach(segment_name(pid))
    except FileNotFoundError:
        raise HbforkError(f"process {pid} from {pidfile} has no hbfork table "
                          "(not an hbfork master, or still starting)") from None
    except PermissionError:
        raise HbforkError(f"no permission to read the table of master {pid} "
                          "(run as its user or root)") from None


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def render_text(data: dict[str, Any]) -> str:
    """The terminal view of a snapshot."""
    master, totals = data["master"], data["totals"]
    r = totals["responses"]
    lines = [
        f"hbfork master {master['pid']}  up {master['uptime_seconds']:.0f}s  "
        f"config generation {master['config_generation']}  "
        f"requests {totals['requests']} (2xx {r['2xx']} 3xx {r['3xx']} 4xx {r['4xx']} "
        f"5xx {r['5xx']})  connections {totals['connections']}  "
        f"heartbeats {data['heartbeats']['accepted']}"
        + ("  DRAINING (ctl drain-front: handing over)" if master.get("front_draining") else ""),
        "",
        f"{'MEMBER':22} {'NAME':12} {'SET':>3} {'STATE':10} {'READY':>6} {'BUSY':>5} "
        f"{'AGE':>6} {'SHARE':>6} {'REQS':>8} {'5XX':>5} {'FLY/CAP':>9}  WHY",
    ]
    for m in data["members"]:
        lines.append(
            f"{m['address']:22} {m['name'][:12]:12} {m['lbset']:3d} {m['state']:10} "
            f"{m['ready']:6d} {m['busy']:5d} {_age(m['heartbeat_age_seconds']):>6} "
            f"{m['share']:6.1%} {m['requests']:8d} {m['responses']['5xx']:5d} "
            f"{str(m['in_flight']) + '/' + str(m.get('capacity', '-')):>9}  {m['why']}")
    if not data["members"]:
        lines.append("(no members)")
    for pool in data.get("pools", []):
        sticky = f"  sticky {pool['stickysession']}" if pool["stickysession"] else ""
        rejected = pool["queue_rejected"]
        lines += ["", f"POOL {pool['name']}  requests {pool['requests']}  no member "
                      f"{pool['no_member']}  queued {pool['queued']} (timeouts "
                      f"{rejected['timeout']}, full {rejected['full']}){sticky}"]
        for m in pool["members"]:
            tier = f"{m['lbset']}{'H' if m['standby'] else ''}"
            lines.append(f"  {m['address']:22} {m['route'][:12]:12} {tier:>3} "
                         f"{m['state']:16} {m['share']:6.1%}")
    if data.get("routes"):
        lines += ["", f"{'ROUTE':>5} {'HOST':24} {'PATH':24} {'POOL':12} {'REQS':>8} {'5XX':>5}"]
        for r in data["routes"]:
            lines.append(f"{r['index']:5d} {(', '.join(r['host']) or '*')[:24]:24} "
                         f"{(r['path'] or '~' + r['regex'])[:24]:24} "
                         f"{(r['pool'] if r['pass'] else '(kept out)')[:12]:12} "
                         f"{r['requests'] or 0:8d} {r['errors'] or 0:5d}")
    lines += ["", f"{'WORKER':>6} {'PID':>8} {'GEN':>4} {'STATE':9} {'CONNS':>6} "
                  f"{'REQUESTS':>9} {'TICK':>6}"]
    for w in data["workers"]:
        lines.append(f"{w['number']:6d} {w['pid']:8d} {w['generation']:4d} {w['state']:9} "
                     f"{w['connections']:6d} {w['requests']:9d} "
                     f"{_age(w['tick_age_seconds']):>6}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    config = load(args.config)
    table = attach(config)
    try:
        while True:
            data = snapshot(table, config)
            if args.json:
                print(json.dumps(data, indent=1, sort_keys=True))
            else:
                if args.watch:
                    sys.stdout.write("\x1b[H\x1b[2J")
                print(render_text(data))
            if not args.watch:
                return 0
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        table.close()


def cmd_ctl(args: argparse.Namespace) -> int:
    config = load(args.config)
    path = config.control_socket
    if not path:
        raise HbforkError(f"{config.path}: set [proxy] pidfile or control_socket to use ctl")
    if args.action == "drain-front":
        line = f"drain-front {args.member or ''}"  # the optional argument is SECONDS here
    elif args.action in ("list", "upgrade"):
        line = args.action
    else:
        line = f"{args.action} {args.member or ''}"
    # An upgrade answers once the new master serves (or has failed): allow for its start.
    reply = request(path, line.strip(), timeout=UPGRADE_WAIT if line == "upgrade" else 5.0)
    print(reply)
    return 0 if reply.startswith("ok") else 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="show the running master's members and workers")
    status.add_argument("-c", "--config", required=True)
    status.add_argument("--json", action="store_true", help="the /status.json document")
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument("--interval", type=float, default=1.0, help="--watch period (s)")
    status.set_defaults(func=cmd_status)
    ctl = sub.add_parser("ctl", help="drain, disable or enable a member at runtime; "
                                     "drain-front hands this front over; upgrade starts "
                                     "the installed code in a new master")
    ctl.add_argument("-c", "--config", required=True)
    ctl.add_argument("action", choices=("drain", "disable", "enable", "list", "drain-front",
                                        "upgrade"))
    ctl.add_argument("member", nargs="?",
                     help="IP:PORT, IP (all members on it) or name; POOL/MEMBER for one pool; "
                          "for drain-front: SECONDS (default [proxy] drain_delay)")
    ctl.set_defaults(func=cmd_ctl)
