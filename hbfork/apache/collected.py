"""What import-apache collects from a walked Apache config, as data [pure]: balancers, ProxyPass
lines, ProxyPassReverse maps, per-directory blocks, <Location>s and servers (the main server and
each <VirtualHost>). hbfork.apache.collect fills them in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hbfork.apache.conf import Directive


@dataclass
class Balancer:
    """A balancer://NAME: members and ProxySet parameters gathered from wherever they are."""

    name: str
    source: Directive
    members: list[Directive] = field(default_factory=list)
    params: list[tuple[str, str, Directive]] = field(default_factory=list)


@dataclass(frozen=True)
class Pass:
    """A ProxyPass or ProxyPassMatch: path (or regex), target URL ("!" to exclude), the
    key=value parameters and flags after it."""

    path: str
    target: str
    params: tuple[str, ...]
    directive: Directive
    regex: bool = False
    location: str | None = None        # the <Location> it is in (its path is `path`)

    @property
    def excluded(self) -> bool:
        return self.target == "!"

    @property
    def label(self) -> str:
        """The directive as written, with its <Location> when it has one."""
        text = self.directive.text
        return f"<Location {self.location}> {text}" if self.location is not None else text


@dataclass(frozen=True)
class Reverse:
    """A ProxyPassReverse (fake = the front path, real = the member-side URL)."""

    path: str
    target: str
    directive: Directive


@dataclass
class Block:
    """The per-directory proxy settings of a server or of one <Location>. Apache merges them
    per request: the main server's, a vhost's, then each matching <Location>'s."""

    passes: list[Pass] = field(default_factory=list)
    reverse: list[Reverse] = field(default_factory=list)
    cookie_paths: list[tuple[str, str, Directive]] = field(default_factory=list)
    cookie_domains: list[tuple[str, str, Directive]] = field(default_factory=list)
    preserve_host: Directive | None = None
    # RequestHeader / Header as hbfork rules: (request_headers or response_headers, rule, from)
    headers: list[tuple[str, str, Directive]] = field(default_factory=list)


@dataclass
class Location:
    """A <Location PATH>: its ProxyPass takes that path (only the last one counts)."""

    path: str
    directive: Directive
    block: Block = field(default_factory=Block)
    regex: bool = False            # <Location ~ ...> and <LocationMatch>
    heartbeat: Directive | None = None   # its SetHandler heartbeat (mod_heartmonitor)
    requires: list[Directive] = field(default_factory=list)  # its own Require lines


@dataclass
class Server:
    """The main server (source None) or a <VirtualHost>."""

    source: Directive | None
    names: list[tuple[str, Directive]] = field(default_factory=list)   # ServerName first
    block: Block = field(default_factory=Block)
    locations: list[Location] = field(default_factory=list)
    ssl: list[Directive] = field(default_factory=list)         # mod_ssl, in file order
    hsts: list[Directive] = field(default_factory=list)        # Header ... HSTS
    redirects: list[Directive] = field(default_factory=list)   # Redirect* to https://
    rewrites: list[Directive] = field(default_factory=list)    # Rewrite*, in file order

    @property
    def addresses(self) -> tuple[str, ...]:
        return self.source.args if self.source is not None else ()


def label(server: Server) -> str:
    """How notes name a server: its <VirtualHost> line and place."""
    return f"{server.source.text} ({server.source.where})" if server.source else \
        "the main server"
