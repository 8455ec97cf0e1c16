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

from hbfork.core import locations
from hbfork.core.addresses import Endpoint, parse_endpoint, parse_ip
from hbfork.core.errors import ConfigError
from hbfork.core.hcheck import HcheckSettings
from hbfork.core.member_names import Resolver, resolve_names
from hbfork.core.outlier import OutlierSettings
from hbfork.core.pool_settings import (
    DEFAULT_POOL,
    PoolMemberSettings,
    PoolSettings,
    RouteSettings,
)
from hbfork.core.pools import (
    check_pools,
    check_routes,
    parse_pools,
    parse_routes,
    static_members,
)
from hbfork.core.request_id import RequestIdSettings
from hbfork.core.routes import compile_routes
from hbfork.core.routes import describe as describe_routes
from hbfork.core.settings import (
    SECTIONS,
    UNIX_PATH_MAX,
    BalanceSettings,
    HeartbeatSettings,
    HttpSettings,
    LogSettings,
    MemberSettings,
    ProxySettings,
    StatusSettings,
    text_value,
)
from hbfork.core.tls_settings import CertificateSettings, ListenSettings, TlsSettings
from hbfork.core.values import BadSetting, build, key_of

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
    balance: BalanceSettings
    tls: TlsSettings
    status: StatusSettings
    log: LogSettings
    pools: tuple[PoolSettings, ...] = ()
    routes: tuple[RouteSettings, ...] = ()
    certificates: tuple[CertificateSettings, ...] = ()
    listens: tuple[ListenSettings, ...] = ()
    outlier: OutlierSettings = OutlierSettings()
    request_id: RequestIdSettings = RequestIdSettings()
    base_dir: str = "."  # the config file's directory (absolute when read from a file)
    # host names members were given by, and the addresses each had when the file was read
    names: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def listeners(self) -> tuple[ListenSettings, ...]:
        """Every client-facing listener: [proxy] listen (plain), then the [[listen]] ones."""
        trusted = self.proxy.trusted_proxies  # a listener's own, else these
        return tuple(ListenSettings(address=e, trusted_proxies=trusted)
                     for e in self.proxy.listen) + tuple(
            listen if listen.trusted_proxies is not None
            else replace(listen, trusted_proxies=trusted) for listen in self.listens)

    @property
    def discovering(self) -> bool:
        """Members found by their heartbeats are admitted (to the pool that takes them)."""
        return self.heartbeat.discover or any(p.discover for p in self.pools)

    @property
    def discover_pool(self) -> str:
        return next((p.name for p in self.pools if p.discover), DEFAULT_POOL)

    @property
    def static_members(self) -> tuple[MemberSettings, ...]:
        """Every member the file lists, once (a member in several pools is one member)."""
        return static_members(self.pools, self.members)

    def pool(self, name: str) -> PoolSettings:
        return next(p for p in self.pools if p.name == name)

    @property
    def tcp_pool(self) -> PoolSettings:
        """The pool TCP mode balances over (checked: "default", or the only one)."""
        return next((p for p in self.pools if p.name == DEFAULT_POOL), self.pools[0])

    def resolve(self, maybe_relative: str | None) -> str | None:
        """A path from the file, taken relative to the file's directory."""
        return locations.resolve(self.base_dir, maybe_relative)

    @property
    def pidfile(self) -> str | None:
        return self.resolve(self.proxy.pidfile)

    @property
    def control_socket(self) -> str | None:
        """The control socket's path: as configured, else next to the pidfile (if that path
        fits a Unix socket address; the master then says why there is none)."""
        return locations.control_socket_path(self.base_dir, self.proxy.pidfile,
                                             self.proxy.control_socket)


# --- building


def loads(text: str, path: str = "<string>", base_dir: str | None = None,
          resolve: Resolver | None = None) -> Config:
    """A Config from TOML text; `path` names it in errors, `base_dir` anchors relative paths
    (default: the directory `path` names, taken from the current directory); `resolve` turns
    members given by host name into addresses (without it, names are an error)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(path, "", f"not valid TOML: {err}") from None
    if resolve is not None:
        resolve_names(document, path, resolve)
    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(path))
    return from_document(document, path, base_dir)


def from_document(document: dict[str, Any], path: str, base_dir: str = ".") -> Config:
    """A validated Config from a parsed TOML document; raises ConfigError."""
    _reject_unknown(document, [*SECTIONS, "member", "pool", "route", "certificate", "listen"],
                    path, "")
    sections = {
        name: _build(cls, _table(document, name, path), path, f"[{name}]")
        for name, cls in SECTIONS.items()
    }
    listens = _blocks(document, "listen", ListenSettings, path)
    if listens and "listen" not in _table(document, "proxy", path):
        # With [[listen]] blocks, [proxy] listen has no default: only what is written binds.
        sections["proxy"] = replace(sections["proxy"], listen=())
    heartbeat = sections["heartbeat"]
    members = _members(document.get("member", []), path, heartbeat)
    pools = parse_pools(document.get("pool", []), path, heartbeat, members)
    routes = parse_routes(document.get("route", []), path)
    config = Config(path=path, members=members, pools=pools, routes=routes, base_dir=base_dir,
                    certificates=_blocks(document, "certificate", CertificateSettings, path),
                    listens=listens, **sections)
    _check(config)
    return config


def _blocks(document: dict[str, Any], name: str, cls: type, path: str) -> tuple[Any, ...]:
    """An array of tables ([[name]] blocks), each built as `cls`."""
    raw = document.get(name, [])
    if not isinstance(raw, list):
        raise ConfigError(path, f"[[{name}]]", f"must be an array of tables ([[{name}]] blocks)")
    out = []
    for index, table in enumerate(raw):
        if not isinstance(table, dict):
            raise ConfigError(path, f"[[{name}]] #{index + 1}", "must be a table")
        out.append(_build(cls, table, path, f"[[{name}]] #{index + 1}"))
    return tuple(out)


def _table(document: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    value = document.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(path, f"[{name}]", "must be a table")
    return value


def _build(cls: type, table: dict[str, Any], path: str, where: str, **fixed: Any) -> Any:
    try:
        return build(cls, table, **fixed)
    except BadSetting as err:
        raise ConfigError(path, f"{where} {err.key}", err.problem) from None


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
    listed = config.static_members
    if len(listed) > hb.max_members:
        raise ConfigError(path, "[heartbeat] max_members",
                          f"is {hb.max_members} but {len(listed)} members are listed")
    if not listed and not config.discovering:
        raise ConfigError(path, "[[member]]",
                          "no members and [heartbeat] discover = false: nothing to balance over")
    check_pools(path, config.pools, config.discovering)
    check_routes(path, config.routes, config.pools, config.proxy.mode)
    if config.proxy.mode == "tcp" and len(config.pools) > 1 and \
            all(p.name != DEFAULT_POOL for p in config.pools):
        raise ConfigError(path, "[[pool]]", "TCP mode balances one pool: name one \"default\"")
    if hb.forget_after < hb.max_age:
        raise ConfigError(path, "[heartbeat] forget_after",
                          f"({hb.forget_after:g}) must not be less than max_age ({hb.max_age:g})")
    check_listeners(config)
    check_beat_posts(config)
    if hb.require_signature and not hb.key_file:
        raise ConfigError(path, "[heartbeat] require_signature", "needs [heartbeat] key_file")
    if any(m.require_signature for m in listed) and not hb.key_file:
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
    # "file:" alone named no file: the master's periodic read then failed on None
    if hb.source and (not hb.source.startswith("file:") or hb.source == "file:"):
        raise ConfigError(path, "[heartbeat] source", f"expected \"file:PATH\", got {hb.source!r}")


NO_PROXY_SOURCES = ("needs the sources it is taken from: proxy_protocol_from or "
                    "trusted_proxies (\"0.0.0.0/0\" and \"::/0\" for any)")


def check_beat_posts(config: Config) -> None:
    """[heartbeat] http_path and http_listen (hbfork.core.beat_post)."""
    hb = config.heartbeat
    if hb.http_listen and not hb.http_path:
        raise ConfigError(config.path, "[heartbeat] http_listen", "needs [heartbeat] http_path")
    if hb.http_path and config.proxy.mode != "http":
        raise ConfigError(config.path, "[heartbeat] http_path",
                          "heartbeats by POST need [proxy] mode = \"http\"")
    if hb.http_path and config.discovering and not hb.allow:
        raise ConfigError(config.path, "[heartbeat] http_path",
                          "with discover, heartbeats by POST need [heartbeat] allow (else any "
                          "client could make itself a member)")
    addresses = {listen.address for listen in config.listeners}
    for address in hb.http_listen:
        if address not in addresses:
            raise ConfigError(config.path, "[heartbeat] http_listen",
                              f"{address} is not a client listener ([proxy] listen or "
                              f"[[listen]])")


def check_listeners(config: Config) -> None:
    path = config.path
    listeners = config.listeners
    if not listeners:
        raise ConfigError(path, "[proxy] listen", "no client-facing listener")
    seen: set[Endpoint] = set()
    for index, listen in enumerate(config.listens):
        where = f"[[listen]] #{index + 1}"
        if listen.address is None:
            raise ConfigError(path, f"{where} address", "is required")
        if listen.tls and listen.redirect_https:
            raise ConfigError(path, f"{where} redirect_https", "is for a plain listener")
        if listen.hsts and not listen.tls:
            raise ConfigError(path, f"{where} hsts", "only means something with tls = true")
        if listen.proxy_protocol and not listen.proxy_sources(config.proxy.trusted_proxies):
            raise ConfigError(path, f"{where} proxy_protocol", NO_PROXY_SOURCES)
        if config.proxy.mode == "tcp":  # TLS is terminated and the bytes relayed: no HTTP
            for key, value in (("redirect_https", listen.redirect_https),
                               ("hsts", listen.hsts)):
                if value:
                    raise ConfigError(path, f"{where} {key}", "needs [proxy] mode = \"http\"")
    for listen in listeners:
        if listen.address in seen:
            raise ConfigError(path, "[[listen]] address",
                              f"{listen.address} is listed twice ([proxy] listen included)")
        seen.add(listen.address)
    status = config.status.listen
    if status is not None and status in seen:
        which = "[proxy] listen" if status in config.proxy.listen else "[[listen]]"
        raise ConfigError(path, "[status] listen", f"{status} is also a {which} address")
    tls_listeners = [entry for entry in listeners if entry.tls]
    if tls_listeners and not config.certificates:
        raise ConfigError(path, "[[certificate]]", "a [[listen]] has tls = true, but no "
                                                   "certificate is configured")
    if config.certificates and not tls_listeners:
        raise ConfigError(path, "[[certificate]]", "no [[listen]] has tls = true to serve it")
    for index, cert in enumerate(config.certificates):
        if not cert.cert:
            raise ConfigError(path, f"[[certificate]] #{index + 1} cert", "is required")
    if sum(c.default for c in config.certificates) > 1:
        raise ConfigError(path, "[[certificate]] default", "only one certificate can be the "
                                                            "default")


def describe(config: Config) -> str:
    """The one-screen summary `hbfork check` prints."""
    p, hb = config.proxy, config.heartbeat
    lines = [
        f"config:     {config.path}",
        f"listen:     {', '.join(map(_describe_listener, config.listeners))}  (mode {p.mode}, "
        f"{p.workers} workers, "
        f"max {p.max_connections} connections each)",
        f"heartbeat:  {hb.listen}{' (multicast group)' if hb.listen.is_multicast else ''}; "
        f"max_age {hb.max_age:g}s, table {hb.max_members} slots, "
        f"discover {'on' if hb.discover else 'off'}"
        + (f", allow {', '.join(map(str, hb.allow))}" if hb.allow else "")
        + (", signed" + (" (required)" if hb.require_signature else "") if hb.key_file else "")
        + (f", POST {hb.http_path}" if hb.http_path else ""),
        f"status:     {config.status.listen or 'off'}",
        f"members:    {len(config.static_members)} static"
        + (" + discovered" if config.discovering else ""),
    ]
    for member in config.members:
        extra = f" lbset {member.lbset}" + (f" ({member.name})" if member.name else "")
        extra += " disabled" if member.disabled else ""
        lines.append(f"  - {member.address}{extra}")
    if len(config.pools) > 1 or config.routes or any(p.name != DEFAULT_POOL
                                                      for p in config.pools):
        lines += _describe_pools(config)
    return "\n".join(lines)


def _describe_listener(listen: ListenSettings) -> str:
    if listen.proxy_protocol:
        return _describe_listener(replace(listen, proxy_protocol=False)) + " [PROXY protocol]"
    if listen.tls:
        return f"{listen.address} (tls" + (f", hsts {listen.hsts}s)" if listen.hsts else ")")
    if listen.redirect_https:
        return f"{listen.address} (to https:{listen.https_port})"
    return str(listen.address)


def _describe_pools(config: Config) -> list[str]:
    lines = [f"pools:      {len(config.pools)}"]
    for pool in config.pools:
        sticky = f", sticky {pool.stickysession or pool.sticky_cookie}" \
            if pool.sticky_names[0] else ""
        sticky += ", nofailover" if pool.nofailover else ""
        discover = ", takes discovered members" if pool.discover else ""
        if pool.hcheck.enabled:
            discover += f", checks {pool.hcheck.label} every {pool.hcheck.hcinterval:g}s"
        lines.append(f"  {pool.name}: {len(pool.members)} members{sticky}{discover}")
        for m in pool.members:
            flags = [f"route {m.route}"] if m.route else []
            flags += [f"lbset {m.lbset}"] if m.lbset else []
            flags += [name for name in ("standby", "drain", "disabled") if getattr(m, name)]
            lines.append(f"    - {m.address}" + (f" ({', '.join(flags)})" if flags else ""))
    if config.routes:
        lines += describe_routes(compile_routes(config.routes))
    return lines


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(section, key, default, help) for every setting: the configuration reference
    (docs/configuration.md)."""
    rows = []
    tables = [*SECTIONS.items(), ("member", MemberSettings), ("pool", PoolSettings),
              ("pool", HcheckSettings), ("pool.member", PoolMemberSettings),
              ("route", RouteSettings), ("listen", ListenSettings),
              ("certificate", CertificateSettings)]
    for name, cls in tables:
        for f in fields(cls):
            if not f.metadata["help"]:
                continue  # a group of keys declared in a class of its own (hc*)
            shown = f.metadata["shown"] or _show(f.default)
            rows.append((name, key_of(f), shown, f.metadata["help"]))
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
