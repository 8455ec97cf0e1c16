"""Configuration: one table of settings per TOML section, loaded into typed, frozen objects.

Each setting is declared once, as a dataclass field whose metadata carries its parser and its
help text; the loader, `hbfork check` and the README's reference all read that one declaration.
Relative paths in the file are resolved against the directory of the config file.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hbfork.addresses import Endpoint, IPNetwork, parse_endpoint, parse_ip, parse_network
from hbfork.errors import ConfigError

if sys.version_info >= (3, 11):  # noqa: UP036 - tomli where tomllib is missing
    import tomllib
else:  # pragma: no cover - only where tomllib is missing
    import tomli as tomllib

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


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _optional_text(value: Any) -> str | None:
    return _text(value) or None


def _choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return value

    return parse


def _endpoint(value: Any) -> Endpoint:
    return parse_endpoint(_text(value))


def _optional_endpoint(value: Any) -> Endpoint | None:
    return parse_endpoint(value) if _text(value) else None


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
    name: str = setting("", _text, "label shown in status and logs (default: the address)")
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


@dataclass(frozen=True)
class Config:
    path: str
    proxy: ProxySettings
    heartbeat: HeartbeatSettings
    members: tuple[MemberSettings, ...]
    http: HttpSettings
    status: StatusSettings
    log: LogSettings

    def resolve(self, maybe_relative: str | None) -> str | None:
        """A path from the file, taken relative to the file's directory."""
        if not maybe_relative:
            return None
        base = Path(self.path).resolve().parent
        return str((base / maybe_relative).resolve())

    @property
    def pidfile(self) -> str | None:
        return self.resolve(self.proxy.pidfile)

    @property
    def control_socket(self) -> str | None:
        """The control socket's path: as configured, else next to the pidfile (if that path
        fits a Unix socket address; the master then says why there is none)."""
        if self.proxy.control_socket:
            return self.resolve(self.proxy.control_socket)
        pid = self.pidfile
        if pid and len(os.fsencode(pid + ".ctl")) <= UNIX_PATH_MAX:
            return pid + ".ctl"
        return None


# --- loading


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raises ConfigError naming file, key and problem."""
    name = str(path)
    try:
        with open(name, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(name, "", "no such file") from None
    except OSError as err:
        raise ConfigError(name, "", f"cannot read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(name, "", f"not valid TOML: {err}") from None
    return from_document(document, name)


def loads(text: str, path: str = "<string>") -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, "", f"not valid TOML: {err}") from None
    return from_document(document, path)


def from_document(document: dict[str, Any], path: str) -> Config:
    _reject_unknown(document, [*SECTIONS, "member"], path, "")
    sections = {
        name: _build(cls, _table(document, name, path), path, f"[{name}]")
        for name, cls in SECTIONS.items()
    }
    members = _members(document.get("member", []), path, sections["heartbeat"])
    config = Config(path=path, members=members, **sections)
    _check(config)
    return config


def _table(document: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(path, f"[{name}]", "must be a table")
    return value


def _build(cls: type, table: dict[str, Any], path: str, where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    _reject_unknown(table, list(known), path, where)
    values = {}
    for key, raw in table.items():
        try:
            values[key] = known[key].metadata["parse"](raw)
        except ValueError as err:
            raise ConfigError(path, f"{where} {key}", str(err)) from None
    return cls(**values)


def _reject_unknown(table: dict[str, Any], known: list[str], path: str, where: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            label = f"{where} {key}".strip() if where else f"[{key}]"
            raise ConfigError(path, label, f"unknown key{hint}")


def _members(raw: Any, path: str, heartbeat: HeartbeatSettings) -> tuple[MemberSettings, ...]:
    if not isinstance(raw, list):
        raise ConfigError(path, "[[member]]", "must be an array of tables ([[member]] blocks)")
    members = []
    for index, table in enumerate(raw):
        where = f"[[member]] #{index + 1}"
        if not isinstance(table, dict):
            raise ConfigError(path, where, "must be a table")
        if "address" not in table:
            raise ConfigError(path, f"{where} address", "is required")
        address_text = table["address"]
        try:
            address = parse_endpoint(_text(address_text), heartbeat.default_port)
        except ValueError as err:
            raise ConfigError(path, f"{where} address", str(err)) from None
        rest = {k: v for k, v in table.items() if k != "address"}
        member = _build(MemberSettings, rest, path, where)
        members.append(replace(member, address=address))
    return tuple(members)


def _check(config: Config) -> None:
    """Rules that involve more than one setting."""
    path, hb = config.path, config.heartbeat
    seen: dict[Endpoint, int] = {}
    for index, member in enumerate(config.members):
        if member.address in seen:
            raise ConfigError(path, f"[[member]] #{index + 1} address",
                              f"{member.address} is already member #{seen[member.address] + 1}")
        seen[member.address] = index
    if len(config.members) > hb.max_members:
        raise ConfigError(path, "[heartbeat] max_members",
                          f"is {hb.max_members} but {len(config.members)} members are listed")
    if not config.members and not hb.discover:
        raise ConfigError(path, "[[member]]",
                          "no members and [heartbeat] discover = false: nothing to balance over")
    if hb.forget_after < hb.max_age:
        raise ConfigError(path, "[heartbeat] forget_after",
                          f"({hb.forget_after:g}) must not be less than max_age ({hb.max_age:g})")
    status = config.status.listen
    if status is not None and status in config.proxy.listen:
        raise ConfigError(path, "[status] listen", f"{status} is also a [proxy] listen address")
    if hb.require_signature and not hb.key_file:
        raise ConfigError(path, "[heartbeat] require_signature", "needs [heartbeat] key_file")
    if any(m.require_signature for m in config.members) and not hb.key_file:
        raise ConfigError(path, "[[member]] require_signature", "needs [heartbeat] key_file")
    if hb.interface:
        try:
            parse_ip(hb.interface)
        except ValueError as err:
            raise ConfigError(path, "[heartbeat] interface", str(err)) from None
    control = config.control_socket
    if config.proxy.control_socket and control and len(os.fsencode(control)) > UNIX_PATH_MAX:
        raise ConfigError(path, "[proxy] control_socket",
                          f"{control} is longer than a Unix socket path may be "
                          f"({UNIX_PATH_MAX} bytes); choose a shorter path")
    if hb.source and not hb.source.startswith("file:"):
        raise ConfigError(path, "[heartbeat] source", f"expected \"file:PATH\", got {hb.source!r}")


def describe(config: Config) -> str:
    """The one-screen summary `hbfork check` prints."""
    p, hb = config.proxy, config.heartbeat
    lines = [
        f"config:     {config.path}",
        f"listen:     {', '.join(map(str, p.listen))}  (mode {p.mode}, {p.workers} workers, "
        f"max {p.max_connections} connections each)",
        f"heartbeat:  {hb.listen}{' (multicast group)' if hb.listen.is_multicast else ''}; "
        f"max_age {hb.max_age:g}s, table {hb.max_members} slots, "
        f"discover {'on' if hb.discover else 'off'}"
        + (f", allow {', '.join(map(str, hb.allow))}" if hb.allow else "")
        + (", signed" + (" (required)" if hb.require_signature else "") if hb.key_file else ""),
        f"status:     {config.status.listen or 'off'}",
        f"members:    {len(config.members)} static" + (" + discovered" if hb.discover else ""),
    ]
    for member in config.members:
        extra = f" lbset {member.lbset}" + (f" ({member.name})" if member.name else "")
        extra += " disabled" if member.disabled else ""
        lines.append(f"  - {member.address}{extra}")
    return "\n".join(lines)


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(section, key, default, help) for every setting: the README's configuration reference."""
    rows = []
    for name, cls in [*SECTIONS.items(), ("member", MemberSettings)]:
        for f in fields(cls):
            shown = f.metadata["shown"] or _show(f.default)
            rows.append((name, f.name, shown, f.metadata["help"]))
    return rows


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "(required)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
