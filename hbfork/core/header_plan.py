"""Which header rules a request meets, compiled once per (listener, pool, route), and their
effect on heads as both HTTP paths hold them. Pure.

Order, as Apache merges mod_headers' lists (the outer context's rules first, the inner's
after, so the most specific has the last word): [http] (the whole server), then the
[[listen]] the client came in on (a virtual host's address), then the [[pool]] (the
balancer), then the [[route]] (a <Location>). A route's `set` therefore overrides a pool's.

Request rules see the client's fields after hbfork has read them and before it adds its own
(X-Forwarded-*, the request ID): like mod_headers' fixups, which run before mod_proxy adds its
X-Forwarded-* fields. Response rules see the member's fields after ProxyPassReverse's mapping
and before hbfork's own additions (HSTS, the route cookie, the request ID), like Apache's
output filter after mod_proxy. Own answers (503, 504, 502, 408, 404, redirects) meet the
`always` rules only.

The fast path holds heads as bytes: `request_head` and `response_head` apply the rules to them
and remember the result per head (most heads repeat byte for byte), so a request with rules
costs a dictionary lookup more than one without.
"""

from __future__ import annotations

from collections.abc import Callable

from hbfork.core.config import Config
from hbfork.core.header_rules import Header, Rule, apply
from hbfork.core.lean import without_hop_fields
from hbfork.core.routes import Route

# Heads remembered per worker and kind, shared out among the programs the config can make
# (at least MIN_ENTRIES each): with CACHE_HEAD_MAX, a worker's caches stay within ~16 MiB.
CACHE_ENTRIES = 4096
MIN_ENTRIES = 32
CACHE_HEAD_MAX = 2048  # longer heads are rewritten every time
CRLF = b"\r\n"


def split_fields(block: bytes) -> list[Header]:
    """The fields of a head's field block (lines without the start line, CRLF-separated, the
    grammar already checked)."""
    out = []
    for line in block.split(CRLF):
        if line:
            name, _, value = line.partition(b":")
            out.append((name, name.lower(), value.strip(b" \t")))
    return out


def join_fields(fields: list[Header]) -> bytes:
    """Field lines, each ending in CRLF."""
    return b"".join(name + b": " + value + CRLF for name, _, value in fields)


class HeaderProgram:
    """The rules of one (listener, pool, route), with what they made of recent heads."""

    __slots__ = ("always", "entries", "id_lower", "id_needle", "request_rules", "requests",
                 "response_rules", "responses", "rewrites_request", "rewrites_response")

    def __init__(self, request_rules: tuple[Rule, ...], response_rules: tuple[Rule, ...],
                 id_lower: bytes = b"", entries: int = CACHE_ENTRIES) -> None:
        self.request_rules = request_rules
        self.response_rules = response_rules
        self.always = tuple(rule for rule in response_rules if rule.always)
        self.id_lower = id_lower  # the request-ID field: taken out of the client's head
        self.id_needle = b"\r\n" + id_lower + b":"
        self.entries = entries
        self.rewrites_request = bool(request_rules or id_lower)
        self.rewrites_response = bool(response_rules)
        self.requests: dict[bytes, tuple[bytes, bytes]] = {}
        self.responses: dict[bytes, bytes] = {}

    # --- the general path: field lists

    def request_fields(self, fields: list[Header]) -> tuple[list[Header], bytes]:
        """(the client's fields after the rules and without the ID field, the first ID value
        the client sent or b"")."""
        offered = b""
        lower = self.id_lower
        if lower:
            offered = next((value for _, name, value in fields if name == lower), b"")
            fields = [field for field in fields if field[1] != lower]
        return apply(self.request_rules, fields), offered

    def response_fields(self, fields: list[Header]) -> list[Header]:
        return apply(self.response_rules, fields)

    # --- the fast path: heads as bytes

    def request_head(self, forward: bytes) -> tuple[bytes, bytes]:
        """request_fields() for a lean request's head (its start line and field lines, each
        ending in CRLF, without the final CRLF)."""
        try:
            return self.requests[forward]
        except KeyError:
            pass
        offered = b""
        if self.id_lower and self.id_needle in forward.lower():
            # A client's ID makes every head unique: remember the head without it.
            forward, offered = self._without_id(forward)
            try:
                return self.requests[forward][0], offered
            except KeyError:
                pass
        line_end = forward.find(CRLF) + 2
        fields, _ = self.request_fields(split_fields(forward[line_end:]))
        found = (forward[:line_end] + join_fields(fields), offered)
        self._remember(self.requests, forward, (found[0], b""))
        return found

    def _without_id(self, head: bytes) -> tuple[bytes, bytes]:
        """(`head` without its ID fields, the first one's value)."""
        offered = b""
        at = head.lower().find(self.id_needle)
        while at >= 0:
            end = head.find(CRLF, at + 2)
            if not offered:
                offered = head[at + len(self.id_needle):end].strip(b" \t")
            head = head[:at] + head[end:]
            at = head.lower().find(self.id_needle)
        return head, offered

    def response_head(self, head: bytes) -> bytes:
        """A lean response head (with its final CRLF CRLF) after the response rules."""
        return _rewrite(head, lambda fields: apply(self.response_rules, fields))

    def client_head(self, head: bytes) -> bytes:
        """A lean response head as the client gets it, but for hbfork's own lines: the rules
        applied, its hop-by-hop fields cut (hbfork.core.lean.without_hop_fields), no final
        CRLF. Remembered: per request it is one lookup (the rules cannot touch the fields
        that depend on the connection)."""
        try:
            return self.responses[head]
        except KeyError:
            pass
        found = without_hop_fields(self.response_head(head))
        self._remember(self.responses, head, found)
        return found

    def _remember(self, cache: dict[bytes, tuple[bytes, bytes]] | dict[bytes, bytes],
                  head: bytes, found: object) -> None:
        if len(head) <= CACHE_HEAD_MAX:
            if len(cache) >= self.entries:
                cache.clear()
            cache[head] = found  # type: ignore[assignment]

    def own_answer(self, answer: bytes) -> bytes:
        """One of hbfork's own answers (head and body) after the `always` rules."""
        if not self.always:
            return answer
        end = answer.find(b"\r\n\r\n") + 4
        return _rewrite(answer[:end], lambda fields: apply(self.always, fields)) + answer[end:]


def _rewrite(head: bytes, change: Callable[[list[Header]], list[Header]]) -> bytes:
    line_end = head.find(CRLF) + 2
    return head[:line_end] + join_fields(change(split_fields(head[line_end:-4]))) + CRLF


Key = tuple[object, int, str]  # (listener address, route index or -1, pool name or "")
NO_RULES = ((), ())


class HeaderPlans:
    """Every program a worker's requests may meet, made on first use."""

    __slots__ = ("active", "base", "entries", "id_lower", "listens", "pools", "programs")

    def __init__(self, config: Config, id_lower: bytes = b"") -> None:
        http = config.http
        self.base = (http.request_headers, http.response_headers)
        self.listens = {listen.address: (listen.request_headers, listen.response_headers)
                        for listen in config.listeners}
        self.pools = {pool.name: (pool.request_headers, pool.response_headers)
                      for pool in config.pools}
        self.id_lower = id_lower
        self.active = bool(id_lower) or any(
            rules != NO_RULES for rules in (self.base, *self.listens.values(),
                                            *self.pools.values(),
                                            *((r.request_headers, r.response_headers)
                                              for r in config.routes)))
        self.programs: dict[Key, HeaderProgram] = {}
        possible = max(1, len(self.listens)) * (len(config.routes) + max(1, len(config.pools)))
        self.entries = max(MIN_ENTRIES, CACHE_ENTRIES // possible)

    def program(self, listen: object, route: Route | None, pool: str) -> HeaderProgram:
        """The program of a request on listener `listen` (its address), routed by `route`
        (None: none) to `pool` ("": none)."""
        key = (listen, route.index if route is not None else -1, pool)
        found = self.programs.get(key)
        if found is None:
            levels = [self.base, self.listens.get(listen, NO_RULES),  # type: ignore[call-overload]
                      self.pools.get(pool, NO_RULES)]
            if route is not None:
                levels.append((route.settings.request_headers, route.settings.response_headers))
            found = self.programs[key] = HeaderProgram(
                tuple(rule for level in levels for rule in level[0]),
                tuple(rule for level in levels for rule in level[1]), self.id_lower,
                self.entries)
        return found
