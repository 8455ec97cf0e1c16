"""How an Apache server sends its clients to https, read as Apache reads it [pure].

Two things hbfork has per listener, and Apache per server (main or <VirtualHost>):

* `redirect_of(server, main, port)`: does the server answer every request with a redirect to
  https://? Recognised are mod_alias's `Redirect [status] / https://HOST[:PORT]/` (and
  RedirectPermanent / RedirectTemp / RedirectMatch with a capture of the whole path) and
  mod_rewrite's recipe: `RewriteEngine On`, conditions that hold on a plain port (`%{HTTPS}
  off`, `%{SERVER_PORT}`, `%{SERVER_NAME}` / `%{HTTP_HOST}` equal to the server's names) and
  one `RewriteRule` of every path to `https://%{HTTP_HOST}%{REQUEST_URI}` (or
  %{SERVER_NAME}, $1, /$1) with R. mod_rewrite runs before mod_proxy's ProxyPass, mod_alias
  after it; a server's rewrite rules are its own, while the main server's Redirects apply in
  every vhost (after the vhost's).
* `hsts_of(server, main)`: the Strict-Transport-Security header mod_headers sets on its
  responses (the main server's Header lines run first, then the vhost's; the last wins).

Both return what they found with the directives it came from and the differences hbfork's
version has (`caveats`), or why it is not what hbfork can do (`problem`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from hbfork.apache.collect import HSTS, Server, rewrite_flags
from hbfork.apache.conf import Directive

PERMANENT = 301
ALIAS_STATUS = {"permanent": 301, "temp": 302, "seeother": 303}
REWRITE_STATUS = {"permanent": 301, "temp": 302, "seeother": 303}
HTTPS_TARGET = re.compile(r"https://(?P<host>%\{(?:HTTP_HOST|SERVER_NAME)\}|[A-Za-z0-9.\-]+)"
                          r"(?::(?P<port>\d+))?(?P<path>.*)", re.IGNORECASE)
# Patterns that match every path, by what their first group holds: nothing, the whole path,
# or the path after its leading slash.
WHOLE_PATH = frozenset({"^(.*)$", "(.*)", "^(.*)", "(.*)$"})
AFTER_SLASH = frozenset({"^/(.*)$", "^/(.*)", "/(.*)", "^/?(.*)$", "^/?(.*)", "/?(.*)"})
ANY_PATH = frozenset({"^", ".*", "^.*$", "^.*", ".", "^/", "/", "^/.*", "^/.*$", "^/?.*$",
                      "^/?"})
REWRITE_OK_FLAGS = frozenset({"L", "LAST", "END", "NE", "NOESCAPE", "QSA", "QSAPPEND"})
HTTPS_OFF = frozenset({"off", "!on", "!=on", "=off", "^off$", "!^on$", "!^on"})
MAX_HSTS = 63072000                     # hbfork's limit on [[listen]] hsts


@dataclass
class HttpsRedirect:
    """A server's redirect of every request to https."""

    sources: list[Directive]
    status: int = PERMANENT
    host: str | None = None            # a fixed host; None: the host the client asked for
    port: int = 443
    names: tuple[str, ...] = ()        # mod_rewrite: only requests for these names
    plain_only: bool = False           # mod_rewrite: only when %{HTTPS} is off
    rewrite: bool = False              # by mod_rewrite (before ProxyPass), not mod_alias (after)
    problem: str = ""                  # why hbfork's redirect_https is not it
    caveats: list[str] = field(default_factory=list)

    @property
    def source(self) -> Directive:
        return self.sources[-1]

    @property
    def label(self) -> str:
        return f"{self.source.text} ({self.source.where})"


@dataclass
class Hsts:
    """A server's Strict-Transport-Security header."""

    source: Directive
    max_age: int = 0
    subdomains: bool = False
    problem: str = ""
    caveats: list[str] = field(default_factory=list)


# --- redirects


def redirect_of(server: Server, main: Server, port: int | None) -> HttpsRedirect | None:
    """The server's redirect of every request to https (problem set when it is one hbfork
    cannot take as it is), or None when it has none. `port`: the plain port it serves."""
    rules = [d for d in server.rewrites if d.key == "rewriterule"]
    if rewrite_on(server) and any(len(d.args) > 1 and d.args[1].lower().startswith("https://")
                                   for d in rules):
        return _rewrite_redirect(server, rules, port)
    redirects = [*server.redirects, *(main.redirects if server is not main else ())]
    if not redirects:
        return None
    return _alias_redirect(redirects[0])


def rewrite_on(server: Server) -> bool:
    """Whether the server's last RewriteEngine says On (its rules run only then)."""
    engine = [d for d in server.rewrites if d.key == "rewriteengine"]
    return bool(engine) and bool(engine[-1].args) and engine[-1].args[0].lower() == "on"


def _alias_redirect(d: Directive) -> HttpsRedirect:
    args = list(d.args)
    status = {"redirectpermanent": 301, "redirecttemp": 302}.get(d.key)
    if status is None and len(args) == 3:
        word = args.pop(0).lower()
        status = ALIAS_STATUS.get(word) or (int(word) if word.isdigit() else 0)
    found = HttpsRedirect([d], status or 302)
    if len(args) != 2 or not 300 <= found.status <= 399:
        found.problem = "not a redirect hbfork can read"
        return found
    path, url = args
    if d.key == "redirectmatch":
        wanted = "$1" if path in WHOLE_PATH else "/$1" if path in AFTER_SLASH else None
    else:
        wanted = "/" if path == "/" else None
    if wanted is None:
        found.problem = f"it redirects only the paths {path} (hbfork redirects every request)"
        return found
    _target(found, url, wanted)
    return found


def _target(found: HttpsRedirect, url: str, *paths: str) -> None:
    """Read `https://HOST[:PORT]PATH`; PATH must be one of `paths` (the request's own)."""
    match = HTTPS_TARGET.fullmatch(url)
    if match is None or match["path"] not in paths:
        found.problem = (f"it sends requests to {url}, not to the same path over https "
                         "(hbfork's redirect_https keeps the path)")
        return
    host = match["host"]
    if not host.startswith("%{"):
        found.host = host.lower()
    if match["port"]:
        found.port = int(match["port"])
    if not 1 <= found.port <= 65535:
        found.problem = f"port {found.port}"


def _rewrite_redirect(server: Server, rules: list[Directive],
                      port: int | None) -> HttpsRedirect:
    rule = rules[0]
    found = HttpsRedirect([d for d in server.rewrites if d.key != "rewriterule"] + [rule],
                          rewrite=True)
    if len(rules) > 1 or any(d.key == "rewriteoptions" and "inherit" in d.raw.lower()
                             for d in server.rewrites):
        found.problem = "mod_rewrite rules other than one redirect to https"
        return found
    _rule(found, rule)
    if not found.problem:
        _conditions(found, _conditions_of(server, rule), port)
    return found


def _conditions_of(server: Server, rule: Directive) -> list[Directive]:
    """The RewriteConds that belong to `rule`: those right before it."""
    index = server.rewrites.index(rule)
    out: list[Directive] = []
    for d in reversed(server.rewrites[:index]):
        if d.key != "rewritecond":
            break
        out.insert(0, d)
    return out


def _rule(found: HttpsRedirect, rule: Directive) -> None:
    args = rule.args
    flags = rewrite_flags(rule)
    codes = [f.partition("=")[2].lower() for f in flags if f.partition("=")[0] in
             ("R", "REDIRECT")]
    other = [f for f in flags if f.partition("=")[0] not in ("R", "REDIRECT")]
    if len(args) < 2 or not codes or any(f not in REWRITE_OK_FLAGS for f in other):
        found.problem = "a RewriteRule that is not a plain redirect ([R] with L, END, NE or QSA)"
        return
    code = codes[0]
    found.status = REWRITE_STATUS.get(code) or (int(code) if code.isdigit() else 302 if not
                                                code else 0)
    pattern, target = args[0], args[1]
    paths = ["%{REQUEST_URI}"]
    if pattern in WHOLE_PATH:
        paths.append("$1")
    elif pattern in AFTER_SLASH:
        paths.append("/$1")
    elif pattern not in ANY_PATH:
        found.problem = f"it redirects only the paths {pattern} matches (hbfork redirects " \
                        "every request)"
        return
    if not 300 <= found.status <= 399:
        found.problem = "not a redirect status"
        return
    _target(found, target, *paths)


def _conditions(found: HttpsRedirect, conditions: Sequence[Directive], port: int | None) -> None:
    """Conditions that hold on a plain port, and an [OR] chain of host names."""
    names: list[str] = []
    previous: Directive | None = None  # the last host condition (set with each name)
    for d in conditions:
        if len(d.args) < 2:
            found.problem = "a RewriteCond hbfork cannot read"
            return
        test, pattern = d.args[0].upper(), d.args[1]
        flags = rewrite_flags(d)
        if test == "%{HTTPS}" and pattern.lower() in HTTPS_OFF and "OR" not in flags:
            found.plain_only = True  # always true on a plain listener
            continue
        if test == "%{SERVER_PORT}" and port is not None and "OR" not in flags and \
                _port_holds(pattern, port):
            continue
        name = _host_condition(test, pattern, flags)
        if name is None or (previous is not None and "OR" not in rewrite_flags(previous)):
            found.problem = f"a condition hbfork cannot take: {d.text}"
            return
        names.append(name)
        previous = d
    if previous is not None and "OR" in rewrite_flags(previous):
        found.problem = f"a condition hbfork cannot take: {previous.text}"
    found.names = tuple(names)


def _port_holds(pattern: str, port: int) -> bool:
    negate = pattern.startswith("!")
    text = pattern.lstrip("!").lstrip("=").strip("^$")
    return text.isdigit() and (int(text) == port) != negate


def _host_condition(test: str, pattern: str, flags: list[str]) -> str | None:
    """`%{SERVER_NAME} =www.example.com` (certbot's) or `^www\\.example\\.com$`: the name."""
    if test not in ("%{SERVER_NAME}", "%{HTTP_HOST}"):
        return None
    if any(f not in ("OR", "NC", "NOCASE", "ORNEXT") for f in flags):
        return None
    if pattern.startswith("="):
        return pattern[1:].lower() or None
    match = re.fullmatch(r"\^((?:[A-Za-z0-9\-]|\\\.)+)\$", pattern)
    return match[1].replace("\\.", ".").lower() if match else None


# --- Strict-Transport-Security


def hsts_of(server: Server, main: Server) -> Hsts | None:
    """The header mod_headers sends on the server's TLS responses (None: none)."""
    lines = [*(main.hsts if server is not main else ()), *server.hsts]
    found: Hsts | None = None
    for d in lines:
        step = _header(d)
        if step is not None:
            found = step if step.max_age or step.problem else None
    return found


def _header(d: Directive) -> Hsts | None:
    """One `Header [always|onsuccess] set Strict-Transport-Security "..." [cond]`: what it
    leaves on a TLS response (max_age 0: it removes the header); None: not on TLS."""
    args = list(d.args)
    if args and args[0].lower() in ("always", "onsuccess"):
        args.pop(0)
    if len(args) < 2 or args[1].lower() != HSTS:
        return Hsts(d, problem="not a Header line hbfork can read")
    action = args[0].lower()
    if action == "unset":
        return Hsts(d)
    condition = [a for a in args[3:] if a.lower() != "early"]
    if condition and condition[0] in ("env=!HTTPS", "env=!https"):
        return None
    if action not in ("set", "add", "append", "setifempty", "merge") or len(args) < 3:
        return Hsts(d, problem=f"Header {action} of the header")
    found = _hsts_value(d, args[2])
    if condition and not _tls_only(condition[0]):
        found.problem = f"a condition hbfork cannot evaluate ({condition[0]})"
    return found


def _tls_only(condition: str) -> bool:
    text = re.sub(r"\s+", "", condition.lower())
    return text in ("env=https", "expr=%{https}=='on'", 'expr=%{https}=="on"')


def _hsts_value(d: Directive, value: str) -> Hsts:
    found = Hsts(d)
    for part in (p.strip() for p in value.split(";") if p.strip()):
        name, _, number = part.partition("=")
        name = name.strip().lower()
        if name == "max-age" and number.strip().strip('"').isdigit():
            found.max_age = int(number.strip().strip('"'))
        elif name == "includesubdomains":
            found.subdomains = True
        else:
            found.caveats.append(f"{part}: hbfork sends max-age and includeSubDomains only")
    if found.max_age == 0:
        found.problem = "no max-age (or max-age=0, which hbfork cannot send: its 0 is off)"
    elif found.max_age > MAX_HSTS:
        found.caveats.append(f"max-age={found.max_age}: hbfork's limit is {MAX_HSTS}")
        found.max_age = MAX_HSTS
    return found
