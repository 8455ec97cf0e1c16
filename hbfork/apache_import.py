"""`hbfork import-apache FILE`: translate an Apache heartbeat front's config to hbfork TOML.

Three stages, each usable on its own:

    parse(text, filename)         [pure] Apache syntax -> a tree of Directive (sections nested):
                                  comments, `\\` continuations, quoting, case-insensitive names
    Walker(source, ...).walk(f)   Include/IncludeOptional inlined (globs, directories, relative
                                  to ServerRoot), ${VAR}/Define applied, <IfModule>/<IfDefine>/
                                  <IfVersion> decided. All file access goes through `source`.
    translate(walked) / render()  [pure] the directives -> hbfork settings, members and notes
                                  -> TOML that hbfork.config.loads() accepts

What is translated: Listen, HeartbeatListen/MaxServers/Storage, <Proxy balancer://...> with
BalancerMember (lbset=, retry=, status=, route=, timeout=, connectiontimeout=) and ProxySet
(lbmethod=, maxattempts=), ProxyPass / ProxyPassReverse for "/", ProxyTimeout, ProxyAddHeaders,
Timeout, KeepAliveTimeout, User/Group. Anything else that concerns proxying or heartbeats gets a
`# not translated: ... (file:line) - reason` comment; the rest is only counted.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import posixpath
import re
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from hbfork.addresses import parse_endpoint, parse_ip
from hbfork.errors import HbforkError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
MAX_INCLUDE_DEPTH = 128                 # Apache's AP_MAX_INCLUDE_DEPTH
APACHE_VERSION = (2, 4, 999)            # <IfVersion> is decided for "any 2.4"
# Compiled into Debian's apache2: <IfModule> on these is always true.
STATIC_MODULES = frozenset({"core", "so", "watchdog", "http_core", "log_config", "logio",
                            "version", "unixd"})
ASSUMED_TRUE = frozenset({"iffile", "ifdirective", "ifsection"})
CONDITIONAL_SECTIONS = frozenset({"ifmodule", "ifdefine", "ifversion"}) | ASSUMED_TRUE
APACHE_DEFAULT_RETRY = 60
MAX_LBSET = 99                          # Apache refuses lbset outside 0-99
MAX_MEMBERS, MAX_RETRIES = 65535, 100   # hbfork's limits: [heartbeat] max_members, [http] retries
DEFAULT_RUNTIME_DIR = "logs"            # Apache's DEFAULT_REL_RUNTIMEDIR, under ServerRoot
RELATED_PREFIXES = ("proxy", "balancer", "heartbeat")
CORE_SETTINGS = frozenset({"timeout", "keepalivetimeout", "keepalive", "user", "group"})
COMMENT_WIDTH = 99
VARIABLE = re.compile(r"\$\{([^}]+)\}")


class ApacheConfigError(HbforkError):
    """The Apache config cannot be read as Apache would read it (names file and line)."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        self.file, self.line, self.problem = file, line, problem
        super().__init__(f"{file}:{line}: {problem}" if line else f"{file}: {problem}")


# --- stage 1: syntax (pure)


@dataclass(frozen=True)
class Directive:
    name: str
    raw: str                                    # the argument text as written
    file: str
    line: int
    children: tuple[Directive, ...] | None = None   # not None: a <section>
    args: tuple[str, ...] = ()                  # `raw` split as Apache splits it

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def text(self) -> str:
        words = " ".join(json.dumps(a) if not a or any(c.isspace() for c in a) else a
                         for a in self.args)
        shown = f"{self.name} {words}".strip()
        return f"<{shown}>" if self.children is not None else shown


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(number of the first physical line, text) per non-blank, non-comment line. A trailing
    backslash joins the next line, even onto a comment, as Apache's reader does."""
    pending: list[str] = []
    start = 0
    for number, physical in enumerate(text.splitlines(), 1):
        line = physical.rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = "".join(pending).strip()
        pending = []
        if joined and not joined.startswith("#"):
            yield start, joined
    joined = "".join(pending).strip()
    if joined and not joined.startswith("#"):
        yield start, joined


def split_args(text: str) -> list[str]:
    """Words as Apache's ap_getword_conf makes them: whitespace-separated; "..." or '...'
    quote a word (a backslash escapes the quote character inside)."""
    words, i, n = [], 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return words
        if text[i] in "\"'":
            word, i = _quoted(text, i)
        else:
            end = i
            while end < n and not text[end].isspace():
                end += 1
            word, i = text[i:end], end
        words.append(word)


def _quoted(text: str, i: int) -> tuple[str, int]:
    quote, out = text[i], []
    i += 1
    while i < len(text) and text[i] != quote:
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == quote:
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out), i + 1


def parse(text: str, filename: str) -> tuple[Directive, ...]:
    """An Apache config file's directives, sections nested. Raises ApacheConfigError for
    mismatched or unclosed sections, as Apache refuses those too."""
    top: list[Directive] = []
    stack: list[tuple[str, str, int, list[Directive]]] = []
    for number, line in logical_lines(text):
        siblings = stack[-1][3] if stack else top
        if line.startswith("</"):
            _close(stack, top, line, filename, number)
        elif line.startswith("<"):
            if not line.endswith(">"):
                raise ApacheConfigError(filename, number,
                                        f"{line.split()[0]} directive missing closing '>'")
            if not line[1:-1].strip():
                raise ApacheConfigError(filename, number, "a section with no name: <>")
            name, raw = _name_and_rest(line[1:-1])
            stack.append((name, raw, number, []))
        else:
            name, raw = _name_and_rest(line)
            siblings.append(Directive(name, raw, filename, number, args=tuple(split_args(raw))))
    if stack:
        name, _, number, _ = stack[-1]
        raise ApacheConfigError(filename, number, f"<{name}> is never closed")
    return tuple(top)


def _name_and_rest(text: str) -> tuple[str, str]:
    parts = text.strip().split(None, 1)
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def _close(stack: list, top: list[Directive], line: str, filename: str, number: int) -> None:
    name = line[2:].rstrip(">").strip()
    if not stack:
        raise ApacheConfigError(filename, number, f"</{name}> without a matching <{name}>")
    open_name, raw, start, children = stack.pop()
    if name.lower() != open_name.lower():
        raise ApacheConfigError(filename, number, f"expected </{open_name}> but saw </{name}>")
    (stack[-1][3] if stack else top).append(
        Directive(open_name, raw, filename, start, tuple(children), tuple(split_args(raw))))


# --- stage 2: includes, variables, conditionals


class Source(Protocol):
    """Where the walker gets files from (the disk, or a dict in tests)."""

    def expand(self, pattern: str) -> list[str]:
        """Files matching an absolute path, glob or directory (recursively), in Apache's
        order; [] when nothing matches."""
        ...

    def read(self, path: str) -> str: ...


class DiskSource:
    def expand(self, pattern: str) -> list[str]:
        if glob.has_magic(pattern):
            found: list[str] = []
            for match in sorted(glob.glob(pattern)):
                found.extend(self._files(match))
            return found
        return self._files(pattern) if os.path.exists(pattern) else []

    def _files(self, path: str) -> list[str]:
        if not os.path.isdir(path):
            return [path]
        found: list[str] = []
        for name in sorted(os.listdir(path)):
            found.extend(self._files(os.path.join(path, name)))
        return found

    def read(self, path: str) -> str:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()


@dataclass(frozen=True)
class Note:
    """A directive (or one of its parameters) that was not translated, and why."""
    text: str
    file: str
    line: int
    reason: str

    @classmethod
    def of(cls, directive: Directive, reason: str, text: str = "") -> Note:
        return cls(text or directive.text, directive.file, directive.line, reason)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def render(self) -> str:
        return f"# not translated: {self.text} ({self.where}) — {self.reason}"


@dataclass
class Walked:
    directives: list[Directive]
    files: list[str]
    server_root: str
    runtime_dir: str
    notes: list[Note]
    skipped: int              # directives inside conditions that do not hold


class Walker:
    """Follows a config the way Apache reads it at start-up, in order."""

    def __init__(self, source: Source, server_root: str, env: Mapping[str, str] | None = None,
                 defines: Sequence[str] = ()) -> None:
        self.source = source
        self.server_root = posixpath.normpath(server_root)
        self.env = dict(env or {})
        self.defines = set(defines)
        self.values: dict[str, str] = {}    # Define NAME VALUE; consulted before env
        self.modules: set[str] = set()
        self.saw_load_module = False
        self.runtime_dir: str | None = None
        self.files: list[str] = []
        self.notes: list[Note] = []
        self.skipped = 0

    def walk(self, path: str) -> Walked:
        """Read `path` (ApacheConfigError if it cannot be read) and everything it includes."""
        try:
            text = self.source.read(path)
        except OSError as err:
            raise ApacheConfigError(path, 0, f"cannot read: {err.strerror or err}") from None
        self.files.append(path)
        directives = self._walk(parse(text, path), (path,))
        runtime = self.runtime_dir or posixpath.join(self.server_root, DEFAULT_RUNTIME_DIR)
        return Walked(directives, self.files, self.server_root, runtime, self.notes,
                      self.skipped)

    def _walk(self, directives: Sequence[Directive], chain: tuple[str, ...]) -> list[Directive]:
        out: list[Directive] = []
        for original in directives:
            directive = self._substitute(original)
            if directive.children is None:
                out.extend(self._plain(directive, chain))
            elif directive.key in CONDITIONAL_SECTIONS:
                if self._holds(directive):
                    out.extend(self._walk(directive.children, chain))
                else:
                    self.skipped += count_directives(directive.children)
            else:
                out.append(replace(directive,
                                   children=tuple(self._walk(directive.children, chain))))
        return out

    def _plain(self, directive: Directive, chain: tuple[str, ...]) -> list[Directive]:
        if directive.key in ("include", "includeoptional"):
            return self._include(directive, chain)
        self._track(directive)
        return [directive]

    def _substitute(self, directive: Directive) -> Directive:
        if "${" not in directive.raw:
            return directive
        # Apache leaves an undefined ${NAME} as written (and warns); so do we.
        raw = VARIABLE.sub(lambda m: self.values.get(m[1], self.env.get(m[1], m[0])),
                           directive.raw)
        return replace(directive, raw=raw, args=tuple(split_args(raw)))

    def _track(self, d: Directive) -> None:
        """The directives that change how the rest of the config is read."""
        first = d.args[0] if d.args else ""
        if d.key == "define" and first:
            self.defines.add(first)
            if len(d.args) > 1:
                self.values[first] = d.args[1]
        elif d.key == "undefine":
            self.defines.discard(first)
            self.values.pop(first, None)
        elif d.key == "serverroot" and first:
            self.server_root = posixpath.normpath(first)
        elif d.key == "defaultruntimedir" and first:
            self.runtime_dir = self.resolve(first)
        elif d.key == "loadmodule" and first:
            self.saw_load_module = True
            self.modules.add(module_key(first))
            if len(d.args) > 1:
                self.modules.add(module_key(d.args[1]))

    def resolve(self, path: str) -> str:
        return posixpath.normpath(posixpath.join(self.server_root, path))

    def _include(self, d: Directive, chain: tuple[str, ...]) -> list[Directive]:
        if not d.args:
            self.notes.append(Note.of(d, "no file given"))
            return []
        files = self.source.expand(self.resolve(d.args[0]))
        if not files and d.key == "include":
            self.notes.append(Note.of(d, "nothing matches (Apache would refuse to start)"))
        out: list[Directive] = []
        for path in files:
            out.extend(self._include_file(d, path, chain))
        return out

    def _include_file(self, d: Directive, path: str, chain: tuple[str, ...]) -> list[Directive]:
        if path in chain:
            self.notes.append(Note.of(d, f"{path} includes itself (Apache refuses this)"))
            return []
        if len(chain) >= MAX_INCLUDE_DEPTH:
            self.notes.append(Note.of(d, f"includes nested deeper than {MAX_INCLUDE_DEPTH}"))
            return []
        try:
            text = self.source.read(path)
        except OSError as err:
            self.notes.append(Note.of(d, f"cannot read {path}: {err.strerror or err}"))
            return []
        self.files.append(path)
        return self._walk(parse(text, path), (*chain, path))

    def _holds(self, d: Directive) -> bool:
        if d.key in ASSUMED_TRUE or not d.args:
            return True
        if d.key == "ifversion":
            return version_matches(d.args)  # its "!" belongs to the operator
        word = d.args[0]
        negate = word.startswith("!")
        name = word[1:] if negate else word
        held = self._module_loaded(name) if d.key == "ifmodule" else name in self.defines
        return held != negate

    def _module_loaded(self, name: str) -> bool:
        key = module_key(name)
        # A fragment with no LoadModule at all (yet) is read as if every module were loaded.
        return key in STATIC_MODULES or key in self.modules or not self.saw_load_module



def module_key(name: str) -> str:
    """One spelling for a module: proxy_module, mod_proxy.c and .../mod_proxy.so -> proxy."""
    key = posixpath.basename(name.strip().lower())
    for suffix in ("_module", ".c", ".so"):
        key = key.removesuffix(suffix)
    return key.removeprefix("mod_")


def version_matches(args: tuple[str, ...]) -> bool:
    """<IfVersion [op] version> against APACHE_VERSION; undecidable forms count as true."""
    op, wanted = ("=", args[0]) if len(args) == 1 else (args[0], args[1])
    if op.startswith("!") and op != "!":
        return not version_matches((op[1:], wanted))
    if op == "~" or wanted.startswith("/"):
        return True  # a regular expression: assume it is meant for 2.4
    try:
        target = tuple(int(part) for part in wanted.split("."))
    except ValueError:
        return True
    have = APACHE_VERSION[:len(target)]
    return {"=": have == target, "==": have == target, ">": have > target,
            ">=": have >= target, "<": have < target, "<=": have <= target}.get(op, True)


def count_directives(directives: Sequence[Directive]) -> int:
    return sum(1 + count_directives(d.children or ()) for d in directives)


def parse_envvars(text: str) -> dict[str, str]:
    """`export NAME=VALUE` lines of Debian's /etc/apache2/envvars (read by apache2ctl), with
    $NAME / ${NAME} taken from earlier lines; anything else in the script is ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$", line)
        if match:
            value = match[2].strip("\"'")
            values[match[1]] = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                                      lambda m: values.get(m[1], ""), value)
    return values


# --- stage 3: translation (pure)


@dataclass
class Setting:
    key: str
    value: Any
    comment: str = ""


@dataclass
class Member:
    address: str
    source: Directive
    params: tuple[str, ...] = ()
    lbset: int = 0
    name: str = ""
    disabled: bool = False
    hot: str = ""              # "hot standby" / "hot spare": placed in a higher lbset
    comments: list[str] = field(default_factory=list)


@dataclass
class Balancer:
    name: str
    source: Directive
    members: list[Directive] = field(default_factory=list)
    params: list[tuple[str, str, Directive]] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    path: str
    target: str
    params: tuple[str, ...]
    directive: Directive


@dataclass
class Translation:
    sections: dict[str, list[Setting]]
    members: list[Member]
    notes: list[Note]
    remarks: list[str]
    unrelated: int
    skipped: int


@dataclass(frozen=True)
class Context:
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
            self.notes.append(Note.of(d, "no hbfork equivalent"))
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


def key_values(args: Sequence[str]) -> Iterator[tuple[str, str]]:
    for arg in args:
        key, _, value = arg.partition("=")
        yield key.strip().lower(), value.strip()


def parse_duration(text: str) -> float | None:
    """Apache's time parameters: seconds, or with a unit suffix ms / s / mi / h."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|mi|h)?\s*", text.lower())
    if not match:
        return None
    factor = {"ms": 0.001, "s": 1, "mi": 60, "h": 3600}[match[2] or "s"]
    value = float(match[1]) * factor
    return int(value) if value.is_integer() else value


class Translator:
    """Collected directives -> hbfork settings. Every choice it makes is written down as a
    comment next to the setting, or as a note when nothing could be made of a directive."""

    def __init__(self, walked: Walked) -> None:
        self.walked = walked
        self.collected = Collector()
        self.collected.visit(walked.directives)
        self.notes: list[Note] = list(walked.notes)
        self.remarks: list[str] = []
        self.sections: dict[str, list[Setting]] = {"proxy": [], "heartbeat": [], "http": []}
        self.members: list[Member] = []
        self.lbmethod = "byrequests"  # mod_proxy_balancer's default

    def translate(self) -> Translation:
        self._listen()
        self._routes_and_members()
        self._heartbeat()
        self._timeouts()
        self._user()
        self.notes.extend(self.collected.notes)
        order = {path: index for index, path in enumerate(self.walked.files)}
        self.notes.sort(key=lambda n: (order.get(n.file, len(order)), n.line))
        return Translation(self.sections, self.members, self.notes, self.remarks,
                           self.collected.unrelated, self.walked.skipped)

    def set(self, section: str, key: str, value: Any, comment: str = "") -> None:
        settings = self.sections[section]
        settings[:] = [s for s in settings if s.key != key]
        settings.append(Setting(key, value, comment))

    def server(self, key: str) -> Directive | None:
        return self.collected.server.get(key)

    # --- [proxy] listen, mode, user

    def _listen(self) -> None:
        endpoints: list[str] = []
        sources: list[str] = []
        for d in self.collected.listens:
            endpoint = self._listen_endpoint(d)
            if endpoint and endpoint not in endpoints:
                endpoints.append(endpoint)
                sources.append(f"{d.text} ({d.where})")
        if endpoints:
            self.set("proxy", "listen", endpoints, "from " + "; ".join(sources))
        else:
            self.remarks.append("No usable Listen directive: hbfork's default listen address "
                                "is kept.")
        self.set("proxy", "mode", "http", "mod_proxy_http: every request is balanced")

    def _listen_endpoint(self, d: Directive) -> str | None:
        if not d.args:
            self.notes.append(Note.of(d, "no address"))
            return None
        if len(d.args) > 1 and d.args[1].lower() != "http":
            self.notes.append(Note.of(d, f"protocol {d.args[1]}: hbfork does not terminate TLS"))
            return None
        text = d.args[0]
        if text.isdigit():
            self.remarks.append(f"{d.text} ({d.where}) listens on every address; translated "
                                f"to 0.0.0.0:{text}; add \"[::]:{text}\" to [proxy] listen "
                                "for IPv6 too.")
            text = f"0.0.0.0:{text}"
        elif text.startswith("*:"):
            text = "0.0.0.0:" + text[2:]
        try:
            return str(parse_endpoint(text))
        except ValueError as err:
            self.notes.append(Note.of(d, f"{err}"))
            return None

    def _user(self) -> None:
        for key in ("user", "group"):
            d = self.server(key)
            if d is None or not d.args:
                continue
            value = d.args[0]
            if value.startswith("#") or "${" in value:
                self.notes.append(Note.of(d, "hbfork needs a user or group name"
                                          + (" (the variable is not defined here)"
                                             if "${" in value else "")))
                continue
            self.set("proxy", key, value, f"{d.text} ({d.where}): hbfork drops to it after "
                                          "binding (Apache's children ran as it)")

    # --- routes, balancers, members

    def _routes_and_members(self) -> None:
        chosen = self._choose_route()
        for route in self.collected.reverse:
            self._reverse(route, chosen)
        if chosen is None:
            self._choose_balancer_without_route()
        elif chosen.target.lower().startswith("balancer://"):
            self._use_balancer(balancer_name(chosen.target), chosen)
        else:
            self._direct_member(chosen)
        self._finish_members()

    def _choose_route(self) -> Route | None:
        chosen = None
        for route in self.collected.routes:
            d = route.directive
            if route.target == "!":
                self.notes.append(Note.of(d, f"hbfork forwards every path; it cannot keep "
                                             f"{route.path} out of the proxy"))
            elif route.path.rstrip("/") != "" or chosen is not None:
                self.notes.append(Note.of(d, "hbfork forwards every path to one set of members;"
                                             " only ProxyPass / is translated"))
            else:
                chosen = route
        return chosen

    def _reverse(self, route: Route, chosen: Route | None) -> None:
        d = route.directive
        if chosen is not None and route.path.rstrip("/") == "" and \
                route.target.rstrip("/").lower() == chosen.target.rstrip("/").lower():
            self.remarks.append(f"{d.text} ({d.where}): nothing to set. hbfork passes the "
                                "client's Host header on (like ProxyPreserveHost On) and adds "
                                "X-Forwarded-Host; it does not rewrite Location headers.")
        else:
            self.notes.append(Note.of(d, "hbfork does not rewrite response headers"))

    def _choose_balancer_without_route(self) -> None:
        balancers = list(self.collected.balancers.values())
        if not balancers:
            self.remarks.append("No ProxyPass / and no balancer://: no members to translate.")
            return
        by_heartbeat = [b for b in balancers if self._lbmethod(b) == "heartbeat"]
        chosen = (by_heartbeat or balancers)[0]
        self.remarks.append(f"No ProxyPass / found: translated balancer://{chosen.name} "
                            f"({chosen.source.where}).")
        self._use_balancer(chosen.name, None)

    def _lbmethod(self, balancer: Balancer) -> str:
        methods = [v.lower() for k, v, _ in balancer.params if k == "lbmethod"]
        return methods[-1] if methods else "byrequests"

    def _use_balancer(self, name: str, route: Route | None) -> None:
        balancer = self.collected.balancers.get(name)
        for other in self.collected.balancers.values():
            if other.name != name:
                self.notes.append(Note.of(other.source, "hbfork balances over one set of "
                                                        "members"))
        if balancer is None:
            assert route is not None
            self.notes.append(Note.of(route.directive, f"balancer://{name} is not defined"))
            return
        if route is not None:  # ProxyPass / balancer://x/ key=value sets balancer parameters
            balancer.params.extend((k, v, route.directive) for k, v in key_values(route.params))
        for key, value, d in balancer.params:
            self._balancer_param(key, value, d)
        self._check_lbmethod(balancer)
        for d in balancer.members:
            self._member(d, d.args[0], d.args[1:])

    def _check_lbmethod(self, balancer: Balancer) -> None:
        self.lbmethod = self._lbmethod(balancer)
        if self.lbmethod != "heartbeat":
            self.remarks.append(f"balancer://{balancer.name} uses lbmethod={self.lbmethod}: "
                                "hbfork always balances by the members' heartbeats (weight = "
                                "ready), so every member must send heartbeats.")

    def _balancer_param(self, key: str, value: str, d: Directive) -> None:
        if key == "lbmethod":
            return  # read by _check_lbmethod
        if key == "maxattempts" and value.isdigit():
            retries = min(int(value), MAX_RETRIES)
            self.set("http", "retries", retries, f"maxattempts={value} ({d.where})"
                     + (f" (hbfork's limit is {MAX_RETRIES})" if retries < int(value) else ""))
            return
        reasons = {
            "stickysession": "hbfork has no sticky sessions",
            "nofailover": "hbfork always fails over to another member on a connect failure",
            "timeout": "a balancer's wait for a free worker: hbfork does not queue",
        }
        self.notes.append(Note.of(d, reasons.get(key, "no hbfork equivalent"), f"{key}={value}"))

    def _direct_member(self, route: Route) -> None:
        self.lbmethod = "none"
        self.remarks.append(f"{route.directive.text} ({route.directive.where}) names one server:"
                            " translated as the only member. It gets traffic only while it "
                            "sends heartbeats (mod_heartbeat, or hbfork beat).")
        self._member(route.directive, route.target, route.params)

    def _member(self, d: Directive, url: str, params: Sequence[str]) -> None:
        address = self._member_address(d, url)
        if address is None:
            return
        if any(m.address == address for m in self.members):
            self.notes.append(Note.of(d, f"{address} is already a member"))
            return
        member = Member(address, d, tuple(params))
        for key, value in key_values(params):
            self._member_param(member, key, value)
        self.members.append(member)

    def _member_address(self, d: Directive, url: str) -> str | None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "http":
            self.notes.append(Note.of(d, f"{parts.scheme or 'no'} scheme: hbfork talks plain "
                                         "HTTP/1.1 to members"))
            return None
        host = parts.hostname or ""
        try:
            ip = parse_ip(host)
            port = parts.port or 80
        except ValueError:
            self.notes.append(Note.of(d, f"{host or url!r} is not an IP address: members are "
                                         "matched to heartbeats by source IP (Apache's "
                                         "lbmethod_heartbeat never matched it either)"))
            return None
        if parts.path.strip("/"):
            self.notes.append(Note.of(d, f"the path {parts.path} is dropped: hbfork forwards "
                                         "the client's path unchanged"))
        return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"

    def _member_param(self, member: Member, key: str, value: str) -> None:
        if key == "lbset":
            if value.isdigit() and int(value) <= MAX_LBSET:
                member.lbset = int(value)
            else:
                self.notes.append(Note.of(member.source, f"lbset must be 0-{MAX_LBSET} "
                                          "(Apache refuses it too)", f"lbset={value}"))
        elif key == "status":
            self._status(member, value)
        elif key == "route" and value:
            member.name = value[:48]
        elif key in ("retry", "timeout", "connectiontimeout"):
            pass  # server-wide in hbfork: gathered in _timeouts
        elif key == "loadfactor":
            member.comments.append(f"loadfactor={value} dropped: hbfork weighs members by "
                                   "their heartbeats' ready count")
        else:
            self.notes.append(Note.of(member.source, "member parameter with no hbfork "
                                      f"equivalent ({member.address})", f"{key}={value}"))

    def _status(self, member: Member, value: str) -> None:
        on = True
        for flag in value.upper():
            if flag in "+-":
                on = flag == "+"
            elif flag in "DS" and on:
                member.disabled = True
                member.comments.append(f"status={value}: starts disabled "
                                       "(`hbfork ctl enable` lets it in)")
            elif flag in "HR" and on:
                member.hot = "hot standby" if flag == "H" else "hot spare"
            elif on:
                self.notes.append(Note.of(member.source, f"flag {flag} has no hbfork config "
                                          f"equivalent ({member.address})", f"status={value}"))

    def _finish_members(self) -> None:
        """Hot standbys and spares go one lbset above the highest regular member's."""
        regular = [m.lbset for m in self.members if not m.hot]
        hot_set = max(regular, default=0) + 1
        for member in self.members:
            if member.hot:
                member.lbset = max(member.lbset, hot_set)
                member.comments.append(
                    f"{member.hot}: lbset {member.lbset}, so it gets traffic only when no "
                    "lower lbset has an eligible member")
            if member.hot or member.lbset:
                if self.lbmethod == "heartbeat":
                    member.comments.append("Apache's lbmethod=heartbeat ignored lbset and "
                                           "hot standby; hbfork honours them")
        if not self.members:
            self.set("heartbeat", "discover", True,
                     "no members translated: admit any heartbeat sender (list [[member]]s and "
                     "remove this to restrict)")

    # --- [heartbeat]

    def _heartbeat(self) -> None:
        listen = self.server("heartbeatlisten")
        if listen is not None and listen.args:
            self._heartbeat_listen(listen)
            self._max_servers()
        elif self.lbmethod == "heartbeat" and (storage := self._storage_path()):
            self.set("heartbeat", "source", f"file:{storage}",
                     "no HeartbeatListen: this front read heartbeats from a file another "
                     "monitor writes (lbmethod_heartbeat's HeartbeatStorage)")
        if len(self.members) > 256:
            self.set("heartbeat", "max_members", len(self.members))

    def _heartbeat_listen(self, d: Directive) -> None:
        try:
            endpoint = parse_endpoint(d.args[0])
        except ValueError as err:
            self.notes.append(Note.of(d, str(err)))
            return
        self.set("heartbeat", "listen", str(endpoint), f"{d.text} ({d.where})")

    def _max_servers(self) -> None:
        d = self.server("heartbeatmaxservers")
        if d is None:
            return
        if not (d.args and d.args[0].isdigit()):
            self.notes.append(Note.of(d, "not a number"))
        elif int(d.args[0]) == 0:
            if storage := self._storage_path():
                self.set("heartbeat", "storage", storage,
                         f"{d.text} ({d.where}): Apache kept heartbeats in this file; hbfork keeps "
                         "writing it (same format) for anything else that reads it. Remove "
                         "this line if nothing does.")
        else:
            slots = min(max(int(d.args[0]), len(self.members)), MAX_MEMBERS)
            self.set("heartbeat", "max_members", slots, f"{d.text} ({d.where}): table slots"
                     + (f" (hbfork's limit is {MAX_MEMBERS})" if slots == MAX_MEMBERS else ""))

    def _storage_path(self) -> str | None:
        """Where Apache's heartbeat file is: HeartbeatStorage, relative to the runtime dir."""
        d = self.server("heartbeatstorage")
        path = d.args[0] if d is not None and d.args else "hb.dat"
        full = posixpath.normpath(posixpath.join(self.walked.runtime_dir, path))
        if "${" in full:
            self.remarks.append(f"The heartbeat file {full} uses a variable not defined here "
                                "(see --envvars): [heartbeat] storage/source left out.")
            return None
        return full

    # --- [http] and [proxy] timing

    def _timeouts(self) -> None:
        self._server_duration("timeout", "client_timeout")
        self._server_duration("keepalivetimeout", "keepalive_timeout")
        self._server_flags()
        if self.members:
            self._member_timeouts()

    def _member_timeouts(self) -> None:
        """Per-member values in Apache; one value for all members in hbfork."""
        params = [(k, v, m.source) for m in self.members for k, v in key_values(m.params)]
        retry = self._agreed("retry", params)
        if retry is None:
            self.set("proxy", "retry", APACHE_DEFAULT_RETRY,
                     "Apache's default retry=60 (hbfork's own default is 10)")
        else:
            self.set("proxy", "retry", min(retry, 3600), f"BalancerMember retry={retry}"
                     + (" (hbfork's limit is 3600)" if retry > 3600 else ""))
        connect = self._agreed("connectiontimeout", params)
        self._http_timeout("connect_timeout", connect,
                           f"BalancerMember connectiontimeout={connect}", 600)
        response = self._agreed("timeout", params)
        label = f"BalancerMember timeout={response}"
        for key in ("proxytimeout", "timeout"):
            d = self.server(key)
            if response is None and d is not None and d.args:
                response, label = parse_duration(d.args[0]), f"{d.text} ({d.where})"
        self._http_timeout("response_timeout", response, label, 86400)

    def _agreed(self, key: str, params: list[tuple[str, str, Directive]]) -> float | None:
        """One server-wide value from per-member ones: the most common (noted if they differ)."""
        values = [(parse_duration(v), d) for k, v, d in params if k == key]
        valid = Counter(v for v, _ in values if v is not None)
        if not valid:
            return None
        chosen = valid.most_common(1)[0][0]
        if len(valid) > 1:
            self.notes.append(Note.of(values[0][1], f"members differ; hbfork has one value: "
                                      f"used {chosen}", f"{key}={'/'.join(map(str, valid))}"))
        return chosen

    def _http_timeout(self, key: str, value: float | None, label: str, high: float) -> None:
        if value is not None and 0 < value <= high:
            self.set("http", key, value, label)

    def _server_duration(self, directive: str, key: str) -> None:
        d = self.server(directive)
        if d is not None and d.args:
            self._http_timeout(key, parse_duration(d.args[0]), f"{d.text} ({d.where})", 86400)

    def _server_flags(self) -> None:
        adds = self.server("proxyaddheaders")
        if adds is not None and adds.args and adds.args[0].lower() == "off":
            self.set("http", "forwarded_headers", False, f"{adds.text} ({adds.where})")
        for key, value, reason in (
                ("proxyrequests", "on", "hbfork is a reverse proxy only"),
                ("keepalive", "off", "hbfork keeps client connections alive "
                                     "(see [http] keepalive_timeout)"),
                ("proxypreservehost", "off", "hbfork always passes the client's Host on")):
            d = self.server(key)
            if d is not None and d.args and d.args[0].lower() == value:
                self.notes.append(Note.of(d, reason))


def translate(walked: Walked) -> Translation:
    return Translator(walked).translate()


# --- rendering (pure)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a valid TOML basic string


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, COMMENT_WIDTH, initial_indent="# ", subsequent_indent="# ",
                         break_long_words=False, break_on_hyphens=False)


def render(translation: Translation, source: str, walked: Walked) -> str:
    lines = [f"# hbfork configuration translated from {source} by `hbfork import-apache`.",
             f"# ServerRoot {walked.server_root}; {len(walked.files)} file(s) read.",
             "# Review it, then: hbfork check -c THIS_FILE", ""]
    for remark in translation.remarks:
        lines += _comment(remark)
    if translation.remarks:
        lines.append("")
    for section, settings in translation.sections.items():
        if settings:
            lines.append(f"[{section}]")
            for setting in settings:
                lines += _comment(setting.comment)
                lines.append(f"{setting.key} = {toml_value(setting.value)}")
            lines.append("")
    for member in translation.members:
        lines += _render_member(member)
    lines += _render_notes(translation)
    return "\n".join(lines).rstrip() + "\n"


def _render_member(member: Member) -> list[str]:
    lines = [*_comment(f"{member.source.text} ({member.source.where})"), "[[member]]",
             f"address = {toml_value(member.address)}"]
    if member.name:
        lines.append(f"name = {toml_value(member.name)}")
    for comment in member.comments:
        lines += _comment(comment)
    if member.lbset:
        lines.append(f"lbset = {member.lbset}")
    if member.disabled:
        lines.append("disabled = true")
    return [*lines, ""]


def _render_notes(translation: Translation) -> list[str]:
    lines = [note.render() for note in translation.notes]
    summary = (f"# {translation.unrelated} other directive(s) (logging, MIME, directory "
               "access, MPM tuning, ...) do not concern a heartbeat front and were skipped.")
    lines.append(summary)
    if translation.skipped:
        lines.append(f"# {translation.skipped} directive(s) inside <IfModule>/<IfDefine> "
                     "conditions that do not hold were skipped, as Apache skips them.")
    return lines


# --- the command


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser("import-apache",
                            help="print the hbfork TOML equivalent of an Apache config")
    parser.add_argument("file", help="httpd.conf / apache2.conf (Includes are followed)")
    parser.add_argument("-d", "--server-root", metavar="DIR",
                        help="ServerRoot for relative Includes when the file sets none "
                             "(default: the file's directory, as Debian's /etc/apache2)")
    parser.add_argument("-D", dest="defines", action="append", default=[], metavar="NAME",
                        help="a name for <IfDefine>, as apache2 -D NAME")
    parser.add_argument("--envvars", metavar="FILE",
                        help="shell file of `export NAME=VALUE` for ${NAME} (default: "
                             "SERVER_ROOT/envvars when it exists, as Debian's apache2ctl)")
    return parser


def run(args: argparse.Namespace) -> int:
    from hbfork import config as config_module
    from hbfork.errors import ConfigError

    server_root = os.path.abspath(args.server_root or os.path.dirname(args.file) or ".")
    try:
        env = {**os.environ, **_envvars(args.envvars, server_root)}
        walked = Walker(DiskSource(), server_root, env, args.defines).walk(args.file)
    except ApacheConfigError as err:
        print(f"hbfork import-apache: {err}", file=sys.stderr)
        return EXIT_USAGE
    translation = translate(walked)
    text = render(translation, args.file, walked)
    sys.stdout.write(text)
    try:
        config_module.loads(text, "<import-apache output>")
    except ConfigError as err:
        print(f"hbfork import-apache: the translation does not load ({err}); please report "
              "this with the Apache config", file=sys.stderr)
        return EXIT_FAILURE
    print(f"hbfork import-apache: {len(translation.members)} member(s), "
          f"{len(translation.notes)} directive(s) not translated (see the comments)",
          file=sys.stderr)
    return EXIT_OK


def _envvars(path: str | None, server_root: str) -> dict[str, str]:
    candidate = path or os.path.join(server_root, "envvars")
    try:
        with open(candidate, encoding="utf-8", errors="replace") as handle:
            return parse_envvars(handle.read())
    except OSError as err:
        if path:  # asked for explicitly: say it failed
            raise ApacheConfigError(path, 0, f"cannot read: {err.strerror}") from None
        return {}
