"""Configuration: the whole file as typed, frozen objects, validated across sections.

The settings of each section are declared in `hbfork.core.settings`; this module builds a
Config from a parsed TOML document (`from_document`) or text (`loads`), checks the rules that
involve more than one setting, and describes it for `hbfork check`. Reading the file is
`hbfork.system.configfile`'s job. Relative paths in the file are taken relative to the
directory of the config file (`base_dir`).
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, fields, replace
from typing import Any

from hbfork.core.addresses import Endpoint, parse_endpoint, parse_ip
from hbfork.core.errors import ConfigError
from hbfork.core.settings import (
    SECTIONS,
    UNIX_PATH_MAX,
    HeartbeatSettings,
    HttpSettings,
    LogSettings,
    MemberSettings,
    ProxySettings,
    StatusSettings,
    text_value,
)

if sys.version_info >= (3, 11):  # noqa: UP036 - tomli where tomllib is missing
    import tomllib
else:  # pragma: no cover - only where tomllib is missing
    import tomli as tomllib


@dataclass(frozen=True)
class Config:
    path: str
    proxy: ProxySettings
    heartbeat: HeartbeatSettings
    members: tuple[MemberSettings, ...]
    http: HttpSettings
    status: StatusSettings
    log: LogSettings
    base_dir: str = "."  # the config file's directory (absolute when read from a file)

    def resolve(self, maybe_relative: str | None) -> str | None:
        """A path from the file, taken relative to the file's directory."""
        if not maybe_relative:
            return None
        return os.path.normpath(os.path.join(self.base_dir, maybe_relative))

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


# --- building


def loads(text: str, path: str = "<string>", base_dir: str | None = None) -> Config:
    """A Config from TOML text; `path` names it in errors, `base_dir` anchors relative paths
    (default: the directory `path` names, taken from the current directory)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, "", f"not valid TOML: {err}") from None
    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(path))
    return from_document(document, path, base_dir)


def from_document(document: dict[str, Any], path: str, base_dir: str = ".") -> Config:
    """A validated Config from a parsed TOML document; raises ConfigError."""
    _reject_unknown(document, [*SECTIONS, "member"], path, "")
    sections = {
        name: _build(cls, _table(document, name, path), path, f"[{name}]")
        for name, cls in SECTIONS.items()
    }
    members = _members(document.get("member", []), path, sections["heartbeat"])
    config = Config(path=path, members=members, base_dir=base_dir, **sections)
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
            address = parse_endpoint(text_value(address_text), heartbeat.default_port)
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
