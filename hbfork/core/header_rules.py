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
is refused at load, naming the rule.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

ACTIONS = ("set", "append", "merge", "add", "setifempty", "unset", "edit", "edit*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00\r\n]")

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
    wanted = {"unset": 2, "edit": 4, "edit*": 4}.get(action, 3)
    if len(words) != wanted:
        raise ValueError(f"{text!r}: {action} takes {wanted - 2} value(s) after the name "
                         "(quote a value with spaces)")
    if any(_BAD_VALUE.search(word) for word in words[2:]):
        raise ValueError(f"{text!r}: CR, LF or NUL in a value")
    if words[2:3] and any(word.startswith("expr=") or word.startswith("env=")
                          for word in words[2:]):
        raise ValueError(f"{text!r}: conditions (env=, expr=) are not supported")
    if action in ("edit", "edit*"):
        try:
            pattern = re.compile(words[2].encode())
        except re.error as err:
            raise ValueError(f"{text!r}: the regex does not compile: {err}") from None
        return Rule(action, name, name.lower(), words[3].encode(), pattern, always)
    value = words[2].encode() if len(words) > 2 else b""
    return Rule(action, name, name.lower(), value, None, always)


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
    lower, action = rule.lower, rule.action
    present = [h for h in headers if h[1] == lower]
    others = [h for h in headers if h[1] != lower]
    field = (rule.name, lower, rule.value)
    if action == "set":
        return [*others, field]
    if action == "unset":
        return others
    if action == "add":
        return [*headers, field]
    if action == "setifempty":
        return headers if present else [*headers, field]
    if action in ("append", "merge"):
        if not present:
            return [*headers, field]
        joined = b", ".join(h[2] for h in present)
        if action == "merge" and rule.value in (item.strip() for item in joined.split(b",")):
            return headers
        return [*others, (present[0][0], lower, joined + b", " + rule.value)]
    assert rule.pattern is not None
    count = 0 if action == "edit*" else 1
    return [(h[0], h[1], rule.pattern.sub(rule.value, h[2], count=count)) if h[1] == lower
            else h for h in headers]
