"""netns-lab: build, inspect and remove the network-namespace lab by hand (root only).

    scripts/netns-lab up [--hosts N] [--prefix P]   bridge + front (10.213.0.1) + N backends
    scripts/netns-lab status [--prefix P]           namespaces, addresses, processes inside
    scripts/netns-lab exec HOST CMD...              run CMD inside HOST (front, b1, b2, ...)
    scripts/netns-lab down [--prefix P]             stop what runs inside, remove everything

The lab stays up until `down`. See loadtest/bench/lab/netns.py for the topology.
"""

from __future__ import annotations

import argparse
import os
import sys

from loadtest.bench.lab import netns as netlab


def cmd_up(args: argparse.Namespace) -> int:
    reason = netlab.unavailable_reason()
    if reason:
        print(f"netns-lab: {reason}", file=sys.stderr)
        return 1
    existing = netlab.lab_namespaces(args.prefix)
    if existing:
        print(f"netns-lab: a lab with prefix {args.prefix!r} is up ({' '.join(existing)}); "
              "run `down` first", file=sys.stderr)
        return 1
    lab = netlab.Lab(prefix=args.prefix, backends=args.hosts, subnet=args.subnet, keep=True)
    lab.up()
    for host in lab.hosts.values():
        print(f"{host.name:6} {host.netns:14} {host.address}")
    print(f"multicast: routed on {netlab.HOST_IFACE} in every host; "
          f"bridge {lab.bridge_netns}/{netlab.BRIDGE} floods it")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    removed = netlab.down(args.prefix)
    print(f"removed: {' '.join(removed)}" if removed else f"no lab with prefix {args.prefix!r}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    print(netlab.status(args.prefix))
    return 0 if netlab.lab_namespaces(args.prefix) else 1


def cmd_exec(args: argparse.Namespace) -> int:
    namespaces = netlab.lab_namespaces(args.prefix)
    netns = args.host if args.host in namespaces else f"{args.prefix}-{args.host}"
    if netns not in namespaces:
        print(f"netns-lab: no host {args.host!r} in lab {args.prefix!r} "
              f"(namespaces: {' '.join(namespaces) or 'none; run `up` first'})", file=sys.stderr)
        return 2
    if not args.cmd:
        print("netns-lab: exec needs a command", file=sys.stderr)
        return 2
    os.execvp("ip", ["ip", "netns", "exec", netns, *args.cmd])
    return 1  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netns-lab", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="create the lab")
    up.add_argument("--hosts", type=int, default=netlab.DEFAULT_BACKENDS,
                    help=f"backend hosts (default {netlab.DEFAULT_BACKENDS})")
    up.add_argument("--subnet", default=netlab.DEFAULT_SUBNET,
                    help=f"first three octets of the /24 (default {netlab.DEFAULT_SUBNET})")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="remove the lab").set_defaults(func=cmd_down)
    sub.add_parser("status", help="show the lab").set_defaults(func=cmd_status)
    run = sub.add_parser("exec", help="run a command inside a host")
    run.add_argument("host", help="front, b1, b2, ... (or a namespace name)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="the command and its arguments")
    run.set_defaults(func=cmd_exec)
    for child in sub.choices.values():
        child.add_argument("--prefix", default=netlab.DEFAULT_PREFIX,
                           help=f"namespace name prefix (default {netlab.DEFAULT_PREFIX})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("netns-lab: must run as root", file=sys.stderr)
        return 1
    try:
        return args.func(args)
    except (netlab.LabError, ValueError) as err:
        print(f"netns-lab: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
