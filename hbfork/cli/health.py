"""`hbfork health`: exit 0 if this front is fit to take traffic, else 1 (2: the config cannot be
read). Made for keepalived's vrrp_script, which runs it every second, also on a machine whose
cores are all busy.

It asks the running master over its control socket ("health"); the master answers with the
verdict of hbfork.ops.health from the table it writes. So this process imports next to nothing
(no config model, no table code: `hbfork.cli` sends `health` here before anything else is
imported): with `--socket PATH` it does not even read the config file; with `-c FILE` it reads
only where the control socket is. A master that does not answer within `--timeout` is
unhealthy (a stuck master loop must give the VIP away).

`--from-table` is the earlier way, also the fallback when there is no control socket or the
master is older and does not know "health": attach to the table and compute the verdict here.
"""

from __future__ import annotations

import os
import socket
import sys

# typing.TYPE_CHECKING without importing typing: this process imports next to nothing (see
# above), and argparse only for the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

EXIT_HEALTHY, EXIT_UNHEALTHY, EXIT_CONFIG = 0, 1, 2
DEFAULT_TIMEOUT = 2.0  # below keepalived's script timeout (the recipe's is 3 s)
USAGE = ("usage: hbfork health (-c FILE | --socket PATH) [-q] [--timeout SECONDS] "
         "[--from-table]")


class _Fallback(Exception):
    """The master cannot answer "health" itself: compute the verdict from its table."""


def ask(path: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
    """(exit code, line) from the master listening on control socket `path`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(b"health\n")
        reply = b""
        while b"\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    except FileNotFoundError:
        return EXIT_UNHEALTHY, f"unhealthy: no hbfork master is running (no {path})"
    except ConnectionRefusedError:
        return EXIT_UNHEALTHY, f"unhealthy: no hbfork master is running ({path}: nobody listens)"
    except TimeoutError:
        return EXIT_UNHEALTHY, f"unhealthy: the master did not answer within {timeout:g}s"
    except OSError as err:
        return EXIT_UNHEALTHY, f"unhealthy: {path}: {err.strerror}"
    finally:
        sock.close()
    line = reply.decode("utf-8", "replace").strip()
    if line.startswith("healthy"):
        return EXIT_HEALTHY, line
    if line.startswith("unhealthy"):
        return EXIT_UNHEALTHY, line
    if line.startswith("error unknown command"):
        raise _Fallback  # a master older than "health": it runs, but cannot say
    return EXIT_UNHEALTHY, f"unhealthy: unexpected answer from the master: {line[:80]!r}"


def control_socket_of(config_path: str) -> str | None:
    """Where the config's master listens for control requests; ValueError if the file cannot
    be read. Only these keys are looked at: the master runs on a validated copy already."""
    import tomllib

    from hbfork.core.locations import control_socket_path

    try:
        with open(config_path, "rb") as handle:
            proxy = tomllib.load(handle).get("proxy", {})
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{config_path}: {err}") from None
    if not isinstance(proxy, dict):
        raise ValueError(f"{config_path}: [proxy] is not a table")
    values = [proxy.get("pidfile"), proxy.get("control_socket")]
    if not all(v is None or isinstance(v, str) for v in values):
        raise ValueError(f"{config_path}: [proxy] pidfile and control_socket must be strings")
    return control_socket_path(os.path.dirname(os.path.abspath(config_path)), *values)


def check_from_table(config_path: str) -> tuple[int, str]:
    """The verdict computed here, from the master's table (a full import: ~0.1 s)."""
    from hbfork.cli.status import attach
    from hbfork.core.errors import ConfigError, HbforkError
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


def check(config_path: str | None, socket_path: str | None = None,
          timeout: float = DEFAULT_TIMEOUT, from_table: bool = False) -> tuple[int, str]:
    """(exit code, line to print)."""
    if config_path is not None and not from_table and socket_path is None:
        try:
            socket_path = control_socket_of(config_path)
        except ValueError as err:
            return EXIT_CONFIG, f"hbfork health: configuration error: {err}"
    if socket_path is not None and not from_table:
        try:
            return ask(socket_path, timeout)
        except _Fallback:
            pass
    if config_path is None:
        return EXIT_CONFIG, "hbfork health: -c FILE is needed to read the table"
    return check_from_table(config_path)


def parse(argv: list[str]) -> dict[str, object]:
    """A hand-made parser: argparse alone would cost a noticeable part of the run."""
    options: dict[str, object] = {"config": None, "socket": None, "quiet": False,
                                  "timeout": DEFAULT_TIMEOUT, "from_table": False}
    words = list(argv)
    while words:
        word = words.pop(0)
        name, _, value = word.partition("=")
        if name in ("-c", "--config", "--socket", "--timeout"):
            if not value:
                if not words:
                    raise ValueError(f"{name} needs a value")
                value = words.pop(0)
            key = "config" if name in ("-c", "--config") else name[2:]
            options[key] = float(value) if key == "timeout" else value
        elif word in ("-q", "--quiet"):
            options["quiet"] = True
        elif word == "--from-table":
            options["from_table"] = True
        else:
            raise ValueError(f"unknown argument {word!r}")
    if options["config"] is None and options["socket"] is None:
        raise ValueError("-c FILE or --socket PATH is required")
    return options


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The entry in `hbfork --help` (the arguments are parsed by `parse`)."""
    parser = sub.add_parser(
        "health", help="exit 0 if this front can take traffic, else 1 (for keepalived's "
                       "vrrp_script); asks the master over its control socket")
    parser.add_argument("-c", "--config")
    parser.add_argument("--socket", help="the master's control socket (no config read)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    parser.add_argument("--from-table", action="store_true",
                        help="read the master's table here instead of asking the master")
    return parser


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE + "\n\n" + (__doc__ or "").strip())
        return 0
    try:
        options = parse(argv)
    except ValueError as err:
        print(f"hbfork health: {err}\n{USAGE}", file=sys.stderr)
        return EXIT_CONFIG
    code, line = check(options["config"], options["socket"],  # type: ignore[arg-type]
                       options["timeout"], bool(options["from_table"]))  # type: ignore[arg-type]
    if not options["quiet"] or code == EXIT_CONFIG:
        print(line, file=sys.stderr if code == EXIT_CONFIG else sys.stdout)
    return code
