"""Apache's Listen lines and its TLS front -> hbfork's listeners, certificates and [tls] [pure].

Apache gives a connection on a Listen port to the <VirtualHost>s of that port (the first one
is the default), or to the main server when there are none. So for each Listen:

* it is a TLS listener when that default server talks TLS (hbfork.apache.ssl.enabled); each
  TLS server on it brings its certificate as a [[certificate]] whose SNI `names` are its
  ServerName and ServerAlias (the default server's is the default, as Apache gives it to
  clients that send no name or one no vhost has), and the default server's
  Strict-Transport-Security header (hbfork.apache.https) becomes the listener's `hsts`;
* it is a plain listener with `redirect_https` when every server on it only redirects every
  request to https;
* else it is a plain listener whose servers' ProxyPass lines become routes.

hbfork has one [tls] for every listener: `min_version` is the strictest the TLS servers'
SSLProtocol lines allow (no name then accepts a version Apache refused it), the ciphers and
session tickets are the default TLS server's; every server that differs is noted. With any
TLS or redirecting listener, every listener is written as a [[listen]] block ([proxy] listen
has no default once one exists); else [proxy] listen as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hbfork.apache.certificates import TlsServers
from hbfork.apache.collect import Collector, Server, label, proxies
from hbfork.apache.conf import Directive, Note, Setting, TablePlan, undefined_note
from hbfork.apache.https import Hsts, HttpsRedirect, hsts_of, redirect_of, rewrite_on
from hbfork.apache.ssl import SslServer, enabled, ssl_of
from hbfork.apache.vhosts import address_port, has_passes, own_names
from hbfork.core.addresses import Endpoint, parse_endpoint


@dataclass
class Port:
    """One Listen and the servers Apache gives its connections (the default first)."""

    endpoint: Endpoint
    source: Directive
    https: bool                          # the Listen's protocol is https
    servers: list[Server] = field(default_factory=list)
    tls: bool = False
    redirect: HttpsRedirect | None = None
    block: TablePlan | None = None       # None: left out

    @property
    def label(self) -> str:
        return f"{self.source.text} ({self.source.where})"


@dataclass
class Front:
    """What the Listen lines and the TLS front make."""

    endpoints: list[Endpoint]            # every listener, in Listen order
    sources: list[Directive]             # the Listen line of each
    listens: list[TablePlan]             # [[listen]] blocks; [] when [proxy] listen does
    certificates: list[TablePlan]
    tls: list[Setting]
    route_ports: set[int]                # the ports whose servers' ProxyPass lines route
    redirect_ports: set[int]             # the ports that only redirect to https
    notes: list[Note]
    remarks: list[str]
    skipped: int                         # collected lines that needed nothing


def plan_front(collected: Collector, server_root: str) -> Front:
    """hbfork's listeners for the collected Listen lines and servers."""
    return _Planner(collected, server_root).plan()


class _Planner:
    def __init__(self, collected: Collector, server_root: str) -> None:
        self.collected = collected
        self.main = collected.servers[0]
        self.vhosts = collected.servers[1:]
        self.server_root = server_root
        self.notes: list[Note] = []
        self.remarks: list[str] = []
        self.ports: list[Port] = []
        self.tls_servers: list[Server] = []
        self.merged: dict[int, SslServer] = {}
        self.handled: set[int] = set()
        self.wildcards: list[Directive] = []   # Listen PORT: every address

    def plan(self) -> Front:
        for d in self.collected.listens:
            self._listen(d)
        for port in self.ports:
            self._decide(port)
        certificates, tls = self._tls_front()
        self._unused_https()
        kept = [p for p in self.ports if p.block is not None]
        options = any(p.tls or p.redirect for p in kept)
        self._wildcard_remarks(options)
        routed = {p.endpoint.port for p in kept if p.redirect is None}
        redirected = {p.endpoint.port for p in kept if p.redirect is not None}
        blocks = [p.block for p in kept if p.block is not None] if options else []
        self._untranslated_rewrites()
        return Front([p.endpoint for p in kept], [p.source for p in kept], blocks,
                     certificates, tls, routed, redirected, self.notes, self.remarks,
                     self._skipped())

    def _tls_front(self) -> tuple[list[TablePlan], list[Setting]]:
        """[[certificate]]s and [tls] from the servers that talk TLS (hbfork.apache.
        certificates)."""
        if not self.tls_servers:
            return [], []
        defaults = [(p.source, p.servers[0]) for p in self.ports if p.tls and p.block]
        servers = TlsServers(self.main, self.tls_servers, defaults, self.server_root, self.ssl)
        certificates, settings = servers.certificates(), servers.settings()
        servers.unused()
        self.notes += servers.notes
        self.remarks += servers.remarks
        self.handled |= servers.handled
        for port in self.ports:
            if port.tls and port.block and id(port.servers[0]) not in servers.certified:
                self.note(port.source, f"no certificate hbfork can use for "
                                       f"{label(port.servers[0])} (see its notes): this "
                                       "listener is left out")
                port.block = None
        if not any(p.tls and p.block for p in self.ports):
            return [], []
        return certificates, settings

    def note(self, d: Directive, reason: str, text: str = "") -> None:
        self.handled.add(id(d))
        self.notes.append(Note.of(d, reason, text))

    def ssl(self, server: Server) -> SslServer:
        if id(server) not in self.merged:
            self.merged[id(server)] = ssl_of(server, self.main)
        return self.merged[id(server)]

    # --- Listen lines

    def _listen(self, d: Directive) -> None:
        if not d.args:
            self.note(d, "no address")
            return
        protocol = d.args[1].lower() if len(d.args) > 1 else ""
        if protocol not in ("", "http", "https"):
            self.note(d, f"protocol {d.args[1]}: hbfork serves http and https")
            return
        note = undefined_note(d, d.args[0])
        if note is not None:
            self.handled.add(id(d))
            self.notes.append(note)
            return
        try:
            endpoint = parse_endpoint(self._every_address(d, d.args[0]))
        except ValueError as err:
            self.note(d, f"{err}")
            return
        if any(p.endpoint == endpoint for p in self.ports):
            return
        https = protocol == "https" or (not protocol and endpoint.port == 443)
        self.ports.append(Port(endpoint, d, https))

    def _every_address(self, d: Directive, text: str) -> str:
        """Apache's `Listen 80` and `Listen *:80` as hbfork's IPv4 wildcard."""
        if text.isdigit():
            self.wildcards.append(d)
            return f"0.0.0.0:{text}"
        return "0.0.0.0:" + text[2:] if text.startswith("*:") else text

    def _wildcard_remarks(self, options: bool) -> None:
        for d in self.wildcards:
            port = d.args[0]
            where = f'a [[listen]] with address = "[::]:{port}"' if options else \
                f'"[::]:{port}" to [proxy] listen'
            self.remarks.append(f"{d.text} ({d.where}) listens on every address; translated "
                                f"to 0.0.0.0:{port}; add {where} for IPv6 too.")

    # --- one listener

    def _servers(self, port: int) -> list[Server]:
        on = [v for v in self.vhosts
              if not v.addresses or any(address_port(a) in (None, port) for a in v.addresses)]
        return on or [self.main]

    def _tls(self, server: Server, port: Port) -> bool:
        return enabled(self.ssl(server), port.https and server is not self.main)

    def _decide(self, port: Port) -> None:
        port.servers = self._servers(port.endpoint.port)
        for server in port.servers:
            self._engine(server)
        default = port.servers[0]
        port.tls = self._tls(default, port)
        for server in port.servers[1:]:
            if self._tls(server, port) != port.tls and server.source is not None:
                kind = "plain HTTP" if port.tls else "TLS"
                self.note(server.source, f"Apache talks {kind} in this vhost, but the first "
                                         f"vhost of port {port.endpoint.port} decides for the "
                                         "whole listener in hbfork: "
                                         f"{'TLS' if port.tls else 'plain HTTP'}")
        port.block = TablePlan("listen", [port.label])
        port.block.set("address", str(port.endpoint))
        if port.tls:
            self._tls_port(port, default)
        else:
            self._plain_port(port)

    def _engine(self, server: Server) -> None:
        engine = self.ssl(server).get("sslengine")
        word = engine.args[0].lower() if engine and engine.args else "on"
        if engine is None or id(engine) in self.handled or word in ("on", "off"):
            return
        self.note(engine, "TLS only after an HTTP Upgrade (RFC 2817), which browsers never "
                          "send: hbfork serves plain HTTP here, as Apache does to them"
                  if word == "optional" else "Apache accepts On, Off or Optional")

    def _tls_port(self, port: Port, default: Server) -> None:
        if not self.ssl(default).certs:
            reason = (f"TLS on port {port.endpoint.port} with no SSLCertificateFile in "
                      f"{label(default)} (Apache refuses to start): this listener is left out")
            self.note(port.source, reason)
            port.block = None
            return
        engine = self.ssl(default).get("sslengine")
        said = f"{engine.text} ({engine.where})" if engine else \
            f"a certificate on an https port ({label(default)})"
        assert port.block is not None
        port.block.set("tls", True, f"{said}: TLS terminated here")
        for server in port.servers:
            if self._tls(server, port) and server not in self.tls_servers:
                self.tls_servers.append(server)
                engine = self.ssl(server).get("sslengine")
                if engine is not None:
                    self.handled.add(id(engine))
        self._hsts(port, default)

    def _hsts(self, port: Port, default: Server) -> None:
        found = hsts_of(default, self.main)
        for server in port.servers[1:]:
            other = hsts_of(server, self.main)
            if _hsts_key(other) == _hsts_key(found):
                if other is not None:
                    self.handled.add(id(other.source))
            elif self._tls(server, port):
                d = other.source if other else server.source
                assert d is not None
                self.note(d, f"hbfork has one HSTS header per listener: the first vhost's on "
                             f"port {port.endpoint.port} ({_hsts_text(found)}), not this "
                             f"vhost's ({_hsts_text(other)})")
        if found is None:
            return
        if found.problem:
            self.note(found.source, found.problem)
            return
        self.handled.add(id(found.source))
        assert port.block is not None
        port.block.set("hsts", found.max_age, f"{found.source.text} ({found.source.where})")
        if found.subdomains:
            port.block.set("hsts_subdomains", True, "its includeSubDomains")
        for caveat in found.caveats:
            self.note(found.source, caveat)

    def _plain_port(self, port: Port) -> None:
        if port.https:
            self.remarks.append(f"{port.label}: https, but no server there has TLS on (no "
                                "SSLEngine on, no certificate): plain HTTP, as Apache serves "
                                "it.")
        found = [redirect_of(s, self.main, port.endpoint.port) for s in port.servers]
        problem = self._redirect_problem(port, found)
        for redirect in found:
            if redirect is not None and (problem or redirect.problem):
                self.note(redirect.source, redirect.problem or problem)
        if problem or not all(found):
            return
        self._redirect(port, [r for r in found if r is not None])

    def _redirect_problem(self, port: Port, found: list[HttpsRedirect | None]) -> str:
        if not any(found):
            return ""
        for server, redirect in zip(port.servers, found, strict=True):
            # ProxyPass takes its paths before mod_alias redirects, after mod_rewrite's
            proxied = redirect is not None and (not redirect.rewrite or bool(redirect.names))
            why = "it has no redirect to https" if redirect is None else "it proxies" \
                if proxied and has_passes(server) else \
                "the main server's ProxyPass lines apply in it" \
                if proxied and has_passes(self.main) else ""
            if why:
                return (f"hbfork redirects a whole listener to https, and {label(server)} "
                        f"on port {port.endpoint.port} does not only redirect ({why})")
        if any(r and r.problem for r in found):
            return "another vhost on this port redirects in a way hbfork cannot"
        if len({r.port for r in found if r}) > 1:
            return f"the vhosts on port {port.endpoint.port} redirect to different ports"
        return ""

    def _redirect(self, port: Port, found: list[HttpsRedirect]) -> None:
        assert port.block is not None
        port.redirect = found[0]
        port.block.set("redirect_https", True, "; ".join(r.label for r in found))
        if found[0].port != 443:
            port.block.set("https_port", found[0].port, "the port the redirect names")
        for server, redirect in zip(port.servers, found, strict=True):
            self.handled.update(id(d) for d in redirect.sources)
            self._redirect_caveats(port, server, redirect)
            if has_passes(server) and server.source is not None:
                self.note(server.source, f"its ProxyPass lines are never used: {redirect.label} "
                                         "redirects every request before them (in Apache too)")

    def _redirect_caveats(self, port: Port, server: Server, redirect: HttpsRedirect) -> None:
        d = redirect.source
        if redirect.status != 301:
            self.note(d, f"hbfork's redirect_https answers 301, Apache answered "
                         f"{redirect.status}", f"the status of {d.text}")
        names = own_names(self.main, server)
        default = server is port.servers[0]
        if redirect.host is not None and (default or set(names) != {redirect.host}):
            self.note(d, f"Apache sent every request here to {redirect.host}; hbfork's "
                         "redirect_https keeps the host the client asked for",
                      f"the host of {d.text}")
        if redirect.names and (default or not set(names) <= set(redirect.names)):
            self.note(d, f"Apache redirected only {', '.join(redirect.names)} (its "
                         "RewriteCond); hbfork redirects every request on the listener",
                      f"the conditions of {d.text}")

    def _unused_https(self) -> None:
        """Redirects to https and HSTS headers nothing took: noted, but for the recipe's
        redirect in a TLS server (its `%{HTTPS} off` never holds there)."""
        tls = {id(s) for p in self.ports if p.tls and p.block for s in p.servers}
        for server in self.collected.servers:
            for d in server.hsts:
                if id(d) not in self.handled and id(server) not in tls:
                    self.note(d, "sent over plain HTTP, where browsers ignore it (RFC 6797): "
                                 "hbfork sends HSTS on TLS listeners only")
            found = redirect_of(server, self.main, None)
            if found is None:
                continue
            if id(server) in tls:
                self._tls_redirect(server, found)
            elif not all(id(d) in self.handled for d in found.sources) and \
                    id(found.source) not in self.handled:
                self.note(found.source, "hbfork redirects to https only on a plain listener "
                                        "whose vhosts all only redirect (redirect_https)")

    def _tls_redirect(self, server: Server, found: HttpsRedirect) -> None:
        """A redirect in force in a TLS server: the recipe's never fires there (`%{HTTPS}
        off`); any other would (Apache's main-server Redirect applies in every vhost)."""
        if found.plain_only:
            self.handled.update(id(d) for d in found.sources)
            return
        self.note(server.source or found.source,
                  f"{found.label} redirects in this TLS server too: hbfork redirects only on "
                  "plain listeners", f"{found.source.text} in {label(server)}")

    def _untranslated_rewrites(self) -> None:
        """Rewrites and redirects other than the redirect to https change what clients get:
        each one is listed, never counted among the lines that change nothing."""
        lines = [d for s in self.collected.servers
                 for d in (*s.redirects, *(s.rewrites if rewrite_on(s) else ()))
                 if d.key in ("rewriterule", "redirect", "redirectmatch", "redirectpermanent",
                              "redirecttemp")]
        for d in {id(d): d for d in lines}.values():
            if id(d) not in self.handled and not (d.key == "rewriterule" and proxies(d)):
                self.note(d, "hbfork translates only the redirect of plain HTTP to https; "
                             "other rewrites and redirects are not applied")

    def _skipped(self) -> int:
        lines = [d for s in self.collected.servers
                 for d in (*s.ssl, *s.hsts, *s.redirects, *s.rewrites)]
        return sum(1 for d in {id(d): d for d in lines}.values() if id(d) not in self.handled
                   and not (d.key == "rewriterule" and proxies(d)))


def _hsts_key(found: Hsts | None) -> tuple[int, bool] | None:
    return None if found is None or found.problem else (found.max_age, found.subdomains)


def _hsts_text(found: Hsts | None) -> str:
    key = _hsts_key(found)
    if key is None:
        return "none"
    return f"max-age={key[0]}" + ("; includeSubDomains" if key[1] else "")
