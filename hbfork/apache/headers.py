"""mod_headers' RequestHeader and Header -> hbfork header rules [pure].

A directive in the main server becomes a rule of [http] (Apache merges the main server's rules
into every virtual host's, first); one in a <VirtualHost> or a <Location> becomes a rule of
each [[route]] made from that server's or Location's ProxyPass lines, after the main server's
(the order Apache merges them in: server, vhost, Location). `RequestHeader` -> request_headers;
`Header [always|onsuccess]` -> response_headers. The rule keeps Apache's own words, and is
checked with the parser hbfork loads it with (hbfork.core.header_rules), so what is written is
what loads. What hbfork cannot do (conditions, `early`, `echo`, `note`, format specifiers, a
field hbfork owns) is listed by file:line with the reason (hbfork.apache.unhandled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from hbfork.apache.collected import Block, Server
from hbfork.apache.conf import Directive, Note
from hbfork.apache.unhandled import header_reason
from hbfork.core.header_rules import parse_rule

KEYS = {"requestheader": "request_headers", "header": "response_headers"}


class _Context(Protocol):  # read-only: collect.Context is a frozen dataclass
    @property
    def nested(self) -> str | None: ...
    @property
    def balancer(self) -> str | None: ...


def rule_text(d: Directive) -> str | None:
    """The directive's words as one rule (None: a word no quoting can carry)."""
    words = []
    for word in d.args:
        if word and not any(c.isspace() or c in "\"'" for c in word):
            words.append(word)
        elif '"' not in word:
            words.append(f'"{word}"')
        elif "'" not in word:
            words.append(f"'{word}'")
        else:
            return None
    return " ".join(words)


def collect(d: Directive, ctx: _Context, block: Block, notes: list[Note]) -> bool:
    """Keep a RequestHeader or Header in `block` (its server's or Location's) as a rule, or
    note why it cannot be one. Always True: the directive is handled either way."""
    if (ctx.nested or "").lower().lstrip("<").startswith(("directory", "files")):
        return True  # Apache's own files: no client sees them through the proxy
    if ctx.nested or ctx.balancer:
        where = ctx.nested or "<Proxy balancer://...>"
        notes.append(Note.of(d, f"header rules are per server, <VirtualHost> and <Location> "
                                f"in hbfork (it is inside {where}): not applied"))
        return True
    text = rule_text(d)
    if text is None:
        notes.append(Note.of(d, "a value with both kinds of quotes: write the rule by hand"))
        return True
    try:
        parse_rule(text, response=d.key == "header")
    except ValueError as err:
        notes.append(Note.of(d, header_reason(d.args, str(err))))
        return True
    block.headers.append((KEYS[d.key], text, d))
    return True


def rules(blocks: Sequence[Block]) -> dict[str, list[tuple[str, Directive]]]:
    """The rules of `blocks` (outer first) by key, each with its directive."""
    out: dict[str, list[tuple[str, Directive]]] = {}
    for block in blocks:
        for key, text, d in block.headers:
            out.setdefault(key, []).append((text, d))
    return out


def unplaced(servers: Sequence[Server]) -> list[Note]:
    """Notes for rules no route carries: a <Location> without a ProxyPass of its own, a
    <VirtualHost> that proxies nothing (`servers[0]`: the main server, whose rules are
    [http]'s)."""
    main, out = servers[0], []
    main_passes = bool(main.block.passes) or any(loc.block.passes for loc in main.locations)
    for index, server in enumerate(servers):
        for location in server.locations:
            if location.block.passes:
                continue
            out += [Note.of(d, f"{location.directive.text} has no ProxyPass of its own, so no "
                               "hbfork route to carry its header rules: not applied")
                    for _, _, d in location.block.headers]
        proxies = main_passes or bool(server.block.passes) or any(
            loc.block.passes for loc in server.locations)
        if index and not proxies:
            out += [Note.of(d, "its <VirtualHost> proxies nothing, so no hbfork route carries "
                               "its header rules: not applied")
                    for _, _, d in server.block.headers]
    return out
