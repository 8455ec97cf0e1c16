"""Which protocol upgrades a request may carry to a member, and whether a member's 101 answers
what was asked. Pure.

An `Upgrade` that reaches a member and gets 101 turns the connection into a raw tunnel: what
the client sends inside it is never routed, normalised or checked again. So upgrades pass only
by an allow-list (Apache's `upgrade=`, default `websocket`), and `h2c` never passes: a client
that opens an h2c tunnel can send HTTP/2 requests for paths a `pass = false` route keeps out
(h2c smuggling). RFC 9113 deprecated the h2c upgrade anyway. A request whose upgrade is not
allowed goes on as a plain HTTP request without it, as Apache forwards it.
"""

from __future__ import annotations

# Never tunnelled, whatever the allow-list says (the tunnel would bypass the routes).
NEVER = frozenset((b"h2c",))
ANY = b"*"
DEFAULT_ALLOWED = ("websocket",)


def _items(value: bytes) -> list[tuple[bytes, bytes]]:
    """(item as sent, protocol name lower-case without `/version`) of an Upgrade value."""
    out = []
    for item in value.split(b","):
        item = item.strip()
        name = item.partition(b"/")[0].strip().lower()
        if name:
            out.append((item, name))
    return out


def protocol_names(value: bytes) -> list[bytes]:
    """The protocol names (lower-case, without `/version`) of an Upgrade field value."""
    return [name for _, name in _items(value)]


def allowed_upgrade(offered: bytes, allowed: frozenset[bytes]) -> bytes:
    """The part of the client's Upgrade value (`offered`) that may go to the member: the
    protocols `allowed` names (or any, with `*`), never h2c; b"" when none may."""
    return b", ".join(item for item, name in _items(offered)
                      if name not in NEVER and (name in allowed or ANY in allowed))


def switch_matches(requested: bytes, answered: bytes) -> bool:
    """Does a member's 101 switch to a protocol the request offered? A 101 naming none, or
    another one, is not something to tunnel (RFC 9110 §7.8: the server names the protocol
    it switches to, one the client listed)."""
    chosen = protocol_names(answered)
    return bool(chosen) and set(chosen) <= set(protocol_names(requested))


def parse_allowed(names: tuple[str, ...]) -> frozenset[bytes]:
    """The allow-list as the session checks it (lower-case bytes)."""
    return frozenset(name.strip().lower().encode() for name in names)
