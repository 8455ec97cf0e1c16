"""mod_proxy_hcheck -> hbfork's active checks (hbfork.core.hcheck) [pure].

A BalancerMember's `hcmethod=`, `hcuri=`, `hcinterval=`, `hcpasses=`, `hcfails=`, `hcexpr=` and
`hctemplate=` become hc* keys: the pool's when every member of the balancer has the same, else
each member's own (hbfork lays a member's hc* keys over its pool's). A `ProxyHCTemplate NAME
k=v ...` supplies the parameters a member names it for, its own ones winning. Of a `ProxyHCExpr
NAME {expr}`, the useful part is translated: conditions on `%{REQUEST_STATUS}` (a comparison
with a number, or `=~ /^[23]/`-like first digits) become `hcexpect_status`, `hc('body') =~
/text/` with a plain text becomes `hcexpect_body`, joined by `&&`; anything else is a note and
the member keeps hbfork's default expectation (a 2xx or 3xx, as Apache's without hcexpr).
Apache's hcuri is appended to the member's URL path, and its hcinterval defaults to 30 s, which
is written out since hbfork's default is shorter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hbfork.apache.conf import Directive, Note, key_values, parse_duration
from hbfork.apache.members import Member

METHODS = {"tcp": "tcp", "cping": "cping", "options": "options", "head": "head", "get": "get",
           "options11": "options", "head11": "head", "get11": "get"}
APACHE_INTERVAL = 30.0
STATUS = re.compile(r"%\{REQUEST_STATUS\}\s*(-lt|-le|-gt|-ge|-eq|-ne|<=|>=|==|!=|<|>|=~)\s*(.+)")
FIRST_DIGITS = re.compile(r"/\^(\[[1-5]+\]|[1-5])/")
BODY = re.compile(r"hc\(\s*'body'\s*\)\s*=~\s*/([^/\\.*+?^$()\[\]{}|]+)/")
OPERATORS = {"-lt": "<", "-le": "<=", "-gt": ">", "-ge": ">=", "-eq": "==", "-ne": "!="}


class Definitions:
    """The server's ProxyHCTemplate and ProxyHCExpr directives, by name."""

    def __init__(self, directives: Sequence[Directive], notes: list[Note]) -> None:
        self.templates: dict[str, dict[str, str]] = {}
        self.exprs: dict[str, dict[str, Any] | None] = {}
        self.sources: dict[str, Directive] = {}
        for d in directives:
            name, _, rest = d.raw.strip().partition(" ")
            if d.key == "proxyhctemplate":
                self.templates[name] = dict(key_values(rest.split()))
            else:
                found = translate_expr(rest.strip())
                if found is None:
                    notes.append(Note.of(d, "only %{REQUEST_STATUS} comparisons and "
                                            "hc('body') =~ /text/, joined by &&, translate: "
                                            "members using it expect a 2xx or 3xx"))
                self.exprs[name] = found
            self.sources[name] = d


def translate_expr(text: str) -> dict[str, Any] | None:
    """hc* keys for a ProxyHCExpr expression (braces included), or None if untranslatable."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    statuses = set(range(100, 600))
    out: dict[str, Any] = {}
    for part in body.split("&&"):
        part = part.strip()
        match, text_match = STATUS.fullmatch(part), BODY.fullmatch(part)
        if text_match is not None and "hcexpect_body" not in out:
            out["hcexpect_body"] = text_match[1]
            continue
        allowed = _statuses(match[1], match[2].strip()) if match else None
        if allowed is None:
            return None
        statuses &= allowed
    if len(statuses) < 500:
        if not statuses:
            return None
        out["hcexpect_status"] = _ranges(sorted(statuses))
    return out or None


def _statuses(operator: str, operand: str) -> set[int] | None:
    if operator == "=~":
        match = FIRST_DIGITS.fullmatch(operand)
        if match is None:
            return None
        digits = {int(c) for c in match[1].strip("[]")}
        return {s for s in range(100, 600) if s // 100 in digits}
    if not operand.isdigit():
        return None
    number, op = int(operand), OPERATORS.get(operator, operator)
    tests = {"<": lambda s: s < number, "<=": lambda s: s <= number, ">": lambda s: s > number,
             ">=": lambda s: s >= number, "==": lambda s: s == number,
             "!=": lambda s: s != number}
    return {s for s in range(100, 600) if tests[op](s)}


def _ranges(statuses: list[int]) -> list[str]:
    """[200, 201, 202, 204] -> ["200-202", "204"]"""
    out: list[str] = []
    start = previous = statuses[0]
    for status in [*statuses[1:], None]:
        if status is not None and status == previous + 1:
            previous = status
            continue
        out.append(str(start) if start == previous else f"{start}-{previous}")
        if status is not None:
            start = previous = status
    return out


def member_checks(member: Member, defs: Definitions, notes: list[Note]) -> dict[str, Any]:
    """The hc* keys a member's parameters (and the template it names) make."""
    params = dict(member.hc)
    template = params.pop("hctemplate", None)
    if template is not None:
        if template not in defs.templates:
            notes.append(Note.of(member.source, "no ProxyHCTemplate of that name",
                                 f"hctemplate={template}"))
        params = {**defs.templates.get(template, {}), **params}
    method = params.get("hcmethod", "none").lower()
    if method == "none":
        return {}
    if member.ajp and method not in ("tcp", "cping"):  # an HTTP check to an AJP port
        notes.append(Note.of(member.source, "an AJP member is checked by CPING (an HTTP "
                                            "check would go to its AJP port)",
                             f"hcmethod={params['hcmethod']}"))
        method = "cping"
    if (method == "cping" and not member.ajp) or method not in METHODS:
        notes.append(Note.of(member.source, "hbfork checks by TCP, OPTIONS, HEAD or GET (CPING: "
                                            "AJP members only)",
                             f"hcmethod={params['hcmethod']}"))
        return {}
    out: dict[str, Any] = {"hcmethod": METHODS[method]}
    if method not in ("tcp", "cping"):
        uri = params.get("hcuri", "")
        out["hcuri"] = (member.path + ("" if uri.startswith("/") or not uri else "/") + uri) \
            or "/"
    seconds = parse_duration(params.get("hcinterval", "")) if "hcinterval" in params else None
    out["hcinterval"] = seconds if seconds and seconds >= 0.1 else APACHE_INTERVAL
    for key in ("hcpasses", "hcfails"):
        if params.get(key, "").isdigit() and 1 <= int(params[key]) <= 1000:
            out[key] = int(params[key])
        elif key in params:
            notes.append(Note.of(member.source, "expected 1 to 1000", f"{key}={params[key]}"))
    expr = params.get("hcexpr")
    if expr is not None:
        if expr not in defs.exprs:
            notes.append(Note.of(member.source, "no ProxyHCExpr of that name",
                                 f"hcexpr={expr}"))
        out.update(defs.exprs.get(expr) or {})
        if "hcexpect_body" in out and out["hcmethod"] != "get":
            out["hcmethod"] = "get"  # hbfork reads a body only for GET (Apache: GET too)
    return out


def apply_checks(members: Sequence[Member], defs: Definitions,
                 notes: list[Note]) -> dict[str, Any]:
    """Set each member's hc* keys; returns the pool's instead when every member agrees."""
    checks = [member_checks(m, defs, notes) for m in members]
    if checks and checks[0] and all(c == checks[0] for c in checks):
        return checks[0]
    for member, found in zip(members, checks, strict=True):
        member.checks = found
    return {}
