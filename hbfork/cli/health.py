"""`hbfork health -c FILE`: exit 0 if this front is fit to take traffic, else 1 (2: the config
cannot be read). Made for keepalived's vrrp_script, which runs it every second or so: it reads
the master's table directly (no HTTP, works with the status listener off), prints one line,
and imports only what that needs (`hbfork.cli.main` sends `health` here before building the
full argument parser).
"""

from __future__ import annotations

import argparse
import sys

from hbfork.core.errors import ConfigError, HbforkError

EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_CONFIG = 0, 1, 2


def check(config_path: str) -> tuple[int, str]:
    """(exit code, line to print)."""
    from hbfork.cli.status import attach
    from hbfork.ops.health import Verdict, verdict
    from hbfork.ops.snapshot import snapshot
    from hbfork.system.configfile import load
    from hbfork.system.pidfile import alive

    try:
        config = load(config_path)
    except ConfigError as err:
        return EXIT_CONFIG, f"hbfork health: configuration error: {err}"
    try:
        table = attach(config)
    except HbforkError as err:
        return EXIT_UNHEALTHY, Verdict(False, str(err)).line
    try:
        data = snapshot(table)
    finally:
        table.close()
    # Checked after the snapshot, so a process that died while we read counts as dead.
    master_alive = alive(data["master"]["pid"])
    live = {w["pid"] for w in data["workers"] if alive(w["pid"])}
    result = verdict(data, config.heartbeat.max_age, master_alive, live)
    return (EXIT_HEALTHY if result.ok else EXIT_UNHEALTHY), result.line


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("health", help="exit 0 if this front can take traffic, else 1 "
                                           "(for keepalived's vrrp_script)")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    return parser


def run(args: argparse.Namespace) -> int:
    code, line = check(args.config)
    if not args.quiet or code == EXIT_CONFIG:
        print(line, file=sys.stderr if code == EXIT_CONFIG else sys.stdout)
    return code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hbfork health")
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("-q", "--quiet", action="store_true")
    return run(parser.parse_args(argv))
