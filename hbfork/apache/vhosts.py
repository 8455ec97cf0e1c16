"""The order Apache tries its ProxyPass lines in, per virtual host, as hbfork routes [pure].

For one request Apache first picks the virtual host: among the <VirtualHost>s of the address
and port the request came in on, the first whose ServerName or ServerAlias matches the Host
header, else the first of them (the default vhost); with no vhost there, the main server. In
that server it tries, first match wins: the ProxyPass of the matching <Location> (a later
<Location> overrides an earlier one, and the vhost's come after the main server's), then the
main server's ProxyPass list, then the vhost's own.

hbfork's routes are one list tried in file order among those whose `host` matches. So each
vhost is written as its ProxyPass lines in that order with `host` set to its names, then a
`pass = false` catch-all for those names: a request for a named vhost never falls through to
another vhost's routes. The default vhost's routes come last without `host`, for every other
host name. A name an earlier vhost already has is Apache's first vhost's, so later ones drop it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hbfork.apache.collect import Block, Collector, Pass, Server
from hbfork.apache.conf import Directive, Note
from hbfork.apache.pools import PoolBook
from hbfork.apache.routes import RouteMaker, RoutePlan
from hbfork.core.pool_settings import normalize_host_pattern


@dataclass
class Routes:
    """The routes in file order, and what could not be carried over."""

    routes: list[RoutePlan]
    notes: list[Note]
    remarks: list[str]


def plan_routes(collected: Collector, book: PoolBook, ports: set[int],
                redirected: set[int] | None = None) -> Routes:
    """hbfork's routes for the collected servers; `ports` are the ports whose listeners route
    (the vhosts of other ports are left out: noted, but for the `redirected` ports, whose
    listeners send every request to https)."""
    return _Planner(collected, book, ports, redirected or set()).plan()


class _Planner:
    def __init__(self, collected: Collector, book: PoolBook, ports: set[int],
                 redirected: set[int]) -> None:
        self.main = collected.servers[0]
        self.vhosts = collected.servers[1:]
        self.ports = ports
        self.redirected = redirected
        self.notes: list[Note] = []
        self.remarks: list[str] = []
        self.maker = RouteMaker(book, self.notes)

    def plan(self) -> Routes:
        vhosts = [v for v in self.vhosts if self._served(v)]
        self._mixed(vhosts)
        routes: list[RoutePlan] = []
        if not vhosts:
            routes += self._group(self.main, ())
        else:
            routes += self._vhost_routes(vhosts)
        if all(not r.source for r in routes):
            routes = []  # only catch-alls: with no route, every request is 404 anyway
        self.maker.unused([self.main.block, *(loc.block for loc in self.main.locations)])
        for vhost in vhosts:
            self.maker.unused([vhost.block, *(loc.block for loc in vhost.locations)])
        return Routes(routes, _unique(self.notes), self.remarks)

    # --- which vhosts

    def _served(self, vhost: Server) -> bool:
        """Is the vhost on a port hbfork listens on? (hbfork's routes do not see the port.)"""
        ports = {address_port(a) for a in vhost.addresses}
        if not self.ports or None in ports or ports & self.ports:
            return True
        if has_passes(vhost) and not ports & self.redirected:
            assert vhost.source is not None
            shown = ", ".join(str(p) for p in sorted(p for p in ports if p is not None))
            self.notes.append(Note.of(vhost.source, f"on port {shown}, where hbfork has no "
                                                    "listener that routes (see the Listen "
                                                    "notes): its ProxyPass lines are left out"))
        return False

    def _mixed(self, vhosts: list[Server]) -> None:
        """Apache picks the vhosts of the address and port a request came in on; hbfork's
        routes see neither, so vhosts of different ones are tried as one list."""
        specs = sorted({a.lower().replace("_default_", "*") for v in vhosts for a in v.addresses})
        if len(specs) > 1:
            self.remarks.append(
                f"The vhosts are on {', '.join(specs)}: hbfork's routes do not see the address "
                "or port a request came in on, so they are tried as one list (the first vhost "
                "whose names match wins; the first vhost is the default for other names).")

    def _vhost_routes(self, vhosts: list[Server]) -> list[RoutePlan]:
        names = self._names(vhosts)
        default, routes = vhosts[0], []
        for index, vhost in enumerate(vhosts):
            hosts = names[index]
            if not hosts:
                continue
            if vhost is default and not _overlaps(hosts, names[1:]):
                continue  # its hostless routes below serve its names too
            group = self._group(vhost, hosts)
            if not any(r.path == "/" for r in group):
                group.append(_catch_all(hosts))
            group[0].heading.insert(0, _heading(vhost, hosts))
            routes += group
        group = self._group(default, ())
        if group:
            group[0].heading.insert(0, _heading(default, (), names[0]))
        return routes + group

    def _names(self, vhosts: list[Server]) -> list[tuple[str, ...]]:
        return server_names(self.main, vhosts, self.notes)

    # --- one server's routes, in the order Apache tries them

    def _group(self, server: Server, hosts: tuple[str, ...]) -> list[RoutePlan]:
        servers = [self.main] if server is self.main else [self.main, server]
        chain = [s.block for s in servers]
        steps: list[tuple[Pass, list[Block]]] = []
        locations = [loc for s in servers for loc in s.locations]
        for location in reversed(locations):  # a later <Location> overrides an earlier one
            steps += [(step, [*chain, location.block]) for step in location.block.passes]
        for block in chain:
            steps += [(step, chain) for step in block.passes]
        taken: list[RoutePlan] = []
        for step, blocks in steps:
            plan = self.maker.make(step, blocks)
            if plan is None:
                continue
            earlier = next((r for r in taken if r.covers(plan)), None)
            if earlier is not None:
                assert earlier.source is not None
                first = earlier.source
                self.notes.append(Note.of(step.directive, f"never used: {first.label} "
                                                          f"({first.directive.where}) is tried "
                                                          "first and takes every request it "
                                                          "could match", step.label))
                continue
            taken.append(plan)
        return [plan.with_host(hosts) for plan in taken]


def server_names(main: Server, vhosts: list[Server], notes: list[Note]) \
        -> list[tuple[str, ...]]:
    """Each vhost's host patterns, minus those an earlier vhost already matches (Apache picks
    the first vhost whose name matches, for a Host header and for a TLS client's SNI name)."""
    taken: dict[str, str] = {}
    main_name = next((n for n, d in main.names if d.key == "servername"), "")
    out = []
    for vhost in vhosts:
        mine: list[str] = []
        names: list[tuple[str, Directive | None]] = list(vhost.names)
        if main_name and not any(d.key == "servername" for _, d in vhost.names):
            names.insert(0, (main_name, None))  # a vhost's ServerName defaults to the main's
        for name, d in names:
            host = host_pattern(name, d, notes)
            if host is None or host in mine:
                continue
            earlier = next((t for t in taken if t == host or _wild_match(t, host)), None)
            if earlier is not None:
                if d is not None:
                    notes.append(Note.of(d, f"{host} is already matched by {earlier} of "
                                            f"{taken[earlier]}, which Apache picks first",
                                         f"{d.name} {name}"))
                continue
            assert vhost.source is not None
            taken[host] = f"{vhost.source.text} ({vhost.source.where})"
            mine.append(host)
        out.append(tuple(mine))
    return out


def own_names(main: Server, server: Server) -> tuple[str, ...]:
    """One server's host patterns, on its own (what is wrong with a name, the routes say)."""
    if server is main:
        found = [host_pattern(n, d, []) for n, d in server.names]
        return tuple(n for n in found if n)
    return server_names(main, [server], [])[0]


def host_pattern(name: str, d: Directive | None, notes: list[Note]) -> str | None:
    """A ServerName or ServerAlias as an hbfork host pattern (None, noted, if it is not one)."""
    text = name.split("://", 1)[-1]
    if not text.startswith("[") and text.count(":") == 1:
        text = text.split(":", 1)[0]  # a port: Apache ignores it for name matching
    elif text.startswith("[") and "]:" in text:
        text = text[:text.index("]") + 1]
    try:
        return normalize_host_pattern(text)
    except ValueError as err:
        if d is not None:
            notes.append(Note.of(d, f"hbfork hosts are names or \"*.domain\": {err}",
                                 f"{d.name} {name}"))
        return None


def _catch_all(hosts: tuple[str, ...]) -> RoutePlan:
    return RoutePlan(None, hosts, "/", passes=False, comments=[
        "in Apache, a request for these names that no ProxyPass above takes stays in this "
        "vhost (served from its DocumentRoot, usually a 404): hbfork answers 404 rather than "
        "try the routes below"])


def _heading(vhost: Server, hosts: tuple[str, ...], names: tuple[str, ...] = ()) -> str:
    assert vhost.source is not None
    where = f"{vhost.source.text} ({vhost.source.where})"
    if hosts:
        return f"{where}: the requests for {', '.join(hosts)}"
    own = f" ({', '.join(names)})" if names else ""
    return (f"{where}{own}, the first vhost of its address, which Apache also gives every "
            "host name no other vhost has: these routes have no host")


def _overlaps(mine: tuple[str, ...], others: Iterable[tuple[str, ...]]) -> bool:
    """Could a later vhost's names match one of the default vhost's? Then the default vhost
    needs its own named routes first, as Apache picks the first vhost that matches."""
    for theirs in others:
        for a in mine:
            for b in theirs:
                if a == b or _wild_match(a, b) or _wild_match(b, a):
                    return True
    return False


def _wild_match(pattern: str, name: str) -> bool:
    return pattern.startswith("*.") and name.removeprefix("*.").endswith(pattern[1:])


def address_port(address: str) -> int | None:
    """The port of a <VirtualHost> address (None: any port)."""
    tail = address.rsplit("]", 1)[-1]
    if ":" not in tail:
        return None
    port = tail.rsplit(":", 1)[1]
    return int(port) if port.isdigit() else None


def has_passes(server: Server) -> bool:
    return bool(server.block.passes) or any(loc.block.passes for loc in server.locations)


def _unique(notes: list[Note]) -> list[Note]:
    """A main-server ProxyPass is tried in every vhost: say what is wrong with it once."""
    seen: set[tuple[str, int, str, str]] = set()
    out = []
    for note in notes:
        key = (note.file, note.line, note.text, note.reason)
        if key not in seen:
            seen.add(key)
            out.append(note)
    return out
