"""ProxyPassReverse and its cookie variants: response headers that name a member, mapped back to
what the client sees. Pure.

A route with `reverse = true` maps every URL that starts with one of its pool's members
(`http://10.0.0.11:8080` followed by the member-side prefix of the route) to the route's own
prefix, on the client's scheme and Host: with `path = "/app/"` and `rewrite = "/"`,
`Location: http://10.0.0.11:8080/login` becomes `Location: http://www.example.com/app/login`.
The scheme and host compare case-insensitively, the path exactly (as Apache does); a member
URL that is the whole member-side prefix but for its trailing slash (a redirect to a webapp's
root, `http://10.0.0.11:8080/app`) maps to the front prefix too, as in Apache. Members of a TLS
pool are named by https:// URLs. Set-Cookie
`path=` and `domain=` attributes are rewritten by `reverse_cookie_path` and
`reverse_cookie_domain` pairs: an attribute value that starts with the first string is replaced
by the second (the whole value, as ProxyPassReverseCookiePath does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hbfork.core.addresses import Endpoint

LOCATION_HEADERS = frozenset((b"location", b"content-location", b"uri"))


@dataclass(frozen=True, slots=True)
class ReverseMap:
    urls: tuple[tuple[str, str], ...]              # (member URL prefix, lower-cased; front path)
    cookie_paths: tuple[tuple[str, str], ...] = ()
    cookie_domains: tuple[tuple[str, str], ...] = ()
    roots: frozenset[str] = frozenset()  # member URL prefixes without their slash (lower-cased)
    root: str = "/"                      # what a whole value in `roots` maps to

    @property
    def empty(self) -> bool:
        return not (self.urls or self.cookie_paths or self.cookie_domains)


def build_map(members: Iterable[Endpoint], member_prefix: str, front_prefix: str,
              cookie_paths: tuple[tuple[str, str], ...] = (),
              cookie_domains: tuple[tuple[str, str], ...] = (),
              scheme: str = "http") -> ReverseMap:
    """The map of one route: each member's URL (`scheme`, with and without its default port)
    plus the member-side prefix, to the route's front prefix."""
    urls: list[str] = []
    if member_prefix == "/":
        member_prefix = ""  # "http://m:8080" alone is the member's root too
    default_port = 443 if scheme == "https" else 80
    for member in members:
        host = f"[{member.ip}]" if member.ip.version == 6 else str(member.ip)
        bases = [f"{scheme}://{host}:{member.port}"]
        if member.port == default_port:
            bases.append(f"{scheme}://{host}")
        urls.extend((base + member_prefix).lower() for base in bases)
    # Longest first, so a member prefix that extends another wins.
    ordered = sorted({(u, front_prefix) for u in urls}, key=lambda p: -len(p[0]))
    roots = frozenset(u[:-1] for u in urls if u.endswith("/"))
    return ReverseMap(tuple(ordered), cookie_paths, cookie_domains, roots, front_prefix)


def map_location(value: str, rmap: ReverseMap, scheme: str, host: str) -> str:
    """A Location-like header value with a member URL replaced by the client-facing one."""
    lowered = value.lower()
    if lowered in rmap.roots:  # the member-side prefix but for its trailing slash
        return f"{scheme}://{host}{rmap.root}"
    for prefix, front in rmap.urls:
        if lowered.startswith(prefix):
            rest = value[len(prefix):]
            if rest and not rest.startswith(("/", "?", "#")) and not prefix.endswith("/"):
                continue  # http://10.0.0.11:80801/... is another host
            return f"{scheme}://{host}{_join(front, rest)}"
    return value


def _join(front: str, rest: str) -> str:
    if front.endswith("/") and rest.startswith("/"):
        return front + rest[1:]
    if not front.endswith("/") and rest and not rest.startswith(("/", "?", "#")):
        return front + "/" + rest
    return (front + rest) or "/"


def map_set_cookie(value: str, rmap: ReverseMap) -> str:
    """A Set-Cookie value with its path= and domain= attributes mapped."""
    if not (rmap.cookie_paths or rmap.cookie_domains):
        return value
    parts = value.split(";")
    for index, part in enumerate(parts):
        stripped = part.lstrip()
        lead = part[:len(part) - len(stripped)]
        lower = stripped.lower()
        if lower.startswith("path="):
            mapped = _first_match(stripped[5:], rmap.cookie_paths, exact_case=True)
            if mapped is not None:
                parts[index] = f"{lead}{stripped[:5]}{mapped}"
        elif lower.startswith("domain="):
            mapped = _first_match(stripped[7:], rmap.cookie_domains, exact_case=False)
            if mapped is not None:
                parts[index] = f"{lead}{stripped[:7]}{mapped}"
    return ";".join(parts)


def _first_match(value: str, pairs: tuple[tuple[str, str], ...], exact_case: bool) -> str | None:
    for old, new in pairs:
        if value.startswith(old) if exact_case else value.lower().startswith(old.lower()):
            return new
    return None
