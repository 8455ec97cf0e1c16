"""The settings of `[[pool]]` (with its `[[pool.member]]` entries) and `[[route]]`, declared
once like every other section, and parsed from their TOML tables.

A pool is a named set of members with its own stickiness, failover and timeouts (Apache's
`<Proxy balancer://NAME>`); a route sends requests for a host and path to a pool, or keeps them
out (`ProxyPass`, `ProxyPassMatch`, `ProxyPass PATH !`). The top-level `[[member]]` entries of a
file without pools form the pool "default", and with no `[[route]]` every request goes there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hbfork.core.addresses import Endpoint, parse_endpoint
from hbfork.core.hcheck import NO_CHECK, HcheckSettings
from hbfork.core.header_rules import Rule, request_setting, response_setting
from hbfork.core.http_upgrade import DEFAULT_ALLOWED
from hbfork.core.retry import (
    DEFAULT_FAILONSTATUS,
    DEFAULT_RETRY_ON,
    parse_retry_on,
    parse_statuses,
)
from hbfork.core.values import (
    INT32_MAX,
    BadSetting,
    boolean,
    build,
    choice,
    integer,
    route_token,
    seconds,
    setting,
    text_value,
)

DEFAULT_POOL = "default"
POOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9\-_]*[a-z0-9])?")
COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}")
MAX_POOLS = 64


def _optional_seconds(value: Any) -> float | None:
    return seconds(0, 86400)(value)


def _optional_retries(value: Any) -> int | None:
    return integer(0, 100)(value)


def _sticky_names(value: Any) -> str:
    """Apache's stickysession: "NAME" or "COOKIE|URLPARAM"."""
    text = text_value(value)
    if not text:
        return ""
    parts = text.split("|")
    if len(parts) > 2 or not all(COOKIE_NAME.fullmatch(p) for p in parts):
        raise ValueError(f"expected \"NAME\" or \"COOKIE|URLPARAM\" (token characters), got "
                         f"{text!r}")
    return text


def _separator(value: Any) -> str:
    text = text_value(value)
    if text.lower() == "off":
        return ""
    if len(text) != 1 or not text.isprintable() or text in "=;, ":
        raise ValueError(f"expected one character (or \"off\"), got {text!r}")
    return text


def _cookie_name(value: Any) -> str:
    text = text_value(value)
    if text and not COOKIE_NAME.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid cookie name")
    return text


def _upgrades(value: Any) -> tuple[str, ...]:
    """Apache's upgrade=: the Upgrade protocols passed to members ("*" any; [] none)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError("expected a list of protocol names, e.g. [\"websocket\"]")
    names = tuple(i.strip().lower() for i in items)
    for name in names:
        if name != "*" and not COOKIE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a protocol name")
        if name == "h2c":
            raise ValueError("h2c is never tunnelled: requests inside it would bypass the "
                             "routes (RFC 9113 deprecates the h2c upgrade)")
    return names


def _optional_upgrades(value: Any) -> tuple[str, ...] | None:
    return _upgrades(value)


def _hc_table(value: Any) -> HcheckSettings:
    raise ValueError("hc* keys are read one by one")  # never called: pools.py reads them


def _cookie_path(value: Any) -> str:
    text = text_value(value)
    if not text.startswith("/") or any(c in text for c in ";, \t"):
        raise ValueError(f"expected a path starting with /, got {text!r}")
    return text


# --- [[pool.member]]


@dataclass(frozen=True)
class PoolMemberSettings:
    address: Endpoint = setting(None, text_value, "IP:port of the member (required)")
    route: str = setting("", route_token,
                         "sticky-session route of this member (Apache route=); unique in "
                         "the pool")
    lbset: int = setting(0, integer(0, 65535),
                         "tier: the lowest lbset with an eligible member takes the traffic")
    standby: bool = setting(False, boolean,
                            "hot standby (Apache +H): used only when no member of its lbset "
                            "that is not standby is eligible")
    drain: bool = setting(False, boolean,
                          "start drained in this pool (Apache +N): only its sticky sessions")
    disabled: bool = setting(False, boolean,
                             "start disabled in this pool (Apache +D): no traffic")
    name: str = setting("", text_value, "label in status and logs (default: the address)")
    max_ready: int = setting(0, integer(0, INT32_MAX),
                             "cap on this member's ready; 0 = the [heartbeat] max_ready")
    require_signature: bool = setting(False, boolean,
                                      "reject this member's unsigned heartbeats")
    max_conns: int = setting(0, integer(0, 1_000_000),
                             "most requests in flight to it at once; 0 = ready + busy from "
                             "its heartbeats")
    hcheck: HcheckSettings | None = setting(None, _hc_table,
                                            "any of the pool's hc* keys, for this member only "
                                            "(Apache's hc* are BalancerMember parameters)",
                                            "(the pool's)", key="hc*")

    @property
    def tier(self) -> int:
        """The pick order inside the pool: lbset first, standby after the others of its set."""
        return self.lbset * 2 + (1 if self.standby else 0)


# --- [[pool]]


@dataclass(frozen=True)
class PoolSettings:
    name: str = setting("", text_value, "the pool's name, used by routes", "(required)")
    members: tuple[PoolMemberSettings, ...] = setting(
        (), text_value, "addresses (\"IP:port\" strings), or [[pool.member]] tables",
        "(required unless discover)")
    discover: bool = setting(False, boolean,
                             "members found by [heartbeat] discover join this pool")
    stickysession: str = setting("", _sticky_names,
                                 "sticky sessions: \"COOKIE\" or \"COOKIE|urlparam\" (Apache "
                                 "stickysession=, e.g. \"JSESSIONID|jsessionid\"); \"\" = off",
                                 '""')
    stickysessionsep: str = setting(".", _separator,
                                    "the route is what follows this in the session value "
                                    "(\"off\": the whole value)", '"."')
    nofailover: bool = setting(False, boolean,
                               "a request whose sticky member is down gets 503 instead of "
                               "another member")
    sticky_cookie: str = setting("", _cookie_name,
                                 "cookie hbfork sets to the member's route when a request had "
                                 "no valid one (e.g. \"ROUTEID\"); also read as stickysession",
                                 '""')
    sticky_cookie_path: str = setting("/", _cookie_path, "Path of that cookie", '"/"')
    sticky_cookie_httponly: bool = setting(True, boolean, "HttpOnly on that cookie")
    sticky_cookie_secure: bool = setting(False, boolean, "Secure on that cookie")
    sticky_cookie_samesite: str = setting("", choice("", "Lax", "Strict", "None"),
                                          "SameSite of that cookie (\"\" = none sent)", '""')
    retry: float | None = setting(None, seconds(0, 3600, allow_zero=True),
                                  "seconds a member that refused a connect stays out "
                                  "(default: [proxy] retry)", "(from [proxy])")
    connect_timeout: float | None = setting(None, _optional_seconds,
                                            "seconds to connect to a member", "(from [http])")
    response_timeout: float | None = setting(None, _optional_seconds,
                                             "seconds to wait for a response head", "(from [http])")
    retries: int | None = setting(None, _optional_retries,
                                  "other members tried after a connect failure or a retry_on "
                                  "failure", "(from [http])")
    retry_on: tuple[str | int, ...] = setting(
        DEFAULT_RETRY_ON, parse_retry_on,
        "failures after which an idempotent request without a body goes to another member: "
        "\"reset\", \"empty-response\", \"malformed-response\", \"timeout\", statuses "
        "(502, \"500-599\"); a failed connect always does",
        '["reset", "empty-response", "malformed-response", "timeout"]')
    failonstatus: tuple[int, ...] = setting(
        DEFAULT_FAILONSTATUS, parse_statuses,
        "member answers that count as failures for [outlier] detection (Apache failonstatus)",
        "[500, 502, 503, 504]")
    weighting: str | None = setting(None, choice("corrected", "reported"),
                                    "this pool's [balance] weighting", "(from [balance])")
    pick: str | None = setting(None, choice("weighted", "p2c"), "this pool's [balance] pick",
                               "(from [balance])")
    queue_timeout: float | None = setting(None, seconds(0, 3600, allow_zero=True),
                                          "this pool's [balance] queue_timeout",
                                          "(from [balance])")
    queue_max: int | None = setting(None, integer(0, 1_000_000),
                                    "this pool's [balance] queue_max", "(from [balance])")
    queue_fresh_offset: float | None = setting(None, seconds(0, 3600, allow_zero=True),
                                               "this pool's [balance] queue_fresh_offset",
                                               "(from [balance])")
    upgrade: tuple[str, ...] = setting(DEFAULT_ALLOWED, _upgrades,
                                       "protocols a client's Upgrade may switch to through "
                                       "this pool (Apache upgrade=); \"*\" any; h2c never",
                                       '["websocket"]')
    tls: bool = setting(False, boolean, "talk TLS to this pool's members")
    tls_verify: bool = setting(True, boolean,
                               "check the members' certificates (against tls_ca)")
    tls_ca: str = setting("", text_value,
                          "PEM file of the CAs members' certificates must chain to "
                          "(default: the system's)", '""')
    tls_server_name: str = setting("", text_value,
                                   "the name sent as SNI and checked in the members' "
                                   "certificates (default: the member's IP)", '""')
    protocol: str = setting("http", choice("http", "ajp"),
                            "what the members speak: \"http\" or \"ajp\" (AJP/1.3, as "
                            "Apache's ajp:// members; Tomcat's AJP connector)", '"http"')
    ajp_secret: str = setting("", text_value,
                              "AJP: the shared secret sent with every request (Tomcat's "
                              "secret/requiredSecret, Apache's secret=)", '""')
    ajp_ping: float = setting(0.0, seconds(0, 60, allow_zero=True),
                              "AJP: seconds to wait for CPONG to the CPING sent before a pooled "
                              "connection is reused (Apache ping=); 0 = no CPING")
    ajp_packet_size: int = setting(8192, integer(8192, 65536),
                                   "AJP: packet size, as Tomcat's packetSize (Apache "
                                   "ProxyIOBufferSize)")
    proxy_protocol: str = setting("", choice("", "v1", "v2"),
                                  "send a PROXY protocol header (\"v1\" or \"v2\") first on "
                                  "every connection to a member; \"\" = off", '""')
    request_headers: tuple[Rule, ...] = request_setting("to this pool")
    response_headers: tuple[Rule, ...] = response_setting("from this pool")
    # The hc* keys (hbfork.core.hcheck), read beside the others; listed after them.
    hcheck: HcheckSettings = setting(NO_CHECK, _hc_table, "", key="hc*")

    def check_of(self, member: PoolMemberSettings | None) -> HcheckSettings:
        """The active check of `member` in this pool (its own hc* keys, else the pool's)."""
        return member.hcheck if member is not None and member.hcheck is not None \
            else self.hcheck

    @property
    def sticky_names(self) -> tuple[str, str]:
        """(cookie name, URL parameter name) to look for a route in; ("", "") = not sticky."""
        names = self.stickysession or self.sticky_cookie
        if not names:
            return "", ""
        cookie, _, param = names.partition("|")
        return cookie, param or cookie

    def member(self, address: Endpoint) -> PoolMemberSettings | None:
        for member in self.members:
            if member.address == address:
                return member
        return None


# --- [[route]]


def _hosts(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValueError("expected a host name, \"*.domain\", or a list of them")
    return tuple(normalize_host_pattern(text_value(item)) for item in items)


def _status(value: Any) -> int:
    return integer(200, 599)(value)


def _pair(value: Any) -> tuple[str, str]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str)
                                                                  for v in value)):
        raise ValueError("expected a pair of strings [\"from\", \"to\"]")
    return value[0], value[1]


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if value == []:
        return ()
    if isinstance(value, list) and all(isinstance(v, list) for v in value):
        return tuple(_pair(v) for v in value)
    return (_pair(value),)


@dataclass(frozen=True)
class RouteSettings:
    host: tuple[str, ...] = setting((), _hosts,
                                    "host name(s) this route serves: exact or \"*.domain\"; "
                                    "absent = any host", "(any host)")
    path: str = setting("", text_value,
                        "path prefix, matched segment by segment as ProxyPass does (\"/app\" "
                        "matches /app and /app/x, not /apple)", "(one of path, regex)")
    regex: str = setting("", text_value,
                         "instead of path: a regular expression on the path (ProxyPassMatch)",
                         "(one of path, regex)")
    pool: str = setting("", text_value, "the pool that serves it",
                        "(required unless pass = false)")
    rewrite: str | None = setting(None, text_value,
                                  "the member's path for the matched prefix (ProxyPass /app/ "
                                  "balancer://app/ is rewrite = \"/\"); with regex, a template "
                                  "with $1..$9", "(the path as it came)")
    strip_prefix: bool = setting(False, boolean,
                                 "send the rest of the path without the prefix (rewrite "
                                 "\"/\" or \"\")")
    passes: bool = setting(True, boolean,
                           "false: keep these requests out of the proxy (ProxyPass PATH !), "
                           "answered with `status`", key="pass")
    status: int = setting(404, _status, "the answer to requests a pass = false route keeps out")
    preserve_host: bool = setting(True, boolean,
                                  "send the client's Host (ProxyPreserveHost On); false: the "
                                  "member's address")
    reverse: bool = setting(False, boolean,
                            "rewrite Location, Content-Location and URI headers that point "
                            "at a member back to this route (ProxyPassReverse)")
    reverse_cookie_path: tuple[tuple[str, str], ...] = setting(
        (), _pairs, "[\"/member-path/\", \"/public-path/\"] for Set-Cookie paths "
                    "(ProxyPassReverseCookiePath)", "[]")
    reverse_cookie_domain: tuple[tuple[str, str], ...] = setting(
        (), _pairs, "[\"member.domain\", \"public.domain\"] for Set-Cookie domains "
                    "(ProxyPassReverseCookieDomain)", "[]")
    upgrade: tuple[str, ...] | None = setting(None, _optional_upgrades,
                                              "the pool's upgrade list for this route's "
                                              "requests (ProxyPass upgrade=)", "(the pool's)")
    name: str = setting("", text_value, "label for its counters", "(host and path)")
    request_headers: tuple[Rule, ...] = request_setting("on this route")
    response_headers: tuple[Rule, ...] = response_setting("on this route")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        hosts = ",".join(self.host) if self.host else "*"
        return f"{hosts}{self.path or '~' + self.regex}"


# --- host names


def normalize_host_pattern(pattern: str) -> str:
    """A route's host: "name.example.com" or "*.example.com", checked and normalised."""
    text = pattern.strip().lower()
    text = text[:-1] if text.endswith(".") else text
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    if name.startswith("[") and name.endswith("]") and not wildcard:
        return name  # an IPv6 literal
    labels = name.split(".")
    if not name or not all(HOST_LABEL.fullmatch(label) for label in labels):
        where = "a * is allowed only as the whole first label (\"*.example.com\")" \
            if "*" in text else "not a host name"
        raise ValueError(f"{pattern!r}: {where}")
    return text


# --- parsing the tables


def parse_member(item: Any, default_port: int) -> PoolMemberSettings:
    """One member of a pool: an "IP:port" string or a table; raises BadSetting."""
    table = {"address": item} if isinstance(item, str) else item
    if not isinstance(table, dict):
        raise BadSetting("member", "each member is an \"IP:port\" string or a table")
    if "address" not in table:
        raise BadSetting("address", "is required")
    try:
        address = parse_endpoint(text_value(table["address"]), default_port)
    except ValueError as err:
        raise BadSetting("address", str(err)) from None
    rest = {k: v for k, v in table.items() if k != "address"}
    return build(PoolMemberSettings, rest, address=address)
