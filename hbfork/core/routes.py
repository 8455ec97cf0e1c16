"""The route table: which pool serves a request, compiled once per config. Pure.

Match rule (Apache's for ProxyPass): the routes whose host matches the request's are tried in
file order and the first whose path matches wins; so exclusions (`pass = false`) go before the
routes they carve out, and longer prefixes before shorter ones. A prefix matches segment by
segment (`/app` matches `/app` and `/app/x`, not `/apple`; `/app/` does not match `/app`); a
regex is searched in the path (ProxyPassMatch). Hosts compare case-insensitively without port
or trailing dot; `*.example.com` matches any name ending in `.example.com`; a route without host
serves every host.

Lookups do not scan the table: the routes that can apply to a host are listed per host at
compile time (exact names in a dict, wildcards by suffix, the rest for any other host), and a
long list is bucketed by the path's first segment. Results per host are cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hbfork.core.pool_settings import RouteSettings

BUCKET_FROM = 8      # routes for one host before they are bucketed by first segment
HOST_CACHE = 4096    # distinct Host values remembered
_REF = re.compile(r"\\(.)|\$([0-9])|&")


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """One compiled route; `index` is its place in the file (0-based)."""
    index: int
    settings: RouteSettings
    prefix: str                       # "" for a regex route
    regex: re.Pattern[str] | None
    rewrite: str | None               # the member-side prefix or template; None: unchanged
    first: str | None                 # first path segment of the prefix; None: any

    @property
    def pool(self) -> str:
        return self.settings.pool

    @property
    def passes(self) -> bool:
        return self.settings.passes

    @property
    def label(self) -> str:
        return self.settings.label

    def match(self, path: str) -> re.Match[str] | bool | None:
        """Truthy when `path` (match form) is this route's."""
        if self.regex is not None:
            return self.regex.search(path)
        return prefix_match(path, self.prefix)

    def member_path(self, path: str, match: re.Match[str] | bool | None) -> str:
        """The path the member is sent for `path` (normal form) once this route matched."""
        if self.rewrite is None:
            return path
        if self.regex is not None:
            assert isinstance(match, re.Match)
            return substitute(self.rewrite, match, path)
        rest = path[len(self.prefix):] if path.startswith(self.prefix) else \
            _rest_after(path, self.prefix)
        return (self.rewrite + rest) or "/"


def prefix_match(path: str, prefix: str) -> bool:
    """Apache's alias_match on slash-merged paths: the last segment of the prefix must be whole."""
    if not path.startswith(prefix):
        return False
    return prefix.endswith("/") or len(path) == len(prefix) or path[len(prefix)] == "/"


def _rest_after(path: str, prefix: str) -> str:
    """The part of `path` after `prefix` when the match form was shorter (path parameters)."""
    depth = prefix.count("/") + (0 if prefix.endswith("/") else 1)
    parts = path.split("/")
    kept = parts[depth:]
    return ("/" if not prefix.endswith("/") and kept else "") + "/".join(kept)


def substitute(template: str, match: re.Match[str], path: str) -> str:
    """ap_pregsub: $0-$9 and & are groups, \\x is x. A template with no group in it gets the
    whole path appended, as Apache does (`ProxyPassMatch \\.gif$ balancer://x/` sends /x/...)."""
    used = False

    def group(ref: re.Match[str]) -> str:
        nonlocal used
        if ref.group(1) is not None:
            return ref.group(1)
        used = True
        number = 0 if ref.group(2) is None else int(ref.group(2))
        try:
            return match.group(number) or ""
        except IndexError:
            return ""

    out = _REF.sub(group, template)
    return out if used else out + path


def first_segment(path: str) -> str:
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


@dataclass
class RouteTable:
    routes: tuple[Route, ...]
    exact: dict[str, HostRoutes] = field(default_factory=dict)
    wildcard: dict[str, HostRoutes] = field(default_factory=dict)   # ".example.com" -> ...
    anyhost: HostRoutes | None = None
    _cache: dict[str, HostRoutes] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.routes

    def lookup(self, host: str, path: str) -> tuple[Route, re.Match[str] | bool] | None:
        """The first route for (normalised host, match-form path), and its match; None when no
        route matches."""
        candidates = self._cache.get(host)
        if candidates is None:
            candidates = self.for_host(host)
            if len(self._cache) >= HOST_CACHE:
                self._cache.clear()
            self._cache[host] = candidates
        return candidates.first(path)

    def for_host(self, host: str) -> HostRoutes:
        """The routes that can serve a normalised host, in file order."""
        found = self.exact.get(host)
        if found is not None:
            return found
        dot = host.find(".")
        while dot >= 0:
            found = self.wildcard.get(host[dot:])
            if found is not None:
                return found
            dot = host.find(".", dot + 1)
        assert self.anyhost is not None
        return self.anyhost


class HostRoutes:
    """The routes that apply to one host, in file order; bucketed when there are many."""

    __slots__ = ("buckets", "loose", "routes")

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self.buckets: dict[str, list[Route]] | None = None
        self.loose: list[Route] = []
        if len(routes) > BUCKET_FROM:
            self.loose = [r for r in routes if r.first is None]
            self.buckets = {}
            for name in {r.first for r in routes if r.first is not None}:
                self.buckets[name] = [r for r in routes if r.first in (name, None)]

    def first(self, path: str) -> tuple[Route, re.Match[str] | bool] | None:
        routes = self.routes
        if self.buckets is not None:
            routes = self.buckets.get(first_segment(path), self.loose)
        for route in routes:
            prefix = route.prefix
            if prefix:  # prefix_match, inlined: this loop runs for every request
                if path.startswith(prefix) and (prefix[-1] == "/" or len(path) == len(prefix)
                                                or path[len(prefix)] == "/"):
                    return route, True
            else:
                assert route.regex is not None
                match = route.regex.search(path)
                if match:
                    return route, match
        return None


# --- compiling


def compile_routes(settings: tuple[RouteSettings, ...]) -> RouteTable:
    routes = tuple(_compile(index, s) for index, s in enumerate(settings))
    table = RouteTable(routes)
    exact_names = {h for r in routes for h in r.settings.host if not h.startswith("*.")}
    suffixes = {h[1:] for r in routes for h in r.settings.host if h.startswith("*.")}
    for name in exact_names:
        table.exact[name] = HostRoutes([r for r in routes if _serves(r, name, None)])
    for suffix in suffixes:
        table.wildcard[suffix] = HostRoutes([r for r in routes if _serves(r, None, suffix)])
    table.anyhost = HostRoutes([r for r in routes if not r.settings.host])
    return table


def _compile(index: int, settings: RouteSettings) -> Route:
    prefix = re.sub(r"//+", "/", settings.path) if settings.path else ""
    regex = re.compile(settings.regex) if settings.regex else None
    rewrite = settings.rewrite
    if settings.strip_prefix:
        rewrite = "/" if prefix.endswith("/") else ""
    first = first_segment(prefix) if prefix and prefix != "/" else None
    return Route(index, settings, prefix, regex, rewrite, first or None)


def _serves(route: Route, name: str | None, suffix: str | None) -> bool:
    """Does `route` apply to the host `name`, or to every host ending in `suffix`?"""
    hosts = route.settings.host
    if not hosts:
        return True
    for host in hosts:
        if host.startswith("*."):
            if name is not None and name.endswith(host[1:]):
                return True
            if suffix is not None and suffix.endswith(host[1:]):
                return True
        elif name is not None and host == name:
            return True
    return False


# --- for `hbfork check`


def shadowed(table: RouteTable) -> list[tuple[Route, Route]]:
    """(route, earlier route) pairs where the earlier one takes every request the later one
    could match, so the later one never matches."""
    out = []
    for later in table.routes:
        for earlier in table.routes[:later.index]:
            if _covers(earlier, later):
                out.append((later, earlier))
                break
    return out


def _covers(earlier: Route, later: Route) -> bool:
    if earlier.regex is not None:
        return earlier.settings.regex == later.settings.regex and _hosts_cover(earlier, later)
    if later.regex is not None:
        return earlier.prefix == "/" and _hosts_cover(earlier, later)
    return prefix_match(later.prefix, earlier.prefix) and _hosts_cover(earlier, later)


def _hosts_cover(earlier: Route, later: Route) -> bool:
    if not earlier.settings.host:
        return True
    if not later.settings.host:
        return False
    return all(_serves(earlier, h, None) if not h.startswith("*.") else
               _serves(earlier, None, h[1:]) for h in later.settings.host)


def describe(table: RouteTable) -> list[str]:
    """The compiled route table as `hbfork check` prints it (like `apachectl -S`)."""
    lines = ["routes (the first that matches wins, in this order):"]
    for route in table.routes:
        s = route.settings
        hosts = ", ".join(s.host) if s.host else "*"
        what = route.prefix or f"~ {s.regex}"
        if not s.passes:
            goes = f"answered {s.status} (kept out of the proxy)"
        else:
            goes = f"pool {s.pool}"
            if route.rewrite is not None:
                goes += f", member path {route.rewrite or '(empty)'}"
            if not s.preserve_host:
                goes += ", Host: the member's"
            if s.reverse:
                goes += ", reverse-mapped"
        lines.append(f"  #{route.index + 1:<3} {hosts:<28} {what:<24} -> {goes}")
    lines.append("  (no route matches: 404)")
    for later, earlier in shadowed(table):
        lines.append(f"warning: route #{later.index + 1} ({later.label}) can never match: "
                     f"route #{earlier.index + 1} ({earlier.label}) takes all its requests")
    return lines
