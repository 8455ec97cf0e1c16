"""One ProxyPass / ProxyPassMatch / `ProxyPass PATH !` -> one hbfork [[route]] [pure].

`RouteMaker.make(step, chain)` translates one ProxyPass with the per-directory settings in
force where Apache would use it (`chain`: the main server's, the vhost's and, for a ProxyPass
in a <Location>, the Location's, merged in that order as Apache merges them per request):

* the pool (hbfork.apache.pools) and the member-side path: Apache sends the URL's path plus
  the rest of the request path after the matched prefix (`ProxyPass /app/ balancer://app/`
  sends /app/x as /x), so that path becomes `rewrite`;
* `ProxyPass PATH !` -> `pass = false` (Apache then serves the path itself);
* ProxyPassReverse with the same path and URL -> `reverse = true`;
  ProxyPassReverseCookiePath/Domain -> `reverse_cookie_path/domain`;
* ProxyPreserveHost (Apache's default is Off, hbfork's on) -> `preserve_host = false` unless On.

A ProxyPass that cannot be carried over (a member hbfork cannot use, a path Apache itself
would garble) becomes `pass = false, status = 503`, so that its requests do not fall through
to a later route that Apache would never have given them; the reason is a note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hbfork.apache import headers
from hbfork.apache.collect import Block, Pass, Reverse
from hbfork.apache.conf import Directive, Note
from hbfork.apache.pools import Destination, PoolBook
from hbfork.core.pool_settings import RouteSettings
from hbfork.core.routes import prefix_match
from hbfork.core.values import BadSetting, build

UNUSABLE = 503
POSIX_CLASS = re.compile(r"\[:[a-z]+:\]")
PASS_FLAG_REASONS = {
    "nocanon": "hbfork always sends the normalised path (the one it matched routes on)",
    "noquery": "hbfork always forwards the query string",
    "interpolate": "no ${ENV} in routes: hbfork's routes are fixed when the config loads",
}


@dataclass
class RoutePlan:
    """A [[route]] to be, with the directives it came from."""

    source: Pass | None                # the ProxyPass; None for a vhost's catch-all
    host: tuple[str, ...] = ()
    path: str = ""
    regex: str = ""
    pool: str = ""
    passes: bool = True
    status: int = 404
    rewrite: str | None = None
    preserve_host: bool = True
    reverse: bool = False
    cookie_paths: tuple[tuple[str, str], ...] = ()
    cookie_domains: tuple[tuple[str, str], ...] = ()
    comments: list[str] = field(default_factory=list)
    heading: list[str] = field(default_factory=list)   # said before it (the vhost it is of)
    headers: dict[str, list[str]] = field(default_factory=dict)  # header rules by key

    def table(self) -> dict[str, Any]:
        """The [[route]] keys, in the order they are written."""
        out: dict[str, Any] = {}
        if self.host:
            out["host"] = list(self.host) if len(self.host) > 1 else self.host[0]
        out["regex" if self.regex else "path"] = self.regex or self.path
        if not self.passes:
            out["pass"] = False
            if self.status != 404:
                out["status"] = self.status
            return {**out, **self.headers}
        out["pool"] = self.pool
        if self.rewrite is not None:
            out["rewrite"] = self.rewrite
        if not self.preserve_host:
            out["preserve_host"] = False
        if self.reverse:
            out["reverse"] = True
        if self.cookie_paths:
            out["reverse_cookie_path"] = [list(p) for p in self.cookie_paths]
        if self.cookie_domains:
            out["reverse_cookie_domain"] = [list(p) for p in self.cookie_domains]
        return {**out, **self.headers}

    def covers(self, later: RoutePlan) -> bool:
        """Does this route (for the same hosts) take every request `later` could match?"""
        if self.regex:
            return self.regex == later.regex
        if later.regex:
            return self.path == "/"
        return prefix_match(later.path, self.path)

    def with_host(self, host: tuple[str, ...]) -> RoutePlan:
        copy = RoutePlan(**{**self.__dict__, "comments": list(self.comments), "heading": []})
        copy.host = host
        return copy


class RouteMaker:
    """Makes RoutePlans; remembers which ProxyPassReverse and cookie maps found a route."""

    def __init__(self, book: PoolBook, notes: list[Note]) -> None:
        self.book = book
        self.notes = notes
        self.reverse_used: set[int] = set()
        self.cookies_used: set[int] = set()

    def make(self, step: Pass, chain: Sequence[Block]) -> RoutePlan | None:
        """The route for `step` where `chain` is in force (None, noted, if there is none)."""
        d = step.directive
        plan = RoutePlan(step, comments=[f"{step.label} ({d.where})"])
        # the vhost's and the Location's header rules (the main server's are [http]'s)
        for key, found in headers.rules(chain[1:]).items():
            plan.headers[key] = [text for text, _ in found]
            plan.comments += [f"{source.text} ({source.where})" for _, source in found]
        if step.regex:
            plan.regex = step.path
            if not self._valid(plan, d):
                return None
        else:
            if not step.path.startswith("/"):
                self.notes.append(Note.of(d, "a path that does not start with / never matches"))
                return None
            plan.path = _merged(step.path)  # Apache's prefix match merges slashes too
        self._flags(step)
        if step.excluded:
            plan.passes = False
            plan.comments.append("Apache serves these requests itself (files, handlers), "
                                 "usually with 404; hbfork answers 404")
            return plan
        destination = self.book.destination(step.target, d, _worker_params(step.params),
                                            step.regex)
        problem = destination.problem or self._rewrite(plan, step, destination)
        if problem:
            return self._unusable(plan, d, problem)
        plan.pool = destination.pool
        self._preserve_host(plan, chain)
        self._reverse(plan, step, destination, chain)
        self._cookies(plan, chain)
        return plan if self._valid(plan, d) else None

    def _flags(self, step: Pass) -> None:
        for flag in step.params:
            word = flag.lower()
            if word in PASS_FLAG_REASONS:
                self.notes.append(Note.of(step.directive, PASS_FLAG_REASONS[word], flag))
            elif word == "mapping=encoded":
                self.notes.append(Note.of(step.directive, "hbfork matches routes on the "
                                          "decoded, normalised path", flag))

    def _unusable(self, plan: RoutePlan, d: Directive, problem: str) -> RoutePlan:
        self.notes.append(Note.of(d, problem + f"; its requests are answered {UNUSABLE}"))
        plan.passes, plan.status = False, UNUSABLE
        plan.comments.append(f"not translated (see the note): answered {UNUSABLE}, so that "
                             "these requests do not reach the routes below")
        return plan

    def _rewrite(self, plan: RoutePlan, step: Pass, destination: Destination) -> str:
        """Set the member-side path; the problem when Apache's own result would be broken."""
        member = destination.prefix
        if plan.regex:
            plan.rewrite = member or None  # no template: the whole path is appended
            return ""
        path = plan.path
        if member == path:
            return ""  # sent as it came
        if path.endswith("/") and member and not member.endswith("/"):
            return (f"Apache would send {path}x as {member}x (the trailing slashes of "
                    f"{path} and {step.target} disagree)")
        if not member and path.endswith("/"):
            return (f"Apache would send {path}x to {step.target}x (a broken URL: the "
                    "trailing slashes disagree)")
        if member.endswith("/") and not path.endswith("/"):
            plan.comments.append(f"Apache sends {path}/x as {member}/x (a double slash); "
                                 f"hbfork as {member}x")
            member = member[:-1]
        plan.rewrite = member
        return ""

    def _preserve_host(self, plan: RoutePlan, chain: Sequence[Block]) -> None:
        d = next((b.preserve_host for b in reversed(chain) if b.preserve_host), None)
        if d is None:
            plan.preserve_host = False
            plan.comments.append("Apache's default ProxyPreserveHost Off: the member is sent "
                                 "its own address as Host")
            return
        plan.preserve_host = bool(d.args) and d.args[0].lower() == "on"
        if not plan.preserve_host:
            plan.comments.append(f"{d.text} ({d.where})")

    def _reverse(self, plan: RoutePlan, step: Pass, destination: Destination,
                 chain: Sequence[Block]) -> None:
        members = self.book.member_urls(destination.pool)
        urls = {step.target.lower(), *(url + destination.prefix.lower() for url in members)}
        first: Reverse | None = None   # the first ProxyPassReverse in force for these members
        for reverse in (r for block in chain for r in block.reverse):
            target = reverse.target.lower()
            if first is None and (target in urls or _same_balancer(target, step.target) or
                                  any(target.startswith(url) for url in members)):
                first = reverse
            if _merged(reverse.path) == _merged(step.path) and target in urls:
                if plan.regex:
                    continue  # noted as unused: hbfork maps back to path routes only
                self.reverse_used.add(id(reverse))
                plan.reverse = True
                plan.comments.append(f"{reverse.directive.text} ({reverse.directive.where})")
                if first is not reverse:
                    assert first is not None
                    plan.comments.append(
                        f"in Apache, {first.directive.text} ({first.directive.where}) comes "
                        "first among the ProxyPassReverse lines in force here and also matches "
                        "these members, so it maps their URLs; hbfork maps them back to this "
                        "route")

    def _cookies(self, plan: RoutePlan, chain: Sequence[Block]) -> None:
        paths: list[tuple[str, str]] = []
        domains: list[tuple[str, str]] = []
        for block in chain:
            for kind, maps in ((paths, block.cookie_paths), (domains, block.cookie_domains)):
                for internal, public, d in maps:
                    self.cookies_used.add(id(d))
                    kind.append((internal, public))
                    plan.comments.append(f"{d.text} ({d.where})")
        plan.cookie_paths, plan.cookie_domains = tuple(paths), tuple(domains)

    def _valid(self, plan: RoutePlan, d: Directive) -> bool:
        """Checked with hbfork's own rules, so that the file always loads."""
        table = plan.table()
        if POSIX_CLASS.search(plan.regex):
            self.notes.append(Note.of(d, "POSIX classes ([[:alpha:]]) are not a regular "
                                         "expression hbfork (Python) reads the same way"))
            return False
        try:
            settings = build(RouteSettings, table)
            if settings.regex:
                re.compile(settings.regex)
        except (BadSetting, re.error) as err:
            problem = err.problem if isinstance(err, BadSetting) else \
                f"not a regular expression hbfork (Python) reads: {err}"
            self.notes.append(Note.of(d, problem))
            return False
        return True

    def unused(self, blocks: Sequence[Block]) -> None:
        """Notes for the ProxyPassReverse and cookie maps no route took."""
        for block in blocks:
            for reverse in block.reverse:
                if id(reverse) not in self.reverse_used:
                    self.notes.append(_unused_reverse(reverse))
            for _, _, d in (*block.cookie_paths, *block.cookie_domains):
                if id(d) not in self.cookies_used:
                    self.notes.append(Note.of(d, "no proxied route where it applies"))


def _unused_reverse(reverse: Reverse) -> Note:
    return Note.of(reverse.directive, "hbfork maps a response's headers back only for the "
                                      f"route that served it: no ProxyPass {reverse.path} to "
                                      f"{reverse.target} (or its members) where this applies")


def _worker_params(params: Sequence[str]) -> list[str]:
    """ProxyPass key=value parameters that configure the worker (not the route's flags)."""
    return [p for p in params if "=" in p and not p.lower().startswith("mapping=")]


def _merged(path: str) -> str:
    return re.sub("//+", "/", path)


def _same_balancer(url: str, other: str) -> bool:
    if not (url.startswith("balancer://") and other.lower().startswith("balancer://")):
        return False
    return url[11:].split("/", 1)[0] == other.lower()[11:].split("/", 1)[0]
