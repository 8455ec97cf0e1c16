"""The settings of each TOML section, declared once: a dataclass field per key whose metadata
carries its parser and help text. The loader (`hbfork.core.config`), `hbfork check` and the
README's reference all read these declarations.

Value parsers take the raw TOML value and return the typed value or raise ValueError; the
loader turns that into a ConfigError naming file, key and problem.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hbfork.core.addresses import Endpoint, IPNetwork, parse_endpoint, parse_network

MAX_WORKERS = 64
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, NUL included
INT32_MAX = 2**31 - 1


# --- value parsers: each takes the raw TOML value and returns the typed value or raises ValueError


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer from {low} to {high}, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def _seconds(low: float = 0.0, high: float = 86400.0, *, allow_zero: bool = False):
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number of seconds, got {value!r}")
        if value == 0 and allow_zero:
            return 0.0
        if not low < value <= high:
            raise ValueError(f"must be more than {low:g} and at most {high:g} seconds, got {value}")
        return float(value)

    return parse


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def text_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _optional_text(value: Any) -> str | None:
    return text_value(value) or None


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return value

    return parse


def _endpoint(value: Any) -> Endpoint:
    return parse_endpoint(text_value(value))


def _optional_endpoint(value: Any) -> Endpoint | None:
    return parse_endpoint(value) if text_value(value) else None


def _endpoint_list(value: Any) -> tuple[Endpoint, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of addresses like [\"127.0.0.1:8080\"]")
    endpoints = tuple(_endpoint(item) for item in value)
    if len(set(endpoints)) != len(endpoints):
        raise ValueError("lists the same address twice")
    return endpoints


def _network_list(value: Any) -> tuple[IPNetwork, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of CIDRs like [\"10.0.0.0/8\"]")
    return tuple(parse_network(item) for item in value)


def _workers(value: Any) -> int:
    if value == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    return _integer(1, MAX_WORKERS)(value)


def _grace(value: Any) -> float | None:
    """Seconds, or "max_age" (None: one max_age, whatever it is set to)."""
    if value == "max_age":
        return None
    return _seconds(0, 3600, allow_zero=True)(value)


def setting(default: Any, parse: Callable[[Any], Any], help: str, shown: str = "") -> Any:
    """Declare one setting: its default (already typed), its parser and its help text.

    `shown` is the default as the README and `hbfork check` print it, when repr would mislead.
    """
    return field(default=default, metadata={"parse": parse, "help": help, "shown": shown})


# --- the sections


@dataclass(frozen=True)
class ProxySettings:
    listen: tuple[Endpoint, ...] = setting(
        (parse_endpoint("127.0.0.1:8080"),), _endpoint_list,
        "client-facing addresses; several allowed, IPv4 or IPv6 (\"[::1]:8080\")",
        '["127.0.0.1:8080"]')
    mode: str = setting("http", _choice("http", "tcp"),
                        "\"http\": balance every request; \"tcp\": balance every connection")
    workers: int = setting(_workers("auto"), _workers,
                           "worker processes: \"auto\" (one per CPU) or 1-64", '"auto"')
    shutdown_timeout: float = setting(30.0, _seconds(),
                                      "seconds old workers may drain on reload or stop")
    drain_delay: float = setting(5.0, _seconds(0, 3600, allow_zero=True),
                                 "seconds `hbfork ctl drain-front` keeps accepting after "
                                 "/healthz starts failing (time for the VIP to move)")
    retry: float = setting(10.0, _seconds(0, 3600, allow_zero=True),
                           "seconds a member that refused a connect stays out (Apache: 60)")
    max_connections: int = setting(10000, _integer(1, 1_000_000),
                                   "client connections per worker; accepting pauses at the limit")
    backlog: int = setting(1024, _integer(1, 65535), "listen(2) backlog of each listener")
    worker_timeout: float = setting(30.0, _seconds(),
                                    "a worker whose loop has not ticked for this long is replaced")
    user: str | None = setting(None, _optional_text,
                               "drop privileges to this user after binding", '""')
    group: str | None = setting(None, _optional_text,
                                "drop privileges to this group (default: the user's group)", '""')
    allow_root: bool = setting(False, _boolean,
                               "allow serving as root (no `user`); refused otherwise")
    pidfile: str | None = setting(None, _optional_text,
                                  "pid file, written atomically; also locates the status table",
                                  '""')
    control_socket: str | None = setting(None, _optional_text,
                                         "Unix socket for `hbfork ctl` (default: next to the "
                                         "pidfile, else off)", '""')


@dataclass(frozen=True)
class HeartbeatSettings:
    listen: Endpoint = setting(parse_endpoint("239.0.0.1:27999"), _endpoint,
                               "UDP address: a multicast group (joined) or a unicast address",
                               '"239.0.0.1:27999"')
    interface: str | None = setting(None, _optional_text,
                                    "local IPv4 address of the interface to join the multicast "
                                    "group on (default: chosen by the routing table)", '""')
    max_members: int = setting(256, _integer(1, 65535), "member table capacity")
    max_age: float = setting(10.0, _seconds(0, 3600),
                             "a member whose last heartbeat is this old gets no new traffic")
    startup_grace: float | None = setting(
        None, _grace,
        "seconds after start during which [[member]] entries not heard from yet are tried "
        "(a failed connect fails over as usual) instead of refused; 0 = off", '"max_age"')
    forget_after: float = setting(30.0, _seconds(0, 86400),
                                  "discovered members unseen this long are removed")
    discover: bool = setting(False, _boolean,
                             "admit any (allowed) sender as a member, not only [[member]] entries")
    default_port: int = setting(80, _integer(1, 65535),
                                "member port when a heartbeat carries no port=")
    allow: tuple[IPNetwork, ...] = setting((), _network_list,
                                           "CIDRs allowed to send heartbeats; empty = any", "[]")
    rate_limit: float = setting(50.0, _seconds(0, 1_000_000, allow_zero=True),
                                "heartbeats per second accepted from one source IP "
                                "(burst: 2 s worth); 0 = unlimited")
    max_ready: int = setting(0, _integer(0, INT32_MAX),
                             "cap on any member's ready (its weight); 0 = no cap")
    key_file: str | None = setting(None, _optional_text,
                                   "secret for signed heartbeats (HMAC-SHA256); one or two lines",
                                   '""')
    require_signature: bool = setting(False, _boolean, "reject unsigned heartbeats")
    signature_window: float = setting(10.0, _seconds(0, 3600),
                                      "accepted clock difference of a signed heartbeat's ts")
    storage: str | None = setting(None, _optional_text,
                                  "also write mod_heartmonitor's hb.dat file here", '""')
    storage_interval: float = setting(5.0, _seconds(0, 3600),
                                      "seconds between storage file writes")
    source: str | None = setting(None, _optional_text,
                                 "\"file:PATH\": read members from another monitor's hb.dat "
                                 "instead of (or as well as) UDP", '""')


@dataclass(frozen=True)
class MemberSettings:
    address: Endpoint = setting(None, _endpoint, "IP:port of the member (required)")
    lbset: int = setting(0, _integer(0, 65535), "lowest set with an eligible member is used")
    name: str = setting("", text_value, "label shown in status and logs (default: the address)")
    max_ready: int = setting(0, _integer(0, INT32_MAX),
                             "cap on this member's ready; 0 = the [heartbeat] max_ready")
    require_signature: bool = setting(False, _boolean,
                                      "reject this member's unsigned heartbeats")
    disabled: bool = setting(False, _boolean,
                             "start disabled (no traffic until `hbfork ctl enable`)")

    @property
    def label(self) -> str:
        return self.name or str(self.address)


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = setting(3.0, _seconds(0, 600),
                                     "seconds to connect to a member (both modes)")
    response_timeout: float = setting(60.0, _seconds(0, 86400),
                                      "seconds to wait for a member's response head (504 after)")
    retries: int = setting(2, _integer(0, 100),
                           "other members tried after a connect failure (both modes)")
    client_timeout: float = setting(60.0, _seconds(0, 86400),
                                    "idle seconds on a client connection, or a member "
                                    "connection mid-transfer, before it is closed")
    keepalive_timeout: float = setting(15.0, _seconds(0, 86400),
                                       "idle seconds a client keep-alive connection is kept")
    header_timeout: float = setting(10.0, _seconds(0, 3600),
                                    "seconds a client has to send a whole request head (408)")
    max_request_line: int = setting(8192, _integer(64, 1 << 20),
                                    "longest request line in bytes (414 beyond)")
    max_header_size: int = setting(16384, _integer(256, 1 << 22),
                                   "largest request head in bytes (431 beyond)")
    max_body_size: int = setting(0, _integer(0, 1 << 62),
                                 "largest request body in bytes (413 beyond); 0 = no limit")
    forwarded_headers: bool = setting(True, _boolean,
                                      "add X-Forwarded-For, -Proto and -Host")
    pool_size: int = setting(32, _integer(0, 10000),
                             "idle keep-alive connections kept per member per worker")
    pool_idle_timeout: float = setting(30.0, _seconds(0, 86400),
                                       "idle seconds a pooled member connection is kept")


@dataclass(frozen=True)
class StatusSettings:
    listen: Endpoint | None = setting(parse_endpoint("127.0.0.1:8081"), _optional_endpoint,
                                      "status page, /status.json and /metrics; \"\" = off",
                                      '"127.0.0.1:8081"')
    allow: tuple[IPNetwork, ...] = setting((), _network_list,
                                           "CIDRs allowed to read the status listener; "
                                           "empty = any", "[]")


@dataclass(frozen=True)
class LogSettings:
    level: str = setting("info", _choice("debug", "info", "warning", "error"), "error log level")
    error: str | None = setting(None, _optional_text, "error log file (default: stderr)", '""')
    access: str | None = setting(None, _optional_text, "access log file (default: off)", '""')
    access_format: str = setting("combined+", _choice("combined", "combined+", "json"),
                                 "\"combined\" (Apache), \"combined+\" (plus member and "
                                 "timings) or \"json\"", '"combined+"')


SECTIONS: dict[str, type] = {
    "proxy": ProxySettings,
    "heartbeat": HeartbeatSettings,
    "http": HttpSettings,
    "status": StatusSettings,
    "log": LogSettings,
}
