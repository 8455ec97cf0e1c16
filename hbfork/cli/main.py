"""Command line: `hbfork run|check|status|ctl|health|beat|backend|demo|import-apache`.

Exit codes: 0 success; 1 runtime failure (cannot bind, no master running, ...); 2 bad
configuration or bad arguments (nothing was started).
"""

from __future__ import annotations

import argparse
import sys

from hbfork import __version__
from hbfork.core.errors import ConfigError, HbforkError

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


def cmd_run(args: argparse.Namespace) -> int:
    # The master forks; what a worker runs is the proxy's, wired in here so that the master
    # and the proxy never import each other.
    from hbfork.master.adoption import Adoption
    from hbfork.master.master import Master
    from hbfork.proxy.worker import run_worker
    from hbfork.system.configfile import load

    adoption = Adoption.from_environment()  # started by a running master's upgrade?
    try:
        config = load(args.config)
    except ConfigError as err:
        if adoption is not None:  # the old master goes on serving, and says why
            adoption.fail(f"configuration error: {err}")
        raise
    return Master(config, run_worker, adoption).run()


def cmd_check(args: argparse.Namespace) -> int:
    from hbfork.core.config import describe
    from hbfork.system.configfile import load

    config = load(args.config)
    key_file = config.resolve(config.heartbeat.key_file)  # None: not set
    if key_file is not None:
        from hbfork.system.keyfile import read_keys

        read_keys(key_file)
    print(describe(config))
    print("configuration OK")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    from hbfork.cli import health

    code, line = health.check(args.config, args.socket, args.timeout, args.from_table)
    if not args.quiet or code == health.EXIT_CONFIG:
        print(line, file=sys.stderr if code == health.EXIT_CONFIG else sys.stdout)
    return code


def cmd_backend(args: argparse.Namespace) -> int:
    from hbfork.beat import backend

    return backend.run(args.listen, args.heartbeat, args.capacity, args.delay_ms, args.name,
                       args.interval, send_port=not args.no_port, workers=args.workers,
                       jitter_ms=args.delay_jitter, seed=args.seed, fault=args.fault,
                       fault_rate=args.fault_rate, fault_status=args.fault_status,
                       health_file=args.health_file,
                       fault_on_signal=args.fault_on_signal, stop=args.stop,
                       stop_drain=args.stop_drain, arrivals=args.arrivals)


def cmd_beat(args: argparse.Namespace) -> int:
    from hbfork.cli import beat

    return beat.run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from hbfork.cli import demo

    return demo.run(port=args.port, requests=args.requests, once=args.once,
                    mode=args.mode)


# Commands tests and labs start by the hundred: their parser alone is built, without the
# imports every other subcommand brings (a config loader, the Apache importer).
LIGHT_COMMANDS = frozenset({"backend", "beat"})


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every subcommand, or only `only` (one of LIGHT_COMMANDS)."""
    parser = argparse.ArgumentParser(
        prog="hbfork", description="Heartbeat-balanced pre-forking front proxy.")
    parser.add_argument("--version", action="version", version=f"hbfork {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the proxy in the foreground")
    run.add_argument("-c", "--config", required=True, help="TOML config file")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a config file and summarise it")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(func=cmd_check)

    if only is not None:
        if only == "beat":
            from hbfork.cli import beat

            beat.add_parser(sub).set_defaults(func=cmd_beat)
            return parser
    backend = sub.add_parser("backend", help="a demo/test HTTP backend that sends heartbeats")
    backend.add_argument("--listen", required=True, help="ADDR:PORT to serve on")
    backend.add_argument("--heartbeat", help="ADDR:PORT to send heartbeats to")
    backend.add_argument("--capacity", type=int, default=10,
                         help="ready = capacity - requests in flight (default 10)")
    backend.add_argument("--delay-ms", type=float, default=0.0, help="added to every response")
    backend.add_argument("--workers", type=int, default=0,
                         help="serve at most N requests at once (the rest wait, as in a listen "
                              "backlog) and beat the true idle/busy workers; 0 = no limit "
                              "(default)")
    backend.add_argument("--delay-jitter", type=float, default=0.0, metavar="MS",
                         help="add an exponential time with mean MS to every response")
    backend.add_argument("--seed", type=int, help="seed for --delay-jitter (reproducible runs)")
    backend.add_argument("--name", default="", help="X-Backend value (default: the address)")
    backend.add_argument("--interval", type=float, default=1.0, help="seconds between beats")
    backend.add_argument("--fault", choices=("none", "status", "hang", "reset"), default="none",
                         help="fail requests while the heartbeats stay healthy: answer "
                              "--fault-status, never answer, or reset the connection")
    backend.add_argument("--fault-rate", type=float, default=1.0,
                         help="share of requests --fault fails (default 1: all)")
    backend.add_argument("--health-file", default="", metavar="FILE",
                         help="answer /health as FILE says: absent 200, a status, or hang")
    backend.add_argument("--fault-status", type=int, default=500,
                         help="the status --fault status answers (default 500)")
    backend.add_argument("--fault-on-signal", action="store_true",
                         help="the --fault starts at SIGHUP (and stops at the next), not at "
                              "start")
    backend.add_argument("--stop", choices=("abort", "graceful"), default="abort",
                         help="SIGTERM: drop every connection at once (abort, default), or "
                              "stop gracefully: stop beating and accepting, close idle "
                              "keep-alive connections, answer requests in flight, reset what "
                              "waits in the backlog after --stop-drain")
    backend.add_argument("--stop-drain", type=float, default=1.0, metavar="SECONDS",
                         help="--stop graceful: seconds the listening socket stays open "
                              "(not accepting) before it closes (default 1)")
    backend.add_argument("--arrivals", metavar="FILE",
                         help="at exit, write when each request was read (monotonic "
                              "seconds) and when the fault began, as JSON")
    backend.add_argument("--no-port", action="store_true",
                         help="omit port= from heartbeats, as Apache's mod_heartbeat does")
    backend.set_defaults(func=cmd_backend)
    if only is not None:
        return parser

    from hbfork.cli import beat, health, import_apache, status

    status.add_parsers(sub)
    health.add_parser(sub).set_defaults(func=cmd_health)
    beat.add_parser(sub).set_defaults(func=cmd_beat)
    import_apache.add_parser(sub).set_defaults(func=import_apache.run)

    demo = sub.add_parser("demo", help="proxy + three backends on loopback, with a sample")
    demo.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    demo.add_argument("--requests", type=int, default=600, help="sample size (default 600)")
    demo.add_argument("--mode", choices=("http", "tcp"), default="http")
    demo.add_argument("--once", action="store_true",
                      help="run the sample, print the split and exit (no waiting for Ctrl-C)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["health"]:
        # Run every second by keepalived: skip building every subcommand's parser (and the
        # imports that brings).
        from hbfork.cli.health import main as health_main

        return health_main(argv[1:])
    only = argv[0] if argv[:1] and argv[0] in LIGHT_COMMANDS else None
    args = build_parser(only).parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        print(f"hbfork: configuration error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except HbforkError as err:
        print(f"hbfork: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
