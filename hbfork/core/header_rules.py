"""Header rules with mod_headers' semantics, compiled once at load and applied to a head's
fields. Pure.

A rule is written as Apache writes it, without the directive name:

    "set X-Frame-Options DENY"          replace every field of that name by one
    "append Cache-Control no-store"     add ", VALUE" to the existing field (or set it)
    "merge Vary Accept-Encoding"        append, unless the value is already one of its items
    "add Link </a.css>; rel=preload"    one more field of that name, whatever is there
    "setifempty X-Env prod"             set only when there is no such field
    "unset Server"                      remove every field of that name
    "edit Location ^http: https:"       replace the first match of a regex in each value
    "edit* Set-Cookie ;\\s*Secure ;"    ... every match

Response rules may start with `always` (Apache's `Header always`): they apply to the answers
hbfork writes itself (503, 504, redirects) as well as to members' responses; without it they
apply to members' responses only (Apache's default `onsuccess` table). A name or value that
could inject a field (CR, LF, NUL, a name that is not a token) or a regex that does not compile
is refused at load, naming the rule. So are rules on the fields hbfork itself owns (framing,
hop-by-hop, Host and X-Forwarded-*): a rule there could desynchronise a member connection or
let a rule undo what the proxy guarantees.

As in Apache, `%%` in a value is one `%`, and an `edit` replacement may use `$1`..`$9` for
the regex's groups and `&` for the whole match (`\\&`, `\\$`: the character itself). Format
specifiers (`%t`, `%D`, `%{VAR}e`...) and conditions (`env=`, `expr=`) are not supported and
refused.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from hbfork.core.values import setting

ACTIONS = ("set", "append", "merge", "add", "setifempty", "unset", "edit", "edit*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")
# Fields a rule may not name: the proxy frames, routes and forwards with them.
OWN_FIELDS = frozenset({
    "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
    "trailer", "host", "expect", "proxy-connection", "proxy-authenticate",
    "proxy-authorization",
})
_FORMAT = re.compile(r"%(.)")
_BACKREF = re.compile(rb"\\([$&])|\$([0-9])|&|\\")

Header = tuple[bytes, bytes, bytes]  # (name as sent, lower-case name, value)


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    name: bytes
    lower: bytes
    value: bytes = b""
    pattern: re.Pattern[bytes] | None = None
    always: bool = False


def parse_rule(text: str, response: bool) -> Rule:
    """One rule from its text; raises ValueError saying what is wrong."""
    # Quotes group words; backslashes stay (they belong to regexes), as in Apache's files.
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split, lexer.escape = True, ""
    try:
        words = list(lexer)
    except ValueError as err:
        raise ValueError(f"{text!r}: {err}") from None
    always = False
    if not words:
        raise ValueError(f"{text!r}: an empty rule")
    if words[0] in ("early", "note", "echo") or any(word.startswith(("env=", "expr=")) or
                                                    word == "early" for word in words[1:]):
        raise ValueError(f"{text!r}: conditions (env=, expr=), early, echo and note are not "
                         "supported")
    if words[:1] == ["always"]:
        if not response:
            raise ValueError(f"{text!r}: `always` is for response rules")
        always, words = True, words[1:]
    elif words[:1] == ["onsuccess"]:
        words = words[1:]
    if not words or words[0].lower() not in ACTIONS:
        raise ValueError(f"{text!r}: expected one of {', '.join(ACTIONS)} first")
    action = words[0].lower()
    if len(words) < 2 or not _TOKEN.fullmatch(words[1]):
        raise ValueError(f"{text!r}: expected a header name (a token) after {action}")
    name = words[1].encode()
    lower_text = words[1].lower()
    if lower_text in OWN_FIELDS or lower_text.startswith("x-forwarded-"):
        raise ValueError(f"{text!r}: {words[1]} is the proxy's own field (framing, hop-by-hop, "
                         "Host or X-Forwarded-*): rules may not change it")
    wanted = {"unset": 2, "edit": 4, "edit*": 4}.get(action, 3)
    if len(words) != wanted:
        raise ValueError(f"{text!r}: {action} takes {wanted - 2} value(s) after the name "
                         "(quote a value with spaces)")
    if any(_BAD_VALUE.search(word) for word in words[2:]):
        raise ValueError(f"{text!r}: CR, LF or NUL in a value")
    if action in ("edit", "edit*"):
        try:
            pattern = re.compile(words[2].encode("latin-1"))
        except (re.error, UnicodeEncodeError) as err:
            raise ValueError(f"{text!r}: the regex does not compile: {err}") from None
        replacement = _replacement(_literal(words[3], text), pattern.groups, text)
        return Rule(action, name, name.lower(), replacement, pattern, always)
    value = _literal(words[2], text) if len(words) > 2 else b""
    return Rule(action, name, name.lower(), value, None, always)


def _literal(word: str, text: str) -> bytes:
    """A value as sent: `%%` is one `%`; any other format specifier is refused."""
    def one(match: re.Match[str]) -> str:
        if match.group(1) != "%":
            raise ValueError(f"{text!r}: format specifiers (%{match.group(1)}...) are not "
                             "supported (write %% for a %)")
        return "%"
    try:
        return _FORMAT.sub(one, word).encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{text!r}: a value must be Latin-1 text") from None


def _replacement(value: bytes, groups: int, text: str) -> bytes:
    """An Apache edit replacement ($N, &, backslash escapes) as a Python re template."""
    def one(match: re.Match[bytes]) -> bytes:
        escaped, group = match.group(1), match.group(2)
        if escaped is not None:
            return escaped
        if match.group(0) == b"\\":
            return b"\\\\"  # any other backslash is itself, as in ap_pregsub
        if group is not None:
            if int(group) > groups:
                raise ValueError(f"{text!r}: ${group.decode()} names no group of the regex")
            return b"\\g<" + group + b">"
        return b"\\g<0>"
    return _BACKREF.sub(one, value)


def parse_rules(texts: list[str] | tuple[str, ...], response: bool) -> tuple[Rule, ...]:
    return tuple(parse_rule(text, response) for text in texts)


def apply(rules: tuple[Rule, ...], headers: list[Header], own_answer: bool = False) -> list[Header]:
    """The fields after `rules`, in order (a new list). `own_answer`: a response hbfork
    writes itself, to which only `always` rules apply."""
    for rule in rules:
        if own_answer and not rule.always:
            continue
        headers = _one(rule, headers)
    return headers


def _one(rule: Rule, headers: list[Header]) -> list[Header]:
    """One rule, as Apache's tables do it: `set` replaces the first field of the name in place
    and drops the others; `append` and `merge` extend the first field in place (merge: unless
    the value is already one of its comma-separated items, compared exactly); `edit` changes
    every field of the name."""
    lower, action = rule.lower, rule.action
    first = next((i for i, h in enumerate(headers) if h[1] == lower), -1)
    field = (rule.name, lower, rule.value)
    if action == "add" or (first < 0 and action in ("set", "setifempty", "append", "merge")):
        return [*headers, field]
    if action == "setifempty" or first < 0:
        return headers  # (edit or unset of a field that is not there)
    if action == "unset":
        return [h for h in headers if h[1] != lower]
    if action == "set":
        return [field if i == first else h for i, h in enumerate(headers)
                if i == first or h[1] != lower]
    if action in ("append", "merge"):
        name, _, value = headers[first]
        if action == "merge" and rule.value in (item.strip(b" \t")
                                                for item in value.split(b",")):
            return headers
        out = list(headers)
        out[first] = (name, lower, value + b", " + rule.value)
        return out
    assert rule.pattern is not None
    count = 0 if action == "edit*" else 1
    return [(h[0], h[1], rule.pattern.sub(rule.value, h[2], count=count)) if h[1] == lower
            else h for h in headers]


def _rule_list(value: object, response: bool) -> tuple[Rule, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of rules like [\"set X-Env prod\"]")
    return parse_rules(value, response)


def request_rules(value: object) -> tuple[Rule, ...]:
    """The parser of a `request_headers` setting."""
    return _rule_list(value, False)


def response_rules(value: object) -> tuple[Rule, ...]:
    """The parser of a `response_headers` setting."""
    return _rule_list(value, True)


def request_setting(where: str) -> Any:
    """The `request_headers` setting of a section (`where` says which requests it concerns)."""
    return setting((), request_rules,
                   f"header rules for requests {where}, applied before they go to the member: "
                   "[\"set X-Env prod\", \"unset Cookie2\"] (Apache RequestHeader syntax)", "[]")


def response_setting(where: str) -> Any:
    """The `response_headers` setting of a section."""
    return setting((), response_rules,
                   f"header rules for responses {where}: [\"always set X-Frame-Options DENY\", "
                   "\"unset Server\"] (Apache Header syntax; `always`: hbfork's own answers "
                   "too)", "[]")
