"""Routing one HTTP request: which pool, which path the member is sent, which member its sticky
session names, and how the response's member URLs map back. Built once per worker from the
config; pure apart from the picker it asks for sticky members.

Without [[route]] entries every request goes to the default pool with its target untouched (as
before pools existed). With routes, the target is normalised once (hbfork.core.uri) and the
same normal form is matched and forwarded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hbfork.core import beat_post
from hbfork.core.config import Config
from hbfork.core.errors import ProtocolError
from hbfork.core.http11 import RequestHead
from hbfork.core.http_upgrade import allowed_upgrade, parse_allowed
from hbfork.core.lean import field_values
from hbfork.core.reverse import ReverseMap, build_map
from hbfork.core.routes import HOST_CACHE, HostRoutes, Route, compile_routes
from hbfork.core.sticky import find_route, route_cookie
from hbfork.core.uri import normalize_host, parse_target
from hbfork.proxy.http.fast_plan import FastPlans
from hbfork.proxy.http.headers import EdgeHeaders
from hbfork.proxy.upstreams import PoolView, Target, Upstreams

DECISION_CACHE = 8192  # (Host, target) pairs whose routing is remembered


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one request goes. `pool` None: answered by the proxy with `status`. Shared by
    every request with the same Host and target: never changed once made."""
    pool: PoolView | None
    target: bytes                 # the request-target the member is sent (b"": as it came)
    route: Route | None = None
    status: int = 0
    detail: str = ""
    preserve_host: bool = True
    reverse: ReverseMap | None = None
    beat: bool = False            # [heartbeat] http_path (hbfork.proxy.http.heartbeat_post)
    fast: bool = field(default=False, init=False)  # may take the fast path (proxy.http.fast)
    ajp: bool = field(default=False, init=False)  # its members speak AJP (proxy.http.ajp_fast)

    def __post_init__(self) -> None:
        # A pool that sets route cookies (sticky_cookie) answers with a rewritten head: its
        # requests take the general path. Sticky pools take the fast path when the session's
        # member can take the request at once (proxy.http.fast).
        pool = self.pool
        # A pool that sends PROXY headers takes no pooled connection (hbfork.proxy.proxy_header).
        object.__setattr__(self, "fast", pool is not None and not pool.settings.sticky_cookie
                           and not pool.settings.proxy_protocol)
        object.__setattr__(self, "ajp", pool is not None and pool.settings.protocol == "ajp")


class Router:
    def __init__(self, config: Config, upstreams: Upstreams) -> None:
        self.upstreams = upstreams
        self.table = compile_routes(config.routes)
        self.routed = not self.table.empty
        self.default = upstreams.default
        self._hosts: dict[bytes, HostRoutes] = {}   # Host header as sent -> its routes
        self._decided: dict[tuple[bytes, bytes], Decision] = {}
        self._default = Decision(self.default, b"")
        hb = config.heartbeat
        self.beat_path = hb.http_path.encode() if hb.http_path else None
        self.beat_listens = frozenset(hb.http_listen)  # empty: every listener
        self.beat_allow = hb.allow
        self.beat = Decision(None, b"", status=405, beat=True)
        self.reverse: dict[int, ReverseMap] = {}
        self.edge = EdgeHeaders(config)  # header rules and request IDs
        self.fast_plans = FastPlans(self.edge)  # what the fast path needs per Decision
        for route in self.table.routes:
            s = route.settings
            if s.passes and (s.reverse or s.reverse_cookie_path or s.reverse_cookie_domain):
                members = [m.address for m in config.pool(s.pool).members] if s.reverse else []
                member_prefix = route.rewrite if route.rewrite is not None else route.prefix
                pool = config.pool(s.pool)
                self.reverse[route.index] = build_map(
                    members, member_prefix, route.prefix, s.reverse_cookie_path,
                    s.reverse_cookie_domain, "https" if pool.tls else "http")

    def upgrade_for(self, decision: Decision, offered: bytes) -> bytes:
        """The part of a request's Upgrade that may reach the member: the route's or else the
        pool's allow-list (never h2c). b"": the request goes on without an upgrade."""
        assert decision.pool is not None
        route = decision.route
        if route is not None and route.settings.upgrade is not None:
            return allowed_upgrade(offered, parse_allowed(route.settings.upgrade))
        return allowed_upgrade(offered, decision.pool.upgrades)

    def decide(self, request: RequestHead, beats: bool = True) -> Decision:
        """Where `request` goes (the same Decision object for the same Host and target: they
        are cached). Raises ProtocolError for a target or Host that cannot be routed safely.
        `beats`: a target under [heartbeat] http_path gets self.beat (the fast path hands it
        to the general path, which takes the beat if its listener does)."""
        return self.decide_for(request.host, request.target, beats)

    def decide_for(self, host: bytes, target: bytes, beats: bool = True) -> Decision:
        """decide() for a request's Host and request-target."""
        path = self.beat_path
        if path is not None and beats and target.startswith(path) and \
                beat_post.matches(target, path):
            return self.beat
        if not self.routed:
            return self._default
        key = (host, target)
        decision = self._decided.get(key)
        if decision is None:
            decision = self._route(host, target)
            if len(self._decided) >= DECISION_CACHE:
                self._decided.clear()
            self._decided[key] = decision
        return decision

    def _route(self, host: bytes, raw_target: bytes) -> Decision:
        target = parse_target(raw_target)
        if target.authority is not None:
            if host and normalize_host(host.decode("latin-1")) != \
                    normalize_host(target.authority):
                raise ProtocolError(400, "the request target's host is not the Host header")
            host = target.authority.encode("latin-1")
        candidates = self._hosts.get(host)
        if candidates is None:
            candidates = self.table.for_host(normalize_host(host.decode("latin-1")))
            if len(self._hosts) >= HOST_CACHE:
                self._hosts.clear()
            self._hosts[host] = candidates
        found = candidates.first(target.match)
        if found is None:
            return Decision(None, b"", status=404, detail="no route for this host and path")
        route, match = found
        if not route.passes:
            return Decision(None, b"", route=route, status=route.settings.status,
                            detail="this path is not served here")
        member_target = (route.member_path(target.path, match) + target.query).encode(
            "latin-1")
        return Decision(self.upstreams.pools[route.pool], member_target, route,
                        preserve_host=route.settings.preserve_host,
                        reverse=self.reverse.get(route.index))

    def sticky_route(self, decision: Decision, request: RequestHead) -> str | None:
        """The route the request's session names, if its pool is sticky."""
        pool = decision.pool
        if pool is None or not pool.sticky:
            return None
        return self._sticky_route(pool, [value for _, lower, value in request.headers
                                         if lower == b"cookie"],
                                  decision.target or request.target)

    def sticky_route_lean(self, decision: Decision, head: bytes, target: bytes) -> str | None:
        """sticky_route() for a lean request: its Cookie fields read from the head as sent."""
        pool = decision.pool
        assert pool is not None and pool.sticky
        return self._sticky_route(pool, field_values(head, b"cookie"),
                                  decision.target or target)

    @staticmethod
    def _sticky_route(pool: PoolView, cookie_fields: list[bytes], url: bytes) -> str | None:
        # Decode only what can hold the names (most requests carry other cookies too).
        param, cookie = pool.param_bytes, pool.cookie_bytes
        text = url.decode("latin-1") if param and param in url else ""
        cookies = [value.decode("latin-1") for value in cookie_fields if cookie in value]
        if not text and not cookies:
            return None
        return find_route(text, cookies, pool.cookie_name, pool.param_name, pool.separator)

    def route_cookie_for(self, pool: PoolView, target: Target,
                         asked: str | None) -> bytes | None:
        """Set-Cookie for a pool with `sticky_cookie`, when the request did not already name
        the member that serves it."""
        settings = pool.settings
        if not settings.sticky_cookie:
            return None
        route = self.upstreams.route_of(pool, target)
        if not route or route == asked:
            return None
        return route_cookie(settings.sticky_cookie, route, settings.stickysessionsep,
                            settings.sticky_cookie_path, settings.sticky_cookie_httponly,
                            settings.sticky_cookie_secure, settings.sticky_cookie_samesite)


def https_location(request: RequestHead, https_port: int) -> str:
    """Where a plain listener with redirect_https sends a request: the same host and target
    over TLS (301)."""
    if not request.host:
        raise ProtocolError(400, "a Host header is needed to redirect to https")
    host = normalize_host(request.host.decode("latin-1"))
    authority = host if https_port == 443 else f"{host}:{https_port}"
    target = request.target.decode("latin-1")
    if not target.startswith("/"):
        target = "/" + target.split("/", 3)[-1] if target.count("/") >= 3 else "/"
    return f"https://{authority}{target}"
