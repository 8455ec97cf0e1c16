"""Sort a walked Apache config into what a heartbeat front needs [pure].

`Collector().visit(directives)` makes one pass over the directives hbfork.apache.include
produced and keeps, with where each was written: the server-wide settings hbfork has once
(last one wins, as in Apache), every Listen, each <Proxy balancer://...> with its members and
ProxySet parameters, and per server (the main server, then each <VirtualHost>) its names and
the per-directory proxy settings of the server itself and of each <Location>: ProxyPass and
ProxyPassMatch, ProxyPassReverse, the cookie maps and ProxyPreserveHost. For TLS to clients
it keeps each server's mod_ssl directives, its Strict-Transport-Security headers, its redirects
to https:// and its mod_rewrite lines (hbfork.apache.listeners decides what they make).
Directives about proxying, heartbeats or TLS that it cannot place become notes; everything
else is only counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from hbfork.apache import headers
from hbfork.apache.collected import (  # re-exported: the pipeline's modules read them here
    Balancer,
    Block,
    Location,
    Pass,
    Reverse,
    Server,
    label,
)
from hbfork.apache.conf import Directive, Note, key_values
from hbfork.apache.logs import LogLine
from hbfork.apache.remoteip import KEYS as REMOTEIP_KEYS
from hbfork.apache.unhandled import reason_left_out

__all__ = ["HSTS", "Balancer", "Block", "Collector", "Context", "Location", "Pass", "Reverse",
           "Server", "balancer_name", "label", "proxies", "rewrite_flags"]

RELATED_PREFIXES = ("proxy", "balancer", "heartbeat")
REDIRECTS = frozenset({"redirect", "redirectpermanent", "redirecttemp", "redirectmatch"})
HSTS = "strict-transport-security"
# mod_ssl directives that only mean something per directory, and what hbfork has instead.
PER_DIRECTORY_SSL = {
    "ssloptions": "the SSL_* variables are for CGI, SSI and mod_rewrite; hbfork tells members "
                  "only X-Forwarded-Proto and X-Forwarded-Port",
    "sslrequiressl": "hbfork cannot require TLS per path (a plain listener with "
                     "redirect_https sends every request to https)",
    "sslrequire": "hbfork has no access rules on TLS variables",
}
CORE_SETTINGS = frozenset({"timeout", "keepalivetimeout", "keepalive", "user", "group"})
# Related directives with no setting to translate to, but something else in hbfork instead.
REPLACED = {
    "proxystatus": "hbfork's status page ([status] listen) always shows every member",
    "proxypassinherit": "hbfork's routes of the main server apply in every vhost (as "
                        "mod_proxy's ProxyPass list does)",
    "balancerinherit": "hbfork's pools are shared by every vhost",
}
PASS_FLAGS = frozenset({"nocanon", "interpolate", "noquery"})


@dataclass(frozen=True)
class Context:
    """Where a directive sits: the same directive means different things in each place."""

    server: int = 0                    # index in Collector.servers (0: the main server)
    location: Location | None = None
    balancer: str | None = None
    nested: str | None = None          # inside another section (<Directory>, <If>, ...)

    @property
    def vhost(self) -> bool:
        return self.server > 0


class Collector:
    """One pass over the walked directives, sorting out what matters to a heartbeat front."""

    def __init__(self) -> None:
        self.server: dict[str, Directive] = {}      # last one wins, as in Apache
        self.listens: list[Directive] = []
        self.balancers: dict[str, Balancer] = {}
        self.servers: list[Server] = [Server(None)]
        self.route_cookies: list[Directive] = []     # Header ... BALANCER_WORKER_ROUTE
        self.hc: list[Directive] = []                # ProxyHCExpr, ProxyHCTemplate
        self.remoteip: list[Directive] = []          # mod_remoteip's (hbfork.apache.remoteip)
        self.notes: list[Note] = []
        self.logs: list[LogLine] = []                 # LogFormat, CustomLog, TransferLog
        self.unrelated = 0

    def visit(self, directives: Sequence[Directive], ctx: Context | None = None) -> None:
        ctx = ctx or Context()
        for d in directives:
            if d.children is not None:
                self._section(d, ctx)
            else:
                handler = HANDLERS.get(d.key) or (Collector.on_ssl if d.key.startswith("ssl")
                                                  else None)
                handled = handler(self, d, ctx) if handler else False
                if not handled:
                    self._other(d, ctx)

    def _section(self, d: Directive, ctx: Context) -> None:
        first = d.args[0] if d.args else ""
        children = d.children or ()
        if d.key == "proxy" and first.lower().startswith("balancer://"):
            name = balancer_name(first)
            self.balancer(name, d)
            self.visit(children, replace(ctx, balancer=name))
        elif d.key == "virtualhost" and not ctx.vhost and not ctx.nested:
            self.servers.append(Server(d))
            self.visit(children, replace(ctx, server=len(self.servers) - 1))
        elif d.key in ("location", "locationmatch") and ctx.location is None \
                and not ctx.nested:
            regex = d.key == "locationmatch" or (first == "~" and len(d.args) > 1)
            path = d.args[-1] if d.args else ""
            location = Location(path, d, regex=regex)
            self.servers[ctx.server].locations.append(location)
            self.visit(children, replace(ctx, location=location))
        else:
            reason = reason_left_out(d.key, section=True)
            if reason is None:
                self.unrelated += 1
                self.visit(children, replace(ctx, nested=ctx.nested or d.text))
            else:
                self.notes.append(Note.of(d, reason))

    def _other(self, d: Directive, ctx: Context) -> None:
        if d.key.startswith(RELATED_PREFIXES):
            self.notes.append(Note.of(d, REPLACED.get(d.key, "no hbfork equivalent")))
        elif d.key == "rewriterule" and proxies(d):
            self.notes.append(Note.of(d, "a RewriteRule that proxies ([P]): write a [[route]] "
                                         "for it (path or regex, pool, rewrite)"))
        elif (reason := reason_left_out(d.key)) is not None and not _in_local_files(ctx):
            self.notes.append(Note.of(d, reason))
        else:
            self.unrelated += 1

    def balancer(self, name: str, d: Directive) -> Balancer:
        return self.balancers.setdefault(name, Balancer(name, d))

    def block(self, ctx: Context) -> Block:
        """The per-directory settings a directive in `ctx` belongs to."""
        if ctx.location is not None:
            return ctx.location.block
        return self.servers[ctx.server].block

    def _misplaced(self, d: Directive, ctx: Context) -> bool:
        """Proxy directives hbfork takes only in a server, a vhost or a <Location>."""
        if ctx.nested or ctx.balancer:
            self.notes.append(Note.of(d, "only in the server, a <VirtualHost> or a <Location> "
                                         f"is this translated (it is inside "
                                         f"{ctx.nested or '<Proxy balancer://...>'})"))
            return True
        return False

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

    def on_remoteip(self, d: Directive, ctx: Context) -> bool:
        self.remoteip.append(d)
        return True

    def on_log(self, d: Directive, ctx: Context) -> bool:
        """mod_log_config's lines of the server or a vhost (hbfork.apache.logs)."""
        if ctx.nested or ctx.location or ctx.balancer or \
                (d.key == "errorlog" and not (d.args and d.args[0].startswith("syslog"))):
            return False  # an error log file: the server's own business (skipped)
        self.logs.append(LogLine(d, ctx.vhost))
        return True

    def on_listen(self, d: Directive, ctx: Context) -> bool:
        self.listens.append(d)
        return True

    def on_hc(self, d: Directive, ctx: Context) -> bool:
        """mod_proxy_hcheck's named expressions and templates (hbfork.apache.hchecks)."""
        if self._server_level(d, ctx, "only server-wide ones are translated"):
            self.hc.append(d)
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
        if self._misplaced(d, ctx):
            return True
        args, regex = list(d.args), d.key == "proxypassmatch"
        if args and args[0] == "~":  # ProxyPass ~ REGEX URL is ProxyPassMatch
            regex, args = True, args[1:]
        location = ctx.location
        if location is not None and not self._location_path(d, location, args, regex):
            return True
        if len(args) < 2:
            self.notes.append(Note.of(d, "needs a path and a URL"))
            return True
        step = Pass(args[0], args[1], tuple(args[2:]), d, regex,
                    location.path if location is not None else None)
        if step.target.lower().startswith("balancer://"):
            # key=value on a ProxyPass to a balancer set the balancer's parameters, as ProxySet
            balancer = self.balancer(balancer_name(step.target), d)
            balancer.params.extend((k, v, d) for k, v in key_values(
                p for p in step.params if "=" in p and not p.lower().startswith("mapping=")))
        if location is None:
            self.block(ctx).passes.append(step)
            return True
        for earlier in location.block.passes:  # one ProxyPass per <Location>: the last
            self.notes.append(Note.of(earlier.directive, f"replaced by {d.text} ({d.where}) "
                                                         "in the same <Location>"))
        location.block.passes[:] = [step]
        return True

    def _location_path(self, d: Directive, location: Location, args: list[str],
                       regex: bool) -> bool:
        """A ProxyPass in a <Location> takes the Location's path (put first in `args`)."""
        if regex or location.regex:
            self.notes.append(Note.of(d, "ProxyPass with a regular expression in a <Location>: "
                                         "write it as ProxyPassMatch in the server or vhost"))
            return False
        if args and args[0].startswith("/"):
            self.notes.append(Note.of(d, "a ProxyPass in a <Location> takes no path (Apache "
                                         "refuses this)"))
            return False
        args.insert(0, location.path)
        return True

    def on_reverse(self, d: Directive, ctx: Context) -> bool:
        if self._misplaced(d, ctx):
            return True
        args = [a for a in d.args if a.lower() != "interpolate"]
        if ctx.location is not None:
            if ctx.location.regex:
                self.notes.append(Note.of(d, "in a <LocationMatch>: hbfork needs a path"))
                return True
            args.insert(0, ctx.location.path)
        if len(args) != 2:
            self.notes.append(Note.of(d, "needs a path and a URL"))
            return True
        self.block(ctx).reverse.append(Reverse(args[0], args[1], d))
        return True

    def on_cookie_map(self, d: Directive, ctx: Context) -> bool:
        if self._misplaced(d, ctx):
            return True
        args = [a for a in d.args if a.lower() != "interpolate"]
        if len(args) != 2:
            self.notes.append(Note.of(d, "needs two values: the member's and the front's"))
            return True
        block = self.block(ctx)
        maps = block.cookie_paths if d.key.endswith("path") else block.cookie_domains
        maps.append((args[0], args[1], d))
        return True

    def on_preserve_host(self, d: Directive, ctx: Context) -> bool:
        if not self._misplaced(d, ctx):
            self.block(ctx).preserve_host = d
        return True

    def on_server_name(self, d: Directive, ctx: Context) -> bool:
        if ctx.nested or ctx.location or ctx.balancer:
            return False
        names = self.servers[ctx.server].names
        if d.key == "servername":
            names[:] = [(n, s) for n, s in names if s.key != "servername"]
            names.insert(0, (d.args[0], d) if d.args else ("", d))
        else:
            names.extend((name, d) for name in d.args)
        return True

    def on_header(self, d: Directive, ctx: Context) -> bool:
        """Apache's recipe for a route cookie sets it with mod_headers; a server's
        Strict-Transport-Security header is kept for its TLS listener; the other Header and
        RequestHeader lines become header rules (hbfork.apache.headers)."""
        if d.key == "requestheader":
            return headers.collect(d, ctx, self.block(ctx), self.notes)
        if any(a.lower() == HSTS for a in d.args):
            if self._server_level(d, ctx, "only a server's or <VirtualHost>'s header becomes "
                                          "[[listen]] hsts"):
                self.servers[ctx.server].hsts.append(d)
            return True
        if "BALANCER_WORKER_ROUTE" not in d.raw or not any(a.lower() == "set-cookie"
                                                           for a in d.args):
            return headers.collect(d, ctx, self.block(ctx), self.notes)
        self.route_cookies.append(d)
        return True

    def _server_level(self, d: Directive, ctx: Context, reason: str) -> bool:
        """True in a server or <VirtualHost> itself; else notes `reason` and says False."""
        if ctx.nested or ctx.location or ctx.balancer:
            where = ctx.nested or (ctx.location.directive.text if ctx.location else
                                   "<Proxy balancer://...>")
            self.notes.append(Note.of(d, f"{reason} (it is inside {where})"))
            return False
        return True

    def on_ssl(self, d: Directive, ctx: Context) -> bool:
        """mod_ssl: a server's directives are kept; per-directory ones are noted."""
        if d.key == "sslproxyengine":
            return True  # https:// members make a TLS pool by themselves
        if d.key.startswith("sslproxy"):
            self.notes.append(Note.of(d, "TLS to members: hbfork has tls_verify, tls_ca and "
                                         "tls_server_name per pool"))
            return True
        if d.key in PER_DIRECTORY_SSL and (ctx.nested or ctx.location):
            self.notes.append(Note.of(d, PER_DIRECTORY_SSL[d.key]))
        elif self._server_level(d, ctx, "hbfork's TLS settings are per listener, not per "
                                        "directory"):
            self.servers[ctx.server].ssl.append(d)
        return True

    def on_redirect(self, d: Directive, ctx: Context) -> bool:
        """A redirect to https:// may be a plain listener's redirect_https."""
        if not any(a.lower().startswith("https://") for a in d.args):
            return False
        if self._server_level(d, ctx, "only a server's or <VirtualHost>'s redirect to https "
                                      "becomes [[listen]] redirect_https"):
            self.servers[ctx.server].redirects.append(d)
        return True

    def on_rewrite(self, d: Directive, ctx: Context) -> bool:
        """A server's mod_rewrite lines (their own: Apache does not pass them on to vhosts)."""
        if ctx.nested or ctx.location or ctx.balancer:
            return False
        self.servers[ctx.server].rewrites.append(d)
        if d.key == "rewriterule" and proxies(d):
            self._other(d, ctx)
        return True

    def on_sethandler(self, d: Directive, ctx: Context) -> bool:
        handler = (d.args[0] if d.args else "").lower()
        if handler == "balancer-manager":
            self.notes.append(Note.of(d, "hbfork's status page ([status] listen) and "
                                         "`hbfork ctl` take the balancer-manager's place"))
        elif handler == "heartbeat" and ctx.location is not None and not ctx.location.regex:
            ctx.location.heartbeat = d  # [heartbeat] http_path (hbfork.apache.beats)
        elif handler == "heartbeat":
            self.notes.append(Note.of(d, "hbfork takes heartbeats by POST on one <Location "
                                         "PATH> ([heartbeat] http_path), not here"))
        else:
            return False
        return True

    def on_require(self, d: Directive, ctx: Context) -> bool:
        """A <Location>'s own Require lines: its allow-list if it takes heartbeats, else
        noted as any other access rule (hbfork.apache.beats decides)."""
        if ctx.location is None or ctx.nested:
            return False
        ctx.location.requires.append(d)
        return True


HANDLERS = {
    "listen": Collector.on_listen,
    "heartbeatlisten": Collector.on_server,
    "heartbeatmaxservers": Collector.on_server,
    "heartbeatstorage": Collector.on_server,
    "heartbeataddress": Collector.on_heartbeat_address,
    "balancermember": Collector.on_member,
    "proxyhcexpr": Collector.on_hc,
    "proxyhctemplate": Collector.on_hc,
    "proxyset": Collector.on_proxyset,
    "proxypass": Collector.on_proxypass,
    "proxypassmatch": Collector.on_proxypass,
    "proxypassreverse": Collector.on_reverse,
    "proxypassreversecookiepath": Collector.on_cookie_map,
    "proxypassreversecookiedomain": Collector.on_cookie_map,
    "proxypreservehost": Collector.on_preserve_host,
    "proxytimeout": Collector.on_server,
    "proxyaddheaders": Collector.on_server,
    "proxyrequests": Collector.on_server,
    "sslproxyverify": Collector.on_server,
    "proxyiobuffersize": Collector.on_server,
    "sslproxycacertificatefile": Collector.on_server,
    "servername": Collector.on_server_name,
    "serveralias": Collector.on_server_name,
    "header": Collector.on_header,
    "requestheader": Collector.on_header,
    "timeout": Collector.on_server,
    "keepalivetimeout": Collector.on_server,
    "keepalive": Collector.on_server,
    "user": Collector.on_server,
    "group": Collector.on_server,
    "sethandler": Collector.on_sethandler,
    **dict.fromkeys(REMOTEIP_KEYS, Collector.on_remoteip),
    **dict.fromkeys(("logformat", "customlog", "transferlog", "errorlog"), Collector.on_log),
    "require": Collector.on_require,
    **dict.fromkeys(REDIRECTS, Collector.on_redirect),
    **dict.fromkeys(("rewriteengine", "rewritecond", "rewriterule", "rewriteoptions",
                     "rewritebase", "rewritemap"), Collector.on_rewrite),
}


def _in_local_files(ctx: Context) -> bool:
    """Inside <Directory> or <Files>: rules for files Apache serves itself, which reach no
    client through the proxy (Debian's `<Directory /> Require all denied`, say)."""
    return (ctx.nested or "").lower().lstrip("<").startswith(("directory", "files"))


def balancer_name(url: str) -> str:
    """balancer://Name/path -> "name" (Apache compares balancer names case-insensitively)."""
    return url.lower().removeprefix("balancer://").split("/", 1)[0]


def rewrite_flags(d: Directive) -> list[str]:
    """The [flags] of a RewriteRule or RewriteCond, upper-cased ([] without any)."""
    if len(d.args) < 3 or not d.args[-1].startswith("["):
        return []
    return [f.strip().upper() for f in d.args[-1].strip("[]").split(",") if f.strip()]


def proxies(d: Directive) -> bool:
    """A RewriteRule whose [flags] include P (proxy)."""
    return any(f in ("P", "PROXY") for f in rewrite_flags(d))
