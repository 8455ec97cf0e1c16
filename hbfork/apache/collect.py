"""Sort a walked Apache config into what a heartbeat front needs [pure].

`Collector().visit(directives)` makes one pass over the directives hbfork.apache_include
produced and keeps, with where each was written: the server-wide settings hbfork has once
(last one wins, as in Apache), every Listen, each <Proxy balancer://...> with its members and
ProxySet parameters, and the ProxyPass / ProxyPassReverse routes. Directives about proxying or
heartbeats that it cannot place become notes; everything else is only counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from hbfork.apache.conf import Directive, Note, key_values

RELATED_PREFIXES = ("proxy", "balancer", "heartbeat")
CORE_SETTINGS = frozenset({"timeout", "keepalivetimeout", "keepalive", "user", "group"})
# Related directives with no setting to translate to, but something else in hbfork instead.
REPLACED = {
    "proxystatus": "hbfork's status page ([status] listen) always shows every member",
    "proxyhcexpr": "health checks: a member that stops beating leaves after [heartbeat] max_age",
    "proxyhctemplate": "health checks: a member that stops beating leaves after "
                       "[heartbeat] max_age",
}


@dataclass
class Balancer:
    """A balancer://NAME: members and ProxySet parameters gathered from wherever they are."""

    name: str
    source: Directive
    members: list[Directive] = field(default_factory=list)
    params: list[tuple[str, str, Directive]] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    """A ProxyPass or ProxyPassReverse: path, target URL and its key=value parameters."""

    path: str
    target: str
    params: tuple[str, ...]
    directive: Directive


@dataclass(frozen=True)
class Context:
    """Where a directive sits: the same directive means different things in each place."""

    vhost: bool = False
    location: str | None = None
    balancer: str | None = None
    nested: str | None = None          # inside another section (<Directory>, <If>, ...)


class Collector:
    """One pass over the walked directives, sorting out what matters to a heartbeat front."""

    def __init__(self) -> None:
        self.server: dict[str, Directive] = {}      # last one wins, as in Apache
        self.listens: list[Directive] = []
        self.balancers: dict[str, Balancer] = {}
        self.routes: list[Route] = []
        self.reverse: list[Route] = []
        self.notes: list[Note] = []
        self.unrelated = 0

    def visit(self, directives: Sequence[Directive], ctx: Context | None = None) -> None:
        ctx = ctx or Context()
        for d in directives:
            if d.children is not None:
                self._section(d, ctx)
            else:
                handler = HANDLERS.get(d.key)
                handled = handler(self, d, ctx) if handler else False
                if not handled:
                    self._other(d, ctx)

    def _section(self, d: Directive, ctx: Context) -> None:
        first = d.args[0] if d.args else ""
        if d.key == "proxy" and first.lower().startswith("balancer://"):
            name = balancer_name(first)
            self.balancer(name, d)
            self.visit(d.children or (), replace(ctx, balancer=name))
        elif d.key == "virtualhost":
            self.visit(d.children or (), replace(ctx, vhost=True))
        elif d.key == "location":
            self.visit(d.children or (), replace(ctx, location=first))
        else:
            self.unrelated += 1
            self.visit(d.children or (), replace(ctx, nested=ctx.nested or d.text))

    def _other(self, d: Directive, ctx: Context) -> None:
        if d.key.startswith(RELATED_PREFIXES):
            self.notes.append(Note.of(d, REPLACED.get(d.key, "no hbfork equivalent")))
        else:
            self.unrelated += 1

    def balancer(self, name: str, d: Directive) -> Balancer:
        return self.balancers.setdefault(name, Balancer(name, d))

    # --- handlers: each returns False to treat the directive as "other"

    def on_server(self, d: Directive, ctx: Context) -> bool:
        """Settings hbfork has once: the server's, or a <VirtualHost>'s for proxy ones."""
        if ctx.vhost and d.key in CORE_SETTINGS:
            return False  # a vhost's own core timeouts: hbfork has one set, the server's
        if ctx.nested or ctx.location or ctx.balancer:
            self.notes.append(Note.of(d, "only server or <VirtualHost> values are translated"))
            return True
        earlier = self.server.get(d.key)
        if earlier is not None and earlier.args != d.args:
            self.notes.append(Note.of(earlier, f"overridden by {d.text} ({d.where}): hbfork "
                                               "has one value"))
        self.server[d.key] = d
        return True

    def on_listen(self, d: Directive, ctx: Context) -> bool:
        self.listens.append(d)
        return True

    def on_heartbeat_address(self, d: Directive, ctx: Context) -> bool:
        target = d.args[0] if d.args else "ADDR:PORT"
        self.notes.append(Note.of(d, "this server sends heartbeats (a backend, not a front); for "
                                     f"a backend that is not Apache: hbfork beat --to {target}"))
        return True

    def on_member(self, d: Directive, ctx: Context) -> bool:
        args = d.args
        if ctx.balancer is None and args and args[0].lower().startswith("balancer://"):
            ctx, args = replace(ctx, balancer=balancer_name(args[0])), args[1:]
        if ctx.balancer is None or not args:
            self.notes.append(Note.of(d, "not inside <Proxy balancer://...>"))
            return True
        self.balancer(ctx.balancer, d).members.append(replace(d, args=args))
        return True

    def on_proxyset(self, d: Directive, ctx: Context) -> bool:
        args = d.args
        if ctx.balancer is None and args and args[0].lower().startswith("balancer://"):
            ctx, args = replace(ctx, balancer=balancer_name(args[0])), args[1:]
        if ctx.balancer is None:
            self.notes.append(Note.of(d, "sets a single worker's parameters, not a balancer's"))
            return True
        balancer = self.balancer(ctx.balancer, d)
        balancer.params.extend((k, v, d) for k, v in key_values(args))
        return True

    def on_proxypass(self, d: Directive, ctx: Context) -> bool:
        args = list(d.args)
        if ctx.location is not None and args and not args[0].startswith("/"):
            args.insert(0, ctx.location)
        if ctx.nested or len(args) < 2:
            self.notes.append(Note.of(d, "only ProxyPass in the server, a <VirtualHost> or a "
                                         "<Location> is translated"))
            return True
        route = Route(args[0], args[1], tuple(args[2:]), d)
        (self.routes if d.key == "proxypass" else self.reverse).append(route)
        return True

    def on_sethandler(self, d: Directive, ctx: Context) -> bool:
        handler = (d.args[0] if d.args else "").lower()
        if handler == "balancer-manager":
            self.notes.append(Note.of(d, "hbfork's status page ([status] listen) and "
                                         "`hbfork ctl` take the balancer-manager's place"))
        elif handler == "heartbeat":
            self.notes.append(Note.of(d, "heartbeats by HTTP POST: hbfork takes them by UDP only"))
        else:
            return False
        return True


HANDLERS = {
    "listen": Collector.on_listen,
    "heartbeatlisten": Collector.on_server,
    "heartbeatmaxservers": Collector.on_server,
    "heartbeatstorage": Collector.on_server,
    "heartbeataddress": Collector.on_heartbeat_address,
    "balancermember": Collector.on_member,
    "proxyset": Collector.on_proxyset,
    "proxypass": Collector.on_proxypass,
    "proxypassreverse": Collector.on_proxypass,
    "proxytimeout": Collector.on_server,
    "proxyaddheaders": Collector.on_server,
    "proxypreservehost": Collector.on_server,
    "proxyrequests": Collector.on_server,
    "timeout": Collector.on_server,
    "keepalivetimeout": Collector.on_server,
    "keepalive": Collector.on_server,
    "user": Collector.on_server,
    "group": Collector.on_server,
    "sethandler": Collector.on_sethandler,
}


def balancer_name(url: str) -> str:
    return url.lower().removeprefix("balancer://").strip("/")

