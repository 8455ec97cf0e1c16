"""Apache httpd config syntax, read the way httpd reads it [pure: text in, directives out].

    parse(text, filename)     one file -> a tree of Directive (sections nested): comments,
                              `\\` continuations, quoting, case-insensitive names
    Scope                     what earlier lines decide about later ones: Define / Undefine
                              values for ${VAR}, LoadModule for <IfModule>, and whether an
                              <IfModule>/<IfDefine>/<IfVersion> section holds
    key_values, parse_duration  argument values: `key=value` parameters, "500ms" / "2mi"
    parse_envvars(text)       Debian's /etc/apache2/envvars, the usual source of ${APACHE_*}

No file access here: following Include is hbfork.apache_include's job.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hbfork.core.errors import HbforkError

APACHE_VERSION = (2, 4, 999)            # <IfVersion> is decided for "any 2.4"
# Compiled into Debian's apache2: <IfModule> on these is always true.
STATIC_MODULES = frozenset({"core", "so", "watchdog", "http_core", "log_config", "logio",
                            "version", "unixd"})
ASSUMED_TRUE = frozenset({"iffile", "ifdirective", "ifsection"})
CONDITIONAL_SECTIONS = frozenset({"ifmodule", "ifdefine", "ifversion"}) | ASSUMED_TRUE
VARIABLE = re.compile(r"\$\{([^}]+)\}")
ENVVARS_EXPORT = re.compile(r"\s*export\s+([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*$")
SHELL_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|mi|h)?\s*")


class ApacheConfigError(HbforkError):
    """The Apache config cannot be read as Apache would read it (names file and line)."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        self.file, self.line, self.problem = file, line, problem
        super().__init__(f"{file}:{line}: {problem}" if line else f"{file}: {problem}")


@dataclass(frozen=True)
class Directive:
    """One directive or <section>, with where it was written."""

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
        """The directive as it would be written back, quoting words that need it."""
        words = " ".join(json.dumps(a) if not a or any(c.isspace() for c in a) else a
                         for a in self.args)
        shown = f"{self.name} {words}".strip()
        return f"<{shown}>" if self.children is not None else shown


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
class Setting:
    """One hbfork setting and the comment saying which Apache directive it came from."""

    key: str
    value: Any
    comment: str = ""


@dataclass
class TablePlan:
    """A [[kind]] block to be (listen, certificate): its keys, each with its comment."""

    kind: str
    heading: list[str]
    settings: list[Setting] = field(default_factory=list)

    def set(self, key: str, value: Any, comment: str = "") -> None:
        self.settings = [s for s in self.settings if s.key != key]
        self.settings.append(Setting(key, value, comment))

    def value(self, key: str) -> Any:
        return next((s.value for s in self.settings if s.key == key), None)


# --- lines and words


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
    words: list[str] = []
    i, n = 0, len(text)
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


# --- sections


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
            stack.append(_open(line, filename, number))
        else:
            name, raw = _name_and_rest(line)
            siblings.append(Directive(name, raw, filename, number, args=tuple(split_args(raw))))
    if stack:
        name, _, number, _ = stack[-1]
        raise ApacheConfigError(filename, number, f"<{name}> is never closed")
    return tuple(top)


def _open(line: str, filename: str, number: int) -> tuple[str, str, int, list[Directive]]:
    if not line.endswith(">"):
        raise ApacheConfigError(filename, number,
                                f"{line.split()[0]} directive missing closing '>'")
    if not line[1:-1].strip():
        raise ApacheConfigError(filename, number, "a section with no name: <>")
    name, raw = _name_and_rest(line[1:-1])
    return name, raw, number, []


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


def count_directives(directives: Sequence[Directive]) -> int:
    return sum(1 + count_directives(d.children or ()) for d in directives)


def resolve_path(base: str, path: str) -> str:
    """`path` taken relative to `base` (ServerRoot, DefaultRuntimeDir), as Apache does. A path
    that still starts with an undefined ${VAR} is left alone: the variable most likely held an
    absolute path (Debian's ${APACHE_RUN_DIR}), and putting it under `base` would mislead."""
    if path.startswith("${"):
        return path
    return posixpath.normpath(posixpath.join(base, path))


# --- argument values


def key_values(args: Iterable[str]) -> Iterator[tuple[str, str]]:
    """`key=value` parameters (BalancerMember, ProxySet, ProxyPass): key lower-cased."""
    for arg in args:
        key, _, value = arg.partition("=")
        yield key.strip().lower(), value.strip()


def parse_duration(text: str) -> float | None:
    """Apache's time parameters: seconds, or with a unit suffix ms / s / mi / h."""
    match = DURATION.fullmatch(text.lower())
    if not match:
        return None
    factor = {"ms": 0.001, "s": 1, "mi": 60, "h": 3600}[match[2] or "s"]
    value = float(match[1]) * factor
    return int(value) if value.is_integer() else value


# --- variables and conditions


def undefined_variables(text: str) -> list[str]:
    """The ${NAME}s left in a value after substitution, once each: nothing defined them."""
    return list(dict.fromkeys(VARIABLE.findall(text)))


def undefined_note(d: Directive, value: str) -> Note | None:
    """A note for a value that still holds a ${NAME} nothing defined (else None): reported
    as such rather than as whatever parse error the literal "${NAME}" would cause."""
    names = undefined_variables(value)
    if not names:
        return None
    listed = ", ".join("${" + name + "}" for name in names)
    return Note.of(d, f"{listed} not defined here: export it, or give a file of "
                      "`export NAME=VALUE` lines with --envvars")


@dataclass
class Scope:
    """What the lines read so far decide about the next ones. Apache reads its config top to
    bottom once, so a Define or LoadModule affects only what comes after it."""

    env: Mapping[str, str] = field(default_factory=dict)
    defines: set[str] = field(default_factory=set)
    values: dict[str, str] = field(default_factory=dict)   # Define NAME VALUE; before env
    modules: set[str] = field(default_factory=set)
    saw_load_module: bool = False

    def substitute(self, directive: Directive) -> Directive:
        """${NAME} replaced in the directive's arguments."""
        if "${" not in directive.raw:
            return directive
        # Apache leaves an undefined ${NAME} as written (and warns); so do we.
        raw = VARIABLE.sub(lambda m: self.values.get(m[1], self.env.get(m[1], m[0])),
                           directive.raw)
        return replace(directive, raw=raw, args=tuple(split_args(raw)))

    def track(self, d: Directive) -> None:
        """Define, Undefine and LoadModule: the directives that change later conditions."""
        first = d.args[0] if d.args else ""
        if d.key == "define" and first:
            self.defines.add(first)
            if len(d.args) > 1:
                self.values[first] = d.args[1]
        elif d.key == "undefine":
            self.defines.discard(first)
            self.values.pop(first, None)
        elif d.key == "loadmodule" and first:
            self.saw_load_module = True
            self.modules.add(module_key(first))
            if len(d.args) > 1:
                self.modules.add(module_key(d.args[1]))

    def holds(self, d: Directive) -> bool:
        """Whether a conditional section's body is read (true for forms it cannot decide)."""
        if d.key in ASSUMED_TRUE or not d.args:
            return True
        if d.key == "ifversion":
            return version_matches(d.args)  # its "!" belongs to the operator
        word = d.args[0]
        negate = word.startswith("!")
        name = word[1:] if negate else word
        held = self.module_loaded(name) if d.key == "ifmodule" else name in self.defines
        return held != negate

    def module_loaded(self, name: str) -> bool:
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


def parse_envvars(text: str) -> dict[str, str]:
    """`export NAME=VALUE` lines of Debian's /etc/apache2/envvars (read by apache2ctl), with
    $NAME / ${NAME} taken from earlier lines; anything else in the script is ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = ENVVARS_EXPORT.match(line)
        if match:
            value = match[2].strip("\"'")
            values[match[1]] = SHELL_VARIABLE.sub(lambda m: values.get(m[1], ""), value)
    return values
